"""The service's limits (docs/serving.md) against a real server: each abuse is refused as documented, quickly, the
server keeps answering good requests and its memory stays flat."""

import contextlib
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time

import pytest
from test_serving import free_port, model_run, wait_until_up  # noqa: F401 (model_run is a fixture)

from seqrec.serving.api import Limits

MAX_BODY = 64 * 1024  # set by flag
READ_TIMEOUT = 1.5  # set by flag
MAX_ID = 64  # set by environment variable
MAX_CONCURRENCY = 4  # set by environment variable
GOOD = json.dumps({"session": ["214536502", 214536500], "k": 5}).encode()
FIGURES: dict[str, float] = {}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


class Server:
    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc, self.port = proc, port
        self.rss_before = 0.0

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def post(self, body: bytes, path: str = "/recommend") -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def assert_still_serving(self) -> None:
        """A good request still gets 200 and the server's memory has not grown by 20 MB since the warm-up."""
        status, body = self.post(GOOD)
        assert status == 200 and len(body["items"]) == 5
        assert rss_mb(self.proc.pid) - self.rss_before < 20, (self.rss_before, rss_mb(self.proc.pid))


@pytest.fixture(scope="module")
def server(model_run):  # noqa: F811
    port = free_port()
    env = {**os.environ, "SEQREC_MAX_ITEM_ID_LENGTH": str(MAX_ID), "SEQREC_MAX_CONCURRENCY": str(MAX_CONCURRENCY)}
    proc = subprocess.Popen([sys.executable, "-c", "from seqrec.serving.api import main; main()",
                             "--model-uri", f"runs:/{model_run}/model", "--port", str(port),
                             "--max-body-bytes", str(MAX_BODY), "--read-timeout", str(READ_TIMEOUT)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc)
        srv = Server(proc, port)
        for _ in range(50):  # warm up, good and bad requests, before taking the memory baseline
            assert srv.post(GOOD)[0] == 200
            assert srv.post(b'{"session": [1.5]}')[0] == 422
        srv.rss_before = rss_mb(proc.pid)
        yield srv
        FIGURES["rss_before_mb"], FIGURES["rss_after_mb"] = srv.rss_before, rss_mb(proc.pid)
        print("\nmeasured:", json.dumps({k: round(v, 3) for k, v in FIGURES.items()}))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def send_until_answered(sock: socket.socket, head: bytes, chunks, pause: float = 0.0) -> int:
    """Send ``head`` then each chunk until the server answers or closes; the number of body bytes sent."""
    sent = 0
    try:
        sock.sendall(head)
        for chunk in chunks:
            if select.select([sock], [], [], pause)[0]:
                break
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):  # the server answered and closed: read its answer below
        pass
    return sent


