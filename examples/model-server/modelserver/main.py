"""The API: GET /, GET /health and POST /predict.

The weights [w1, w2, b] are a NumPy file (MODEL_PATH, default /models/model.npy) read once at
startup. GET /health answers 200 only while they are loaded, so a release without its model
never gets traffic.
"""

import hashlib
import io
import logging
import math
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import numpy
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

log = logging.getLogger("uvicorn.error")

VERSION_FILE = Path(__file__).resolve().parent.parent / "VERSION"
NO_STORE = {"Cache-Control": "no-store"}


def app_version():
    version = os.environ.get("APP_VERSION", "").strip()
    if version:
        return version
    try:
        return VERSION_FILE.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


class Model:
    """The weights (w1, w2, b) and the file's sha256, or the reason they could not be loaded."""

    def __init__(self, path):
        self.weights = self.sha256 = self.error = None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.error = f"missing {path}"
            return
        except OSError as exc:
            self.error = f"unreadable {path}: {exc.strerror}"
            return
        try:
            weights = numpy.load(io.BytesIO(data), allow_pickle=False)
        except Exception:  # whatever numpy makes of a file that is not an array
            self.error = f"not a plain NumPy array: {path}"
            return
        if weights.shape != (3,) or weights.dtype.kind != "f" or not numpy.isfinite(weights).all():
            self.error = f"expected 3 finite float weights in {path}, found {weights.dtype} {weights.shape}"
            return
        self.weights = tuple(float(w) for w in weights)
        self.sha256 = hashlib.sha256(data).hexdigest()


@asynccontextmanager
async def lifespan(app):
    app.state.model = Model(Path(os.environ.get("MODEL_PATH", "/models/model.npy")))
    if app.state.model.error:
        log.error("model not loaded: %s", app.state.model.error)
    else:
        log.info("model loaded: sha256 %s", app.state.model.sha256)
    yield


app = FastAPI(title="model-server", lifespan=lifespan)


@app.exception_handler(RequestValidationError)
async def invalid_request(request, exc):
    # FastAPI's own 422 without the input each error quotes: a NaN there is not JSON.
    errors = [{key: error[key] for key in ("type", "loc", "msg")} for error in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


# Each feature a finite number of sensible size (NaN, infinities and strings get 422).
Feature = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1e6, le=1e6)]


class PredictRequest(BaseModel):
    features: Annotated[list[Feature], Field(min_length=2, max_length=2)]


def sigmoid(z):
    if z >= 0:
        return 1 / (1 + math.exp(-z))
    e = math.exp(z)  # the same value, without overflowing for a large negative z
    return e / (1 + e)


@app.get("/")
def index():
    return {
        "name": "model-server",
        "version": app_version(),
        "endpoints": {
            "GET /health": "200 when the model is loaded, 503 otherwise",
            "POST /predict": '{"features": [x1, x2]} -> {"label": 0 or 1, "probability": p}',
        },
    }


@app.api_route("/health", methods=["GET", "HEAD"])
def health():
    body = {"status": "ok", "version": app_version()}
    model = app.state.model
    if model.error:
        body.update(status="error", model=model.error)
        return JSONResponse(body, status_code=503, headers=NO_STORE)
    body.update(model="loaded", model_sha256=model.sha256)
    return JSONResponse(body, headers=NO_STORE)


@app.post("/predict")
def predict(request: PredictRequest):
    model = app.state.model
    if model.error:
        return JSONResponse({"detail": f"model not loaded: {model.error}"}, status_code=503)
    (x1, x2), (w1, w2, b) = request.features, model.weights
    probability = round(sigmoid(w1 * x1 + w2 * x2 + b), 4)
    return {"label": int(probability >= 0.5), "probability": probability}
