"""Latency and load of the HTTP service over loopback (127.0.0.1 only).

    python benchmarks/bench_serve.py [--model-uri models:/seqrec@champion] [--requests 2000] [--k 20]
    python benchmarks/bench_serve.py --clients 32 --seconds 30 [--bad-share 0.1] [--train]

Starts ``seqrec-serve`` on a free local port with the given model (by default the registered
champion; train and register a SASRec on the sample first, see the README; or ``--train``: an SR
baseline trained on generated data in a throw-away MLflow store, so the benchmark runs standalone).

Without ``--clients`` it replays ``--requests`` single-session requests one at a time over a kept-alive
connection and prints p50, p95, p99 latency and requests per second.

With ``--clients N --seconds S``, N concurrent clients (threads, one kept-alive connection each) send
requests for S seconds (at most ``--max-requests`` in all) after a warm-up of ``--warmup`` seconds; a
share ``--bad-share`` of them is malformed (bad JSON, a missing or wrong field, k out of range, an
unknown field), and each of those must get a 4xx answer while the good ones keep getting 200. It prints
requests/s, p50/p95/p99 of the good requests, the failed requests (a good one not answered 200, a bad
one not answered 4xx, or no answer at all: 0 is the bar) and the server's RSS after the warm-up and at
the end (within 10 % is the bar); the exit status is 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
JSON = {"Content-Type": "application/json"}
# malformed requests: each must be refused with a 4xx status, the service going on serving
BAD_BODIES = [
    b"{not json",
    json.dumps({"k": 5}).encode(),  # neither session nor sessions
    json.dumps({"session": ["x"], "sessions": [["x"]]}).encode(),  # both
    json.dumps({"session": "abc"}).encode(),  # not a list
    json.dumps({"session": [1.5]}).encode(),  # not an item id
    json.dumps({"session": ["x"], "k": 0}).encode(),
    json.dumps({"session": ["x"], "k": 10**6}).encode(),
    json.dumps({"session": ["x"], "k": "20"}).encode(),
    json.dumps({"session": ["x"], "unknown": 1}).encode(),
    json.dumps([1, 2, 3]).encode(),
]
RSS_BAR = 0.10


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` (Linux ``/proc``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def train_champion(root: Path) -> str:
    """Train an SR baseline on generated data in a throw-away MLflow store under ``root`` and register
    it; sets ``MLFLOW_TRACKING_URI`` to that store (the server inherits it). Returns the model URI."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ.pop("MLFLOW_RUN_ID", None)
    from seqrec.data.preprocess import PreprocessConfig, preprocess
    from seqrec.data.readers import read_clicks
    from seqrec.data.synthetic import SyntheticConfig, generate
    from seqrec.workflow.baseline import run_baseline
    from seqrec.workflow.register import run_register

    started = time.perf_counter()
    clicks, _ = generate(root / "raw", SyntheticConfig(n_clicks=100_000, seed=0))
    out = root / "processed"
    preprocess(read_clicks(clicks), out, PreprocessConfig(), "synthetic-bench", {"path": str(clicks)})
    run_baseline(str(out), "sr")
    decision = run_register(str(out), name="seqrec")
    print(f"--train: SR baseline on 100,000 generated clicks, registered as seqrec version {decision['version']} "
          f"in {root} ({time.perf_counter() - started:.0f} s)", flush=True)
    return "models:/seqrec@champion"


def start_server(model_uri: str, stack: ExitStack) -> tuple[subprocess.Popen, int, dict, list]:
    """``seqrec-serve`` on a free loopback port; waits for it; returns it, its port, metadata, popular items."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from seqrec.serving.api import main; main()",
                               "--model-uri", model_uri, "--host", HOST, "--port", str(port)], env=os.environ.copy())

    def stop() -> None:
        server.terminate()
        server.wait(timeout=30)

    stack.callback(stop)
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            conn.request("GET", "/metadata")
            meta = json.loads(conn.getresponse().read())
            break
        except (ConnectionError, OSError):
            time.sleep(0.5)
    else:
        raise TimeoutError("the server did not start")
    conn.request("POST", "/recommend", json.dumps({"session": [], "k": 100}), JSON)
    popular = json.loads(conn.getresponse().read())["items"]
    conn.close()
    name = meta.get("model", "") + (f"+{meta['fused_with']}" if meta.get("fused_with") else "")
    print(f"serving {name} ({meta.get('n_items'):,} items) from {model_uri} on {HOST}:{port}", flush=True)
    return server, port, meta, popular


def sequential(port: int, popular: list, requests: int, k: int) -> None:
    """The one-client latency benchmark."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    rng = np.random.default_rng(0)
    sessions = [list(rng.choice(popular, size=int(rng.integers(1, 8)))) for _ in range(requests)]
    latencies = []
    started = time.perf_counter()
    for session in sessions:
        t = time.perf_counter()
        conn.request("POST", "/recommend", json.dumps({"session": session, "k": k}), JSON)
        response = conn.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - t)
        assert response.status == 200, body
    total = time.perf_counter() - started
    p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    print(f"{requests} requests, k={k}: p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms, "
          f"{requests / total:,.0f} requests/s")


