"""HTTP recommendation service (docs/protocol.md, "Recommendation requests"): ``POST /recommend``,
``POST /basket`` (models of ``train_basket``), ``GET /health``, ``GET /metadata``.

Run it with ``seqrec-serve --model-uri models:/seqrec@champion`` or
``MODEL_URI=models:/seqrec@champion uvicorn seqrec.serving.api:app``. Requests are validated with
pydantic: a bad request gets a 4xx answer that names the field, and the service keeps serving.
What one request may cost is bounded (``Limits``, docs/serving.md): body size (413), item id length (422),
time to send the body (408) and the headers (connection closed), requests in flight (503).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from contextlib import asynccontextmanager
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Annotated

import h11
import mlflow
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field, StrictFloat, StrictInt, StrictStr, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from seqrec.models.fused import Fused
from seqrec.serving.recommender import MAX_K, ServedModel, predicts_baskets

MAX_SESSIONS = 1_000
MAX_CLICKS = 10_000
MAX_HEADER_BYTES = 16 * 1024  # uvicorn's h11_max_incomplete_event_size: longer request headers get 400
KEEP_ALIVE_S = 5  # uvicorn's timeout_keep_alive: an idle kept-alive connection is closed after it


@dataclass(frozen=True)
class Limits:
    """What one request may cost; each is set by ``SEQREC_<NAME>`` (``SEQREC_MAX_BODY_BYTES``...) or a
    ``seqrec-serve`` flag (``--max-body-bytes``...), so that no client can make the service grow or hang."""

    max_body_bytes: int = 1024 * 1024  # a larger body gets 413 before it is read
    max_item_id_length: int = 256  # characters of a string id, digits of an int id: a longer one gets 422
    read_timeout: float = 10.0  # seconds to send a request's headers (else closed), and its body (else 408)
    max_concurrency: int = 64  # requests in flight; one more gets 503 with Retry-After

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(f"{f.name} must be positive, got {getattr(self, f.name)!r}")

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, with those given by environment variables (``SEQREC_MAX_BODY_BYTES``...) replaced."""
        values = {}
        for f in fields(cls):
            name = f"SEQREC_{f.name.upper()}"
            if name in os.environ:
                assert f.default is not MISSING, "every limit has a default"
                try:
                    values[f.name] = type(f.default)(os.environ[name])
                except ValueError:
                    raise ValueError(f"{name}={os.environ[name]!r} is not a number") from None
        return cls(**values)


def short_item_id(item: str | int) -> str | int:
    """An item id of at most ``max_item_id_length`` characters (digits for an int): no item has a longer one, and
    a huge one would be carried through the service as it is."""
    limit = State.limits.max_item_id_length
    if len(item) > limit if isinstance(item, str) else abs(item) >= 10**limit:
        raise ValueError(f"item id longer than {limit} characters")
    return item


ItemId = Annotated[StrictStr | StrictInt, AfterValidator(short_item_id)]


class RecommendRequest(BaseModel):
    """Either ``session`` (one list of raw item ids) or ``sessions`` (a batch), plus ``k``."""

    session: Annotated[list[ItemId], Field(max_length=MAX_CLICKS)] | None = None
    sessions: Annotated[list[list[ItemId]], Field(max_length=MAX_SESSIONS)] | None = None
    k: Annotated[int, Field(ge=1, le=MAX_K, strict=True)] = 20

    model_config = {"extra": "forbid"}

    @model_validator(mode="after")
    def one_of_session_or_sessions(self) -> RecommendRequest:
        if (self.session is None) == (self.sessions is None):
            raise ValueError("give exactly one of 'session' (a list of item ids) or 'sessions' (a list of lists)")
        clicks = len(self.session) if self.session is not None else sum(len(s) for s in self.sessions or [])
        if clicks > MAX_CLICKS:
            raise ValueError(f"at most {MAX_CLICKS} clicks per request, got {clicks}")
        return self


class BasketRequest(RecommendRequest):
    """A recommendation request plus, optionally, the unix time of each click of ``session`` (``times``) or of
    each session of ``sessions`` (``sessions_times``): a basket model uses dwell times and the time of day."""

    times: Annotated[list[StrictFloat | StrictInt], Field(max_length=MAX_CLICKS)] | None = None
    sessions_times: Annotated[list[list[StrictFloat | StrictInt]], Field(max_length=MAX_SESSIONS)] | None = None

    @model_validator(mode="after")
    def times_match_clicks(self) -> BasketRequest:
        if self.times is not None and (self.session is None or len(self.times) != len(self.session)):
            raise ValueError("'times' needs 'session' and one unix time per clicked item of it")
        if self.sessions_times is not None and (
                self.sessions is None or [len(t) for t in self.sessions_times] != [len(s) for s in self.sessions]):
            raise ValueError("'sessions_times' needs 'sessions' and one unix time per clicked item of each")
        return self


