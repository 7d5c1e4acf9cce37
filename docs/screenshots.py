"""Screenshots of the MLflow UI after ``make run``, for the README (``docs/img/*.png``).

Starts ``mlflow server`` on the tracking store, opens its pages in headless Chromium through Playwright
and saves: the experiment's runs with the ``main`` run expanded (``runs.png``), the runs' charts
(``charts.png``), the experiment's LoggedModels (``models.png``) and the registered model with its
``champion`` alias (``registry.png``). Needs Chromium (Debian: ``apt-get install chromium``) and
Playwright (``pip install playwright``; no browser download, the system's Chromium is used):

    python docs/screenshots.py --tracking-uri sqlite:///mlflow.db --python .venv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

HERE = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ML_VIEW = "workflowType=machine_learning"  # MLflow 3 opens in its GenAI view otherwise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(python: str, tracking_uri: str, port: int) -> subprocess.Popen:
    """``mlflow server`` on ``tracking_uri``, once it answers ``/health``."""
    server = subprocess.Popen([python, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(1)
    server.kill()
    raise SystemExit(f"mlflow server on {tracking_uri} did not answer on port {port} within 120 s")


def experiment_id(base: str, name: str) -> str:
    query = urllib.parse.urlencode({"experiment_name": name})
    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=10) as answer:
        return json.load(answer)["experiment"]["experiment_id"]


def settle(page: Page, seconds: float = 4.0) -> None:
    """Wait for the page's requests to calm down (the UI polls, so not forever) and its charts to draw."""
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_load_state("networkidle", timeout=10_000)
    time.sleep(seconds)


def close_assistant(page: Page) -> None:
    """Close MLflow's assistant side panel, which otherwise takes a third of the page."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()
        time.sleep(1)


def take(page: Page, base: str, exp: str, out: Path) -> list[Path]:
    shots = []
    page.goto(f"{base}/#/experiments/{exp}/runs?{ML_VIEW}")
    page.locator(".ag-row").first.wait_for(timeout=60_000)
    settle(page)
    close_assistant(page)
    page.locator(".ag-row button").first.click()  # expand the newest parent run (main) to show its steps
    settle(page, 2)
    page.screenshot(path=out / "runs.png")
    shots.append(out / "runs.png")

    page.goto(f"{base}/#/experiments/{exp}/runs?{ML_VIEW}&compareRunsMode=CHART")
    settle(page)
    close_assistant(page)
    page.get_by_placeholder("Search metric charts").fill("mrr_at_20")  # the selection and test metric
    settle(page, 4)
    page.screenshot(path=out / "charts.png")
    shots.append(out / "charts.png")

    page.goto(f"{base}/#/experiments/{exp}/models?{ML_VIEW}")
    settle(page)
    close_assistant(page)
    page.screenshot(path=out / "models.png")
    shots.append(out / "models.png")

    page.goto(f"{base}/#/models/seqrec")
    settle(page)
    close_assistant(page)
    page.screenshot(path=out / "registry.png")
    shots.append(out / "registry.png")
    return shots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="seqrec")
    parser.add_argument("--python", default=sys.executable, help="a Python with mlflow, to run the server")
    parser.add_argument("--out", type=Path, default=HERE / "img")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(args.python, args.tracking_uri, port)
    try:
        exp = experiment_id(base, args.experiment)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1800, "height": 950})
            for path in take(page, base, exp, args.out):
                print(path)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
