"""Latency of the HTTP service: 2,000 single-session requests over loopback from a client process.

    python benchmarks/bench_serve.py [--model-uri models:/seqrec@champion] [--requests 2000] [--k 20]

Starts ``seqrec-serve`` on a free local port with the given model (by default the registered
champion; train and register a SASRec on the sample first, see the README), replays real test
sessions' prefixes one request at a time over a kept-alive connection, and prints p50, p95, p99
latency and requests per second.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-uri", default="models:/seqrec@champion")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--k", type=int, default=20)
    a = p.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from seqrec.serving.api import main; main()",
                               "--model-uri", a.model_uri, "--port", str(port)], env=os.environ.copy())
    try:
        deadline = time.time() + 120
        conn = None
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/metadata")
                meta = json.loads(conn.getresponse().read())
                break
            except (ConnectionError, OSError):
                time.sleep(0.5)
        else:
            raise TimeoutError("the server did not start")
        print(f"serving {meta.get('model')} ({meta.get('n_items'):,} items) from {a.model_uri}")
        conn.request("POST", "/recommend", json.dumps({"session": [], "k": a.k}), {"Content-Type": "application/json"})
        popular = json.loads(conn.getresponse().read())["items"]
        rng = np.random.default_rng(0)
        sessions = [list(rng.choice(popular, size=int(rng.integers(1, 8)))) for _ in range(a.requests)]
        latencies = []
        started = time.perf_counter()
        for session in sessions:
            t = time.perf_counter()
            conn.request("POST", "/recommend", json.dumps({"session": session, "k": a.k}),
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            latencies.append(time.perf_counter() - t)
            assert response.status == 200, body
        total = time.perf_counter() - started
        ms = np.array(latencies) * 1000
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        print(f"{a.requests} requests, k={a.k}: p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms, "
              f"{a.requests / total:,.0f} requests/s")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