@dataclass
class Tally:
    """One client's counts and good-request latencies (merged after the run)."""

    good: int = 0
    bad: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    bad_latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Load:
    """N clients sending requests until a deadline or a total count; measured once ``measuring`` is set."""

    def __init__(self, port: int, popular: list, k: int, bad_share: float, max_requests: int):
        self.port, self.popular, self.k, self.bad_share = port, popular, k, bad_share
        self.budget = threading.Semaphore(max_requests)
        self.stop = threading.Event()
        self.measuring = threading.Event()

    def client(self, seed: int, tally: Tally) -> None:
        rng = np.random.default_rng(seed)
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        while not self.stop.is_set() and self.budget.acquire(blocking=False):
            bad = rng.random() < self.bad_share
            if bad:
                body = BAD_BODIES[int(rng.integers(len(BAD_BODIES)))]
            else:
                session = [str(x) for x in rng.choice(self.popular, size=int(rng.integers(1, 8)))]
                body = json.dumps({"session": session, "k": self.k}).encode()
            measured = self.measuring.is_set()
            t = time.perf_counter()
            try:
                conn.request("POST", "/recommend", body, JSON)
                response = conn.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status, answer = None, str(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            seconds = time.perf_counter() - t
            ok = status is not None and (400 <= status < 500 if bad else status == 200)
            if not measured:
                if not ok:
                    tally.problems.append(f"warm-up: {'bad' if bad else 'good'} request -> {status}: {answer[:200]!r}")
                continue
            if not ok:
                tally.failed += 1
                if len(tally.problems) < 5:
                    tally.problems.append(f"{'bad' if bad else 'good'} request {body[:80]!r} -> {status}: "
                                          f"{answer[:200]!r}")
            elif bad:
                tally.bad += 1
                tally.bad_latencies.append(seconds)
            else:
                tally.good += 1
                tally.latencies.append(seconds)
        conn.close()


def concurrent(server: subprocess.Popen, port: int, popular: list, a: argparse.Namespace) -> bool:
    """The load benchmark; prints its figures and returns whether every bar is met."""
    load = Load(port, popular, a.k, a.bad_share, a.max_requests)
    tallies = [Tally() for _ in range(a.clients)]
    threads = [threading.Thread(target=load.client, args=(i, t), daemon=True) for i, t in enumerate(tallies)]
    for thread in threads:
        thread.start()
    time.sleep(a.warmup)
    rss_warm = rss_mb(server.pid)
    load.measuring.set()
    started = time.perf_counter()
    while time.perf_counter() - started < a.seconds and any(t.is_alive() for t in threads):
        time.sleep(0.1)
    load.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.perf_counter() - started
    rss_end = rss_mb(server.pid)
    good, bad, failed = (sum(getattr(t, f) for t in tallies) for f in ("good", "bad", "failed"))
    problems = [p for t in tallies for p in t.problems]
    ms = np.array([x for t in tallies for x in t.latencies]) * 1000
    bad_ms = np.array([x for t in tallies for x in t.bad_latencies]) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99]) if len(ms) else (float("nan"),) * 3
    total = good + bad + failed
    change = (rss_end - rss_warm) / rss_warm
    print(f"{a.clients} clients over {HOST} for {elapsed:.1f} s (after {a.warmup:g} s of warm-up), k={a.k}, "
          f"bad share {a.bad_share:g}:")
    print(f"  {total:,} requests, {total / elapsed:,.0f} requests/s ({good / elapsed:,.0f}/s good)")
    print(f"  good requests: {good:,} answered 200; p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms")
    if a.bad_share > 0:
        bad_p99 = np.percentile(bad_ms, 99) if len(bad_ms) else float("nan")
        print(f"  malformed requests: {bad:,} answered 4xx (p99 {bad_p99:.2f} ms)")
    print(f"  failed requests: {failed} (a good one not answered 200, a bad one not 4xx, or no answer)")
    print(f"  server RSS: {rss_warm:,.1f} MB after warm-up, {rss_end:,.1f} MB at the end ({change:+.1%}; "
          f"bar: within {RSS_BAR:.0%})")
    for problem in problems[:5]:
        print(f"  problem: {problem}")
    passed = failed == 0 and not problems and abs(change) <= RSS_BAR and good > 0 and (a.bad_share == 0 or bad > 0)
    print(f"  {'PASS' if passed else 'FAIL'}")
    return passed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-uri", default="models:/seqrec@champion")
    p.add_argument("--train", action="store_true",
                   help="train and register a quick SR baseline on generated data in a throw-away store first")
    p.add_argument("--requests", type=int, default=2000, help="requests of the one-client benchmark")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--clients", type=int, default=0, help="concurrent clients (0: the one-client benchmark)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured duration of the load benchmark")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring (and the first RSS)")
    p.add_argument("--max-requests", type=int, default=2_000_000, help="at most this many requests in all")
    p.add_argument("--bad-share", type=float, default=0.0, help="share of malformed requests (each must get 4xx)")
    a = p.parse_args()
    if a.clients < 0 or not 0 <= a.bad_share <= 1 or a.seconds <= 0 or a.warmup < 0:
        p.error("--clients >= 0, 0 <= --bad-share <= 1, --seconds > 0 and --warmup >= 0")
    with ExitStack() as stack:
        model_uri = a.model_uri
        if a.train:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-serve-")))
            model_uri = train_champion(root)
        server, port, _, popular = start_server(model_uri, stack)
        if not a.clients:
            sequential(port, popular, a.requests, a.k)
            return 0
        return 0 if concurrent(server, port, popular, a) else 1


if __name__ == "__main__":
    sys.exit(main())