class Recommendation(BaseModel):
    items: list[str]
    scores: list[float]


class Basket(BaseModel):
    buy_probability: float
    items: list[str]
    scores: list[float]
    basket: list[str]


class State:
    """What the service loaded at start: the recommender and a description of the model."""

    recommender: ServedModel | None = None
    metadata: dict = {}
    limits: Limits = Limits.from_env()


METADATA_FILE = "seqrec-metadata.json"  # an exported model's description (seqrec.serving.export), read offline


def registered_version(client: mlflow.MlflowClient, model_uri: str) -> tuple[str, str] | None:
    """``(name, version)`` of ``models:/NAME@ALIAS``, ``models:/NAME/N`` or ``models:/NAME/latest``; ``None`` for
    other URIs (a run's model, a LoggedModel id, a path)."""
    if not model_uri.startswith("models:/") or model_uri.startswith("models:/m-"):
        return None
    name, _, rest = model_uri[len("models:/"):].partition("/")
    if "@" in name:
        name, alias = name.split("@", 1)
        return name, str(client.get_model_version_by_alias(name, alias).version)
    if rest == "latest":
        versions = client.search_model_versions(f"name='{name}'")
        return name, str(max(int(v.version) for v in versions))
    return name, rest


def describe(model_uri: str, recommender: ServedModel) -> dict:
    """Model URI, registered name and version, run, LoggedModel id, model name, metrics and item count; for an
    exported model (a directory with ``seqrec-metadata.json``) what was recorded at export, with no server."""
    meta: dict = {"model_uri": model_uri, "n_items": recommender.n_items, "max_len": recommender.max_len,
                  "scorer": type(recommender.scorer).__name__}
    if isinstance(recommender.scorer, Fused):
        meta.update(fused_with=recommender.scorer.knn.name, fusion_weight=recommender.scorer.weight)
    exported = Path(model_uri, METADATA_FILE)
    if exported.is_file():
        return {**json.loads(exported.read_text()), **meta}
    client = mlflow.MlflowClient()
    info = mlflow.models.get_model_info(model_uri)
    meta.update({"run_id": info.run_id, "model_id": info.model_id})
    registered = registered_version(client, model_uri)
    if registered is not None:
        meta["name"], meta["version"] = registered
    if info.model_id:
        logged = client.get_logged_model(info.model_id)
        meta["model"] = logged.tags.get("seqrec.model")
        meta["metrics"] = {m.key: m.value for m in logged.metrics or []
                           if m.key.startswith(("test_", "best_val_")) and m.run_id == logged.source_run_id}
    return meta


def load(model_uri: str) -> None:
    # one request is small: one thread avoids contention stalls (SEQREC_SERVE_THREADS to change it)
    torch.set_num_threads(int(os.environ.get("SEQREC_SERVE_THREADS", "1")))
    model = mlflow.pyfunc.load_model(model_uri)
    State.recommender = model.unwrap_python_model().recommender
    State.metadata = describe(model_uri, State.recommender)


@asynccontextmanager
async def lifespan(_: FastAPI):
    uri = os.environ.get("MODEL_URI")
    if not uri:
        raise RuntimeError("set MODEL_URI (or use seqrec-serve --model-uri) to the model to serve")
    load(uri)
    yield


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body as it arrives, or None if the client left; BodyTooLarge once it passes ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return b"".join(chunks)


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str,
                 headers: dict[str, str] | None = None) -> None:
    """Answer ``{"detail": detail}`` and close the connection, so that the rest of the request is never read."""
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close", **(headers or {})})
    await response(scope, receive, send)


