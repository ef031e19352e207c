"""HTTP API and web page over the detector (FastAPI).

``create_app(detector_path=None)`` returns an ASGI app with

* ``GET /``: a web page to upload or record audio and see the verdict with its evidence;
* ``GET /healthz``: ``{"status": "ok", ...}`` (async and precomputed: fast under any load);
* ``POST /v1/detect`` (multipart form with one part ``file``, or a raw ``audio/*`` body; WAV /
  FLAC / OGG): the transcript, the verdict, the score and threshold, and the distinct dropout
  transcripts with counts;
* ``GET /metrics``: Prometheus metrics.

Work is bounded at every step (see :mod:`asrguard.service.gate` and
:mod:`asrguard.service.upload`): the body is counted while it streams and cut at ``max_bytes``,
the audio is checked from its header (duration, sample rate, channels × frames) before it is
decoded, decoding runs in a pool of ``workers`` threads and scoring on one, and beyond
``max_inflight`` requests the service answers 503 with ``Retry-After``. Every refusal is a JSON
``{"error": ..., "code": ...}`` with the status its error class carries (``exc.status``):
400 bad input, 401 no key, 408 too slow, 413 too large, 415 not audio, 422 no speech, 429 rate
limited, 503 overloaded. Silence and near-empty input are refused (422, ``no_speech``), never
scored. Nothing is written to disk.

Run it with ``asrguard serve`` (uvicorn), or in tests with ``fastapi.testclient``.

Example:
    >>> app = create_app()                                                       # doctest: +SKIP
    >>> TestClient(app).post("/v1/detect", files={"file": open("x.wav", "rb")})  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..errors import AsrguardError
from .access import ApiKeys, RateLimiter
from .errors import UploadError
from .gate import Gate
from .limits import MAX_BYTES, MAX_SECONDS, Limits
from .metrics import Metrics
from .page import PAGE
from .scorer import Scorer
from .upload import decode_upload, read_upload

log = logging.getLogger(__name__)

_UPLOAD_SCHEMA = {
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": "WAV, FLAC or OGG audio"}}}},
        "audio/wav": {"schema": {"type": "string", "format": "binary"}}}},
}


def create_app(detector_path: str | os.PathLike | None = None, *, model: str | os.PathLike | None = None,
               detector=None, max_bytes: int = MAX_BYTES, max_seconds: float = MAX_SECONDS,
               mask_seed: int | str | None = None, limits: Limits | None = None,
               api_keys: ApiKeys | None = None, rate_limit: float | None = None, log_content: bool = False):
    """The ASGI app: FastAPI behind the :class:`~asrguard.service.gate.Gate`.

    ``detector`` (a loaded :class:`~asrguard.detect.detector.Detector`) overrides
    ``detector_path``/``model``; by default the shipped detector and model are used.
    ``mask_seed`` (an integer or ``"random"``) replaces the detector's dropout seed; a random
    one is never reported. ``limits`` sets every limit (``max_bytes``/``max_seconds`` are
    shortcuts for two of them). ``api_keys`` requires a key on ``/v1/detect`` and
    ``/metrics``; ``rate_limit`` (requests a minute per client) bounds each client.
    ``log_content`` adds file names, transcripts and verdict details to the request log.

    The returned app is the gate; the FastAPI app is ``app.app`` and its state (detector,
    limits, metrics) is on ``app.app.state``.
    """
    if detector is None:
        from ..defaults import load_detector

        detector = load_detector(detector_path, model)
    detector.set_mask_seed(mask_seed)
    limits = limits or Limits(max_bytes=max_bytes, max_seconds=max_seconds)
    metrics = Metrics()
    scorer = Scorer(detector, metrics)
    decode_pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="asrguard-decode")
    sample_rate = detector.recognizer.sample_rate
    c = detector.feature_extractor.config
    health = {"status": "ok", "classifier": detector.classifier.name, "realizations": c.n, "p": c.p,
              "mask_seed": detector.reported_mask_seed, "threshold": detector.threshold,
              "target_fpr": detector.target_fpr, "sample_rate": sample_rate, "max_bytes": limits.max_bytes,
              "max_seconds": limits.max_seconds, "max_sample_rate": limits.max_sample_rate,
              "auth": api_keys is not None, "rate_limit_per_min": rate_limit}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        # uvicorn has already waited for requests in flight; let queued work finish, then stop
        decode_pool.shutdown(wait=True)
        scorer.shutdown(wait=True)

    # /docs and /redoc load scripts from CDNs and are blank offline; /openapi.json stays
    app = FastAPI(title="asrguard", description="Detect adversarial audio from a recogniser's dropout uncertainty.",
                  version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.detector, app.state.limits, app.state.metrics, app.state.scorer = detector, limits, metrics, scorer

    @app.exception_handler(AsrguardError)
    async def _asrguard_error(request: Request, exc: AsrguardError):
        if exc.status >= 500:
            log.error("request %s failed: %s", getattr(request.state, "request_id", "?"), exc)
        metrics.refused.labels(exc.code).inc()
        if exc.code == "no_speech":
            metrics.verdicts.labels("no_speech").inc()
        return JSONResponse(status_code=exc.status, content={"error": str(exc), "code": exc.code},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # a bug, not bad input: the client gets JSON with the id to quote, the log gets the traceback
        request_id = getattr(request.state, "request_id", "?")
        log.exception("request %s failed", request_id)
        return JSONResponse(status_code=500, content={"error": f"internal error (request {request_id}); the server "
                                                               "log has the details", "code": "internal_error"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)

    @app.get("/healthz")
    async def healthz():
        return {**health, "inflight": gate.inflight, "queued": scorer.waiting}

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint():
        body, media_type = metrics.render()
        return Response(body, media_type=media_type)

    @app.post("/v1/detect", openapi_extra=_UPLOAD_SCHEMA)
    async def detect(request: Request):
        record = request.state.log
        started = time.perf_counter()
        upload = await read_upload(request, limits)
        metrics.stage.labels("read").observe(time.perf_counter() - started)
        if log_content:
            record["file"] = upload.filename
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        waveform = await loop.run_in_executor(decode_pool, _decode, upload, sample_rate, limits)
        metrics.stage.labels("decode").observe(time.perf_counter() - started)
        upload.data = b""  # the bytes are no longer needed while the request waits
        result = await scorer.explain(waveform, upload.filename)
        metrics.verdicts.labels(result["verdict"]).inc()
        record.update(verdict=result["verdict"], score=round(result["score"], 4), duration_s=result["duration_s"])
        if log_content:
            record["transcript"] = result["transcript"]
        return {"file": upload.filename, **result}

    gate = Gate(app, limits=limits, metrics=metrics, api_keys=api_keys,
                rate_limiter=RateLimiter(rate_limit) if rate_limit else None)
    gate.state = app.state  # tests and embedders reach the detector through the gate too
    return gate


def _decode(upload, sample_rate: int, limits: Limits):
    return decode_upload(upload.data, upload.filename, sample_rate, limits=limits)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("asrguard")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "0"


__all__ = ["MAX_BYTES", "MAX_SECONDS", "UploadError", "create_app", "decode_upload"]
