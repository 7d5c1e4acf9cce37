#!/usr/bin/env bash
# A team tracking server for seqrec: MLflow on PostgreSQL, artifacts served by the server (mlflow-artifacts:/).
#
#   scripts/tracking_server.sh start     PostgreSQL (started if it is not running), role and databases (created
#                                        if missing), then `mlflow server` in the background; waits for /health
#   scripts/tracking_server.sh stop      stops the server, and PostgreSQL if `start` started it
#   scripts/tracking_server.sh db        PostgreSQL, role and databases only (for Optuna studies without a server);
#                                        prints the studies' database URL
#   scripts/tracking_server.sh drop      stops the server and drops both databases (a throw-away server's end)
#   scripts/tracking_server.sh status    says what runs; exit 0 only when the server answers /health
#   scripts/tracking_server.sh env       prints `export MLFLOW_TRACKING_URI=...` and `export SEQREC_STUDY_DB=...`
#
# Settings (environment; the defaults in brackets):
#   SEQREC_SERVER_HOST [127.0.0.1]  SEQREC_SERVER_PORT [5000]  SEQREC_SERVER_WORKERS [2]
#   SEQREC_SERVER_ALLOWED_HOSTS [MLflow's default: localhost and private addresses]: the Host names clients use
#   SEQREC_SERVER_DIR [${TMPDIR:-/tmp}/seqrec-tracking-PORT]: pid file, log, and the state of what `start` started
#   SEQREC_ARTIFACTS [SEQREC_SERVER_DIR/artifacts]: the artifact store (a local or shared folder, or s3://...)
#   SEQREC_DB [seqrec]: the MLflow database; Optuna studies go to SEQREC_DB_studies
#   SEQREC_DB_USER [seqrec]  SEQREC_DB_PASSWORD [seqrec]  (letters, digits, _ . - only)
#   SEQREC_DB_FRESH [0]: 1 drops and recreates both databases on start (a throw-away server for tests)
#   SEQREC_PG_INSTALL [1]: 1 installs PostgreSQL with apt-get where it is missing
#   SEQREC_MLFLOW [.venv/bin/mlflow, else mlflow on PATH]
#   SEQREC_SERVER_JOBS [false]: MLflow's job runners (GenAI features; seqrec needs none)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="${SEQREC_SERVER_HOST:-127.0.0.1}"
PORT="${SEQREC_SERVER_PORT:-5000}"
WORKERS="${SEQREC_SERVER_WORKERS:-2}"
DIR="${SEQREC_SERVER_DIR:-${TMPDIR:-/tmp}/seqrec-tracking-${PORT}}"
ARTIFACTS="${SEQREC_ARTIFACTS:-${DIR}/artifacts}"
DB="${SEQREC_DB:-seqrec}"
STUDY_DB="${DB}_studies"
DB_USER="${SEQREC_DB_USER:-seqrec}"
DB_PASSWORD="${SEQREC_DB_PASSWORD:-seqrec}"
FRESH="${SEQREC_DB_FRESH:-0}"
INSTALL="${SEQREC_PG_INSTALL:-1}"
if [[ -n "${SEQREC_MLFLOW:-}" ]]; then MLFLOW="$SEQREC_MLFLOW"
elif [[ -x "$ROOT/.venv/bin/mlflow" ]]; then MLFLOW="$ROOT/.venv/bin/mlflow"
else MLFLOW="mlflow"; fi
PYTHON="$(dirname "$(command -v "$MLFLOW" || echo "$MLFLOW")")/python"
[[ -x "$PYTHON" ]] || PYTHON="python3"
PID_FILE="$DIR/server.pid"
LOG="$DIR/server.log"
PG_MARK="$DIR/postgresql-started-by-us"  # holds "VERSION CLUSTER": stop stops it again

say() { echo "tracking_server: $*" >&2; }
die() { say "error: $*"; exit 1; }

for value in "$DB" "$DB_USER"; do
  [[ "$value" =~ ^[a-z_][a-z0-9_]*$ ]] || die "database and role names are lower-case letters, digits and _: '$value'"
done
[[ "$DB_PASSWORD" =~ ^[A-Za-z0-9_.-]+$ ]] || die "SEQREC_DB_PASSWORD: letters, digits, _ . - only"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "SEQREC_SERVER_PORT: a number, not '$PORT'"

# The first PostgreSQL cluster as "VERSION NAME PORT STATUS" (empty when there is none).
cluster() { command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | awk 'NR == 1 {print $1, $2, $3, $4}'; }

as_postgres() {  # run a command as the postgres system user
  if [[ "$(id -u)" == 0 ]]; then
    if command -v runuser >/dev/null; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
  else
    sudo -n -u postgres "$@"
  fi
}

install_postgresql() {
  command -v pg_ctlcluster >/dev/null && return 0
  [[ "$INSTALL" == 1 ]] || die "PostgreSQL is not installed (pg_ctlcluster missing) and SEQREC_PG_INSTALL=0"
  command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not available: install PostgreSQL"
  say "installing PostgreSQL (apt-get install postgresql)"
  local sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo -n"
  $sudo apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q postgresql >/dev/null \
    || die "apt-get install postgresql failed"
  command -v pg_ctlcluster >/dev/null || die "PostgreSQL installed, but pg_ctlcluster is still missing"
}