def read_response(sock: socket.socket) -> tuple[int, dict, dict]:
    """Status, headers and JSON body of the answer on ``sock``, which the server must then close."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = json.loads(response.read())
    headers = {k.lower(): v for k, v in response.getheaders()}
    assert headers.get("connection") == "close"
    return response.status, headers, body


def head(length: int | None = None, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n{extra}\r\n"
            .encode())


def huge_item_id_body(n_bytes: int, chunk: int = 64 * 1024):
    """A ``{"session": ["xxx...`` body of ``n_bytes`` (one item id of about that size), in chunks."""
    yield b'{"session": ["'
    for _ in range(n_bytes // chunk):
        yield b"x" * chunk


def test_limits_defaults_and_environment(monkeypatch):
    assert Limits() == Limits(1024 * 1024, 256, 10.0, 64)
    monkeypatch.setenv("SEQREC_MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("SEQREC_READ_TIMEOUT", "2.5")
    assert Limits.from_env() == Limits(1000, 256, 2.5, 64)
    monkeypatch.setenv("SEQREC_MAX_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="max_concurrency"):
        Limits.from_env()


def test_oversized_content_length_is_413_before_the_body_is_read(server):
    """A 50 MB body with its Content-Length: refused on the header, the body is not read."""
    with server.connect() as sock:
        start = time.perf_counter()
        sent = send_until_answered(sock, head(50_000_000), huge_item_id_body(50_000_000))
        status, _, body = read_response(sock)
        FIGURES["413_content_length_s"] = time.perf_counter() - start
    assert status == 413 and str(MAX_BODY) in body["detail"]
    assert sent < 50_000_000 and FIGURES["413_content_length_s"] < 2
    server.assert_still_serving()


def test_oversized_chunked_body_is_413_as_it_streams(server):
    """A 50 MB item id sent chunked (no Content-Length): refused once 64 KiB have arrived."""
    def chunked(parts):
        for part in parts:
            yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
        yield b"0\r\n\r\n"

    with server.connect() as sock:
        start = time.perf_counter()
        sent = send_until_answered(sock, head(), chunked(huge_item_id_body(50_000_000)))
        status, _, body = read_response(sock)
        FIGURES["413_chunked_s"] = time.perf_counter() - start
        FIGURES["413_chunked_sent_mb"] = sent / 1e6
    assert status == 413 and str(MAX_BODY) in body["detail"]
    assert sent < 50_000_000 and FIGURES["413_chunked_s"] < 2
    server.assert_still_serving()


@pytest.mark.parametrize(("payload", "field"), [
    ({"session": ["a", "b", "c", "x" * (MAX_ID + 1)]}, "session.3"),
    ({"session": [10 ** MAX_ID]}, "session.0"),  # MAX_ID + 1 digits
    ({"sessions": [["a"], ["b", "x" * 60_000]]}, "sessions.1.1"),
])
def test_long_item_id_under_the_body_limit_is_422_naming_the_field(server, payload, field):
    status, body = server.post(json.dumps(payload).encode())
    assert status == 422
    assert [d["field"] for d in body["detail"]] == [field], body
    assert str(MAX_ID) in body["detail"][0]["problem"]
    server.assert_still_serving()


def test_int_id_too_long_to_parse_is_a_4xx(server):
    """An int id of 50,000 digits (Python parses at most 4,300): refused as malformed JSON, never a 500."""
    status, body = server.post(b'{"session": [' + b"1" * 50_000 + b"]}")
    assert status == 400 and body["detail"]
    server.assert_still_serving()


def test_item_ids_up_to_the_limit_are_served(server):
    status, body = server.post(json.dumps({"session": ["x" * MAX_ID, 10 ** MAX_ID - 1], "k": 3}).encode())
    assert status == 200 and len(body["items"]) == 3


@pytest.mark.parametrize("pause", [0.05, None], ids=["byte-at-a-time", "stalled"])
def test_slow_body_is_408_after_the_read_timeout(server, pause):
    """A body sent a byte every 50 ms, or not at all: 408 once the read timeout has passed, connection closed."""
    with server.connect() as sock:
        start = time.perf_counter()
        if pause is None:
            sock.sendall(head(1000))
            select.select([sock], [], [], READ_TIMEOUT + 2)
        else:
            send_until_answered(sock, head(1000), (bytes([b]) for b in GOOD * 100), pause)
        status, _, body = read_response(sock)
        elapsed = time.perf_counter() - start
        assert sock.recv(1) == b""
    FIGURES[f"408_{'stalled' if pause is None else 'slow'}_body_s"] = elapsed
    assert status == 408 and str(READ_TIMEOUT) in body["detail"]
    assert READ_TIMEOUT - 0.1 < elapsed < READ_TIMEOUT + 1
    server.assert_still_serving()


@pytest.mark.parametrize("pause", [0.05, None], ids=["byte-at-a-time", "silent"])
def test_slow_headers_are_cut_off_after_the_read_timeout(server, pause):
    """Headers sent a byte every 50 ms, or a connection that sends nothing: closed once the read timeout has
    passed (uvicorn alone would keep either open forever)."""
    with server.connect() as sock:
        start = time.perf_counter()
        if pause is None:
            select.select([sock], [], [], READ_TIMEOUT + 2)
        else:
            send_until_answered(sock, b"", (bytes([b]) for b in head(len(GOOD)) * 10), pause)
        with contextlib.suppress(ConnectionResetError):  # reset: closed while a byte of ours was unread
            assert sock.recv(1024) == b""  # closed without an answer
        elapsed = time.perf_counter() - start
    FIGURES[f"closed_{'silent' if pause is None else 'slow'}_headers_s"] = elapsed
    assert READ_TIMEOUT - 0.1 < elapsed < READ_TIMEOUT + 1
    server.assert_still_serving()


def test_kept_alive_connection_serves_requests_in_turn(server):
    """The header deadline is per request: a kept-alive connection serves one request after another."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("POST", "/recommend", GOOD, {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200 and len(json.loads(response.read())["items"]) == 5
            time.sleep(READ_TIMEOUT / 3)
    finally:
        conn.close()


def test_requests_over_the_concurrency_limit_get_503(server):
    """MAX_CONCURRENCY slow requests hold every slot (each is in the app once it got 100 Continue): one more gets
    503 with Retry-After at once; the slow ones get their 408 and the slots are free again."""
    slow = [server.connect() for _ in range(MAX_CONCURRENCY)]
    try:
        for sock in slow:
            sock.sendall(head(len(GOOD), "Expect: 100-continue\r\n"))
            answer = b""
            while not answer.endswith(b"\r\n\r\n"):
                answer += sock.recv(1)
            assert answer.startswith(b"HTTP/1.1 100")
        with server.connect() as sock:
            start = time.perf_counter()
            sock.sendall(head(len(GOOD)) + GOOD)
            status, headers, body = read_response(sock)
            FIGURES["503_s"] = time.perf_counter() - start
        assert status == 503 and headers["retry-after"] == "1" and str(MAX_CONCURRENCY) in body["detail"]
        assert [read_response(sock)[0] for sock in slow] == [408] * MAX_CONCURRENCY
    finally:
        for sock in slow:
            sock.close()
    server.assert_still_serving()
