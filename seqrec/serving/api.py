"""HTTP recommendation service (PROTOCOL 6): ``POST /recommend``, ``GET /health``, ``GET /metadata``.

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
from pydantic import BaseModel, Field, StrictInt, StrictStr, model_validator

from seqrec.serving.pyfunc import MAX_K, Recommender

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


class Recommendation(BaseModel):
    items: list[str]
    scores: list[float]


class State:
    """What the service loaded at start: the recommender and a description of the model."""

    recommender: Recommender | None = None
    metadata: dict = {}


def describe(model_uri: str, recommender: Recommender) -> dict:
    """Model name, version, run, metrics and item count, as far as the URI tells them."""
    meta: dict = {"model_uri": model_uri, "n_items": recommender.n_items, "max_len": recommender.max_len,
                  "scorer": type(recommender.scorer).__name__}
    client = mlflow.MlflowClient()
    run_id = None
    if model_uri.startswith("models:/"):
        name, _, ref = model_uri[len("models:/"):].partition("@")
        if ref:
            version = client.get_model_version_by_alias(name, ref)
        else:
            name, _, number = model_uri[len("models:/"):].partition("/")
            version = client.get_model_version(name, number)
        meta.update({"name": version.name, "version": version.version})
        run_id = version.run_id
    elif model_uri.startswith("runs:/"):
        run_id = model_uri[len("runs:/"):].split("/")[0]
    if run_id:
        run = client.get_run(run_id)
        meta.update({"run_id": run_id, "model": run.data.tags.get("seqrec.model"),
                     "metrics": {k: v for k, v in run.data.metrics.items() if k.startswith(("test_", "val_"))}})
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


def main(argv: list[str] | None = None) -> None:
    """``seqrec-serve``: serve a logged or registered model over HTTP with uvicorn."""
    import uvicorn

    p = argparse.ArgumentParser(description="Serve a seqrec model over HTTP (PROTOCOL 6).")
    p.add_argument("--model-uri", default=os.environ.get("MODEL_URI", ""),
                   help="runs:/<run_id>/model or models:/seqrec@champion (default: $MODEL_URI)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    a = p.parse_args(argv)
    if not a.model_uri:
        p.error("--model-uri (or MODEL_URI) is required")
    os.environ["MODEL_URI"] = a.model_uri
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