# Start the cluster if it is down (noting that this script started it); prints its port.
ensure_postgresql() {
  install_postgresql
  local info version name pgport status
  info="$(cluster)"
  if [[ -z "$info" ]]; then
    version="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1)"
    [[ -n "$version" ]] || die "no PostgreSQL version under /usr/lib/postgresql"
    say "creating PostgreSQL cluster $version/main"
    pg_createcluster "$version" main >/dev/null || die "pg_createcluster $version main failed"
    info="$(cluster)"
  fi
  read -r version name pgport status <<<"$info"
  if [[ "$status" != online* ]]; then
    say "starting PostgreSQL $version/$name on port $pgport"
    pg_ctlcluster "$version" "$name" start >&2 || die "pg_ctlcluster $version $name start failed (see /var/log/postgresql)"
    mkdir -p "$DIR"
    [[ -f "$PG_MARK" ]] || echo "$version $name" >"$PG_MARK"
  fi
  local i
  for i in $(seq 1 60); do
    as_postgres psql -X -q -p "$pgport" -d postgres -c "select 1" >/dev/null 2>&1 && { echo "$pgport"; return 0; }
    sleep 0.5
  done
  die "PostgreSQL $version/$name does not accept connections on port $pgport"
}

# The role and both databases, created when missing (dropped first with SEQREC_DB_FRESH=1).
ensure_databases() {
  local pgport="$1" drop=""
  if [[ "$FRESH" == 1 ]]; then
    drop="DROP DATABASE IF EXISTS $DB WITH (FORCE);
DROP DATABASE IF EXISTS $STUDY_DB WITH (FORCE);"
  fi
  as_postgres psql -X -q -p "$pgport" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL || die "creating role/databases failed"
SET client_min_messages TO warning;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD';
  END IF;
END \$\$;
$drop
SELECT 'CREATE DATABASE $DB OWNER $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB')\gexec
SELECT 'CREATE DATABASE $STUDY_DB OWNER $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$STUDY_DB')\gexec
SQL
}

db_url() { echo "postgresql+psycopg://$DB_USER:$DB_PASSWORD@127.0.0.1:$1/$2"; }
server_url() { echo "http://$HOST:$PORT"; }

healthy() {
  "$PYTHON" - "$(server_url)/health" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
}

running_pid() {  # the server's pid when its pid file names a live process
  [[ -f "$PID_FILE" ]] || return 1
  local pid; pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  mkdir -p "$DIR"
  if running_pid >/dev/null && healthy; then
    say "already running at $(server_url) (pid $(cat "$PID_FILE"))"
    return 0
  fi
  local pgport; pgport="$(ensure_postgresql)"
  ensure_databases "$pgport"
  [[ "$ARTIFACTS" == *://* ]] || mkdir -p "$ARTIFACTS"
  say "starting mlflow server at $(server_url) (backend: database $DB, artifacts: $ARTIFACTS, log: $LOG)"
  # its own session (process group), so that stop ends the server's workers with it; MLflow's job runners serve
  # GenAI features that seqrec does not use (SEQREC_SERVER_JOBS=true starts them); the password stays off its
  # command line
  PGPASSWORD="$DB_PASSWORD" MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${SEQREC_SERVER_JOBS:-false}" setsid "$MLFLOW" server \
    --backend-store-uri "postgresql+psycopg://$DB_USER@127.0.0.1:$pgport/$DB" --artifacts-destination "$ARTIFACTS" \
    --host "$HOST" --port "$PORT" --workers "$WORKERS" \
    ${SEQREC_SERVER_ALLOWED_HOSTS:+--allowed-hosts "$SEQREC_SERVER_ALLOWED_HOSTS"} >"$LOG" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  local i
  for i in $(seq 1 "${SEQREC_SERVER_WAIT:-240}"); do
    healthy && { say "ready after $(( (i + 1) / 2 )) s"; return 0; }
    running_pid >/dev/null || { tail -n 30 "$LOG" >&2; die "mlflow server exited (log: $LOG)"; }
    sleep 0.5
  done
  tail -n 30 "$LOG" >&2
  stop_server
  die "mlflow server did not answer $(server_url)/health in time (log: $LOG)"
}

stop_server() {
  local pid
  if pid="$(running_pid)"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 40); do [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" =~ ^[^Z] ]] || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    say "stopped the server (pid $pid)"
  fi
  rm -f "$PID_FILE"
}

stop() {
  stop_server
  if [[ -f "$PG_MARK" ]]; then
    local version name
    read -r version name <"$PG_MARK"
    say "stopping PostgreSQL $version/$name (this script started it)"
    pg_ctlcluster "$version" "$name" stop || say "pg_ctlcluster $version $name stop failed"
    rm -f "$PG_MARK"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  db)
    pgport="$(ensure_postgresql)"
    ensure_databases "$pgport"
    db_url "$pgport" "$STUDY_DB"
    ;;
  drop)
    stop_server
    info="$(cluster)"
    if [[ "$info" == *online* ]]; then
      as_postgres psql -X -q -p "$(awk '{print $3}' <<<"$info")" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET client_min_messages TO warning;
DROP DATABASE IF EXISTS $DB WITH (FORCE);
DROP DATABASE IF EXISTS $STUDY_DB WITH (FORCE);
SQL
      say "dropped databases $DB and $STUDY_DB"
    fi
    ;;
  status)
    if running_pid >/dev/null && healthy; then echo "running at $(server_url)"; else echo "not running"; exit 1; fi ;;
  env)
    info="$(cluster)"
    echo "export MLFLOW_TRACKING_URI=$(server_url)"
    echo "export SEQREC_STUDY_DB=$(db_url "$(awk '{print $3}' <<<"${info:-x x 5432}")" "$STUDY_DB")"
    ;;
  *) echo "usage: $0 start|stop|db|drop|status|env" >&2; exit 2 ;;
esac
