"""HTTP recommendation service (docs/protocol.md, "Recommendation requests"): ``POST /recommend``,
``POST /basket`` (models of ``train_basket``), ``GET /health``, ``GET /metadata``.

Run it with ``seqrec-serve --model-uri models:/seqrec@champion`` or
``MODEL_URI=models:/seqrec@champion uvicorn seqrec.serving.api:app``. Requests are validated with
pydantic: a bad request gets a 4xx answer that names the field, and the service keeps serving.
"""

from __future__ import annotations

import argparse
import os
from contextlib import asynccontextmanager
from typing import Annotated

import mlflow
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr, model_validator

from seqrec.serving.recommender import MAX_K, Recommender

MAX_SESSIONS = 1_000
MAX_CLICKS = 10_000
ItemId = StrictStr | StrictInt


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
        clicks = len(self.session) if self.session is not None else sum(len(s) for s in self.sessions)
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

    recommender: Recommender | None = None
    metadata: dict = {}


def describe(model_uri: str, recommender: Recommender) -> dict:
    """Model URI, registered name and version, run, LoggedModel id, model name, metrics and item count."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    meta: dict = {"model_uri": model_uri, "n_items": recommender.n_items, "max_len": recommender.max_len,
                  "scorer": type(recommender.scorer).__name__}
    client = mlflow.MlflowClient()
    info = mlflow.models.get_model_info(model_uri)
    meta.update({"run_id": info.run_id, "model_id": info.model_id})
    if model_uri.startswith("models:/") and not model_uri.startswith(f"models:/{info.model_id}"):
        meta["name"], meta["version"] = get_model_name_and_version(client, model_uri)
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


app = FastAPI(title="seqrec", description="Session-based next-item recommendations", lifespan=lifespan)


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
    if not hasattr(State.recommender, "thresholds"):
        raise HTTPException(status_code=409, detail="the served model ranks next clicks and does not predict "
                                                    "baskets: serve a model of the train_basket step")
    single = request.session is not None
    sessions = [request.session] if single else request.sessions
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
    a = p.parse_args(argv)
    if not a.model_uri:
        p.error("--model-uri (or MODEL_URI) is required")
    os.environ["MODEL_URI"] = a.model_uri
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