class BodyLimits:
    """ASGI middleware that reads each request body before FastAPI does, counting bytes as they arrive: over
    ``max_body_bytes`` (declared or streamed) is 413 and not complete within ``read_timeout`` s is 408, so an
    oversized body is never buffered whole nor parsed, and a stalled one does not hold its connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limits = State.limits
        too_large = f"request body over the limit of {limits.max_body_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            return await refuse(scope, receive, send, 413, too_large)
        try:
            body = await asyncio.wait_for(read_body(receive, limits.max_body_bytes), limits.read_timeout)
        except BodyTooLarge:
            return await refuse(scope, receive, send, 413, too_large)
        except asyncio.TimeoutError:
            return await refuse(scope, receive, send, 408, f"request body not received within {limits.read_timeout} s")
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class ConcurrencyLimit:
    """ASGI middleware that lets at most ``max_concurrency`` requests in at once and answers the others 503 with
    Retry-After at once: an overload is refused cheaply instead of queueing. Unlike uvicorn's limit_concurrency it
    does not count idle kept-alive connections, answers JSON, and works under any ASGI server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.in_flight = app, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = State.limits.max_concurrency
        if self.in_flight >= limit:  # one event loop: nothing runs between this test and the increment
            return await refuse(scope, receive, send, 503, f"over {limit} requests in flight, retry later",
                                {"Retry-After": "1"})
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers, which uvicorn lacks (its keep-alive timer runs
    only between requests and stops at the first byte, so headers sent a byte at a time, or nothing sent on a new
    connection, would hold the connection forever): each request's headers must be complete within
    ``read_timeout`` s of the connection opening or of the previous response, else the connection is closed."""

    header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.watch_headers()

    def handle_events(self) -> None:
        super().handle_events()
        self.watch_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
        super().connection_lost(exc)

    def watch_headers(self) -> None:
        """Arm the deadline while the next request's headers are awaited; disarm it once they are in."""
        awaiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if awaiting and self.header_deadline is None:
            self.header_deadline = self.loop.call_later(State.limits.read_timeout, self.timeout_keep_alive_handler)
        elif not awaiting and self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None


app = FastAPI(title="seqrec", description="Session-based next-item recommendations", lifespan=lifespan)
app.add_middleware(BodyLimits)
app.add_middleware(ConcurrencyLimit)  # added last, so it runs first: a refused request costs nothing more


@app.exception_handler(RequestValidationError)
async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body", "problem": e["msg"]}
                for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": problems})


@app.get("/health")
def health() -> dict:
    if State.recommender is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    return {"status": "ok"}


@app.get("/metadata")
def metadata() -> dict:
    return State.metadata


@app.post("/recommend")
def recommend(request: RecommendRequest) -> dict:
    if State.recommender is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    sessions = [request.session] if request.session is not None else request.sessions
    results = State.recommender.recommend(sessions, request.k) if sessions else []
    answers = [Recommendation(items=r.items, scores=r.scores).model_dump() for r in results]
    return answers[0] if request.session is not None else {"results": answers}


@app.post("/basket")
def basket(request: BasketRequest) -> dict:
    if State.recommender is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    if not predicts_baskets(State.recommender):
        raise HTTPException(status_code=409, detail="the served model ranks next clicks and does not predict "
                                                    "baskets: serve a model of the train_basket step")
    single = request.session is not None
    sessions = [request.session] if request.session is not None else request.sessions
    times = [request.times] if single and request.times is not None else request.sessions_times
    results = State.recommender.predict(sessions, request.k, times) if sessions else []
    answers = [Basket(buy_probability=r.buy_probability, items=r.items, scores=r.scores,
                      basket=r.basket).model_dump() for r in results]
    return answers[0] if single else {"results": answers}


def main(argv: list[str] | None = None) -> None:
    """``seqrec-serve``: serve a logged or registered model over HTTP with uvicorn."""
    import uvicorn

    p = argparse.ArgumentParser(description="Serve a seqrec model over HTTP (POST /recommend).")
    p.add_argument("--model-uri", default=os.environ.get("MODEL_URI", ""),
                   help="runs:/<run_id>/model or models:/seqrec@champion (default: $MODEL_URI)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    limits = Limits.from_env()
    p.add_argument("--max-body-bytes", type=int, default=limits.max_body_bytes,
                   help="larger request bodies get 413 (default: $SEQREC_MAX_BODY_BYTES or 1 MiB)")
    p.add_argument("--max-item-id-length", type=int, default=limits.max_item_id_length,
                   help="longer item ids get 422 (default: $SEQREC_MAX_ITEM_ID_LENGTH or 256)")
    p.add_argument("--read-timeout", type=float, default=limits.read_timeout,
                   help="seconds to send the headers (else closed) and the body (else 408) "
                        "(default: $SEQREC_READ_TIMEOUT or 10)")
    p.add_argument("--max-concurrency", type=int, default=limits.max_concurrency,
                   help="requests in flight; more get 503 (default: $SEQREC_MAX_CONCURRENCY or 64)")
    a = p.parse_args(argv)
    if not a.model_uri:
        p.error("--model-uri (or MODEL_URI) is required")
    try:
        State.limits = Limits(a.max_body_bytes, a.max_item_id_length, a.read_timeout, a.max_concurrency)
    except ValueError as err:
        p.error(str(err))
    os.environ["MODEL_URI"] = a.model_uri
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", http=HeaderTimeoutH11Protocol,
                timeout_keep_alive=KEEP_ALIVE_S, h11_max_incomplete_event_size=MAX_HEADER_BYTES)


if __name__ == "__main__":
    main()
