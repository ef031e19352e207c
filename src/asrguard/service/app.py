"""HTTP API and web page over the detector (FastAPI).

``create_app(detector_path=None)`` returns an ASGI app with

* ``GET /``: a web page to upload or record audio and see the verdict with its evidence (and
  choose the detector, when the server offers several);
* ``GET /healthz``: ``{"status": "ok", ...}`` with every detector offered (async and
  precomputed: fast under any load);
* ``POST /v1/detect`` (multipart form with one part ``file``, or a raw ``audio/*`` body; WAV /
  FLAC / OGG; ``?detector=NAME`` or a form field ``detector`` picks one of several detectors):
  the transcript, the verdict, the score and threshold, and the distinct dropout transcripts
  with counts;
* ``GET /metrics``: Prometheus metrics.

Work is bounded at every step (see :mod:`asrguard.service.gate` and
:mod:`asrguard.service.upload`): the body is counted while it streams and cut at ``max_bytes``,
the audio is checked from its header (duration, sample rate, channels × frames) before it is
decoded, decoding runs in a pool of ``workers`` threads and scoring on one, in batches of at
most ``batch_size`` uploads (:mod:`asrguard.service.scorer`), and beyond
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
from importlib.metadata import version
from typing import Mapping

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..defaults import load_detector
from ..errors import AsrguardError, ConfigError
from .access import ApiKeys, RateLimiter
from .catalog import Catalog, describe
from .errors import UploadError
from .gate import Gate
from .limits import MAX_BYTES, MAX_SECONDS, Limits
from .metrics import Metrics
from .page import PAGE
from .scorer import Scorer
from .upload import decode_upload, read_upload

log = logging.getLogger(__name__)

_DETECTOR_NAME = {"type": "string", "description": "a detector /healthz lists (default: the first)"}
_UPLOAD_SCHEMA = {
    "parameters": [{"name": "detector", "in": "query", "required": False, "schema": _DETECTOR_NAME}],
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": "WAV, FLAC or OGG audio"},
            "detector": _DETECTOR_NAME}}},
        "audio/wav": {"schema": {"type": "string", "format": "binary"}}}},
}


def create_app(detector_path: str | os.PathLike | None = None, *, model: str | os.PathLike | None = None,
               detector=None, detectors: Mapping | None = None, max_bytes: int = MAX_BYTES,
               max_seconds: float = MAX_SECONDS,
               mask_seed: int | str | None = None, limits: Limits | None = None,
               api_keys: ApiKeys | None = None, rate_limit: float | None = None, log_content: bool = False):
    """The ASGI app: FastAPI behind the :class:`~asrguard.service.gate.Gate`.

    ``detector`` (a loaded :class:`~asrguard.detect.detector.Detector`) overrides
    ``detector_path``/``model``; by default the shipped detector and model are used.
    ``detectors`` (name -> loaded detector, the first the default) serves several, chosen per
    request by name. ``mask_seed`` (an integer or ``"random"``) replaces every detector's
    dropout seed; a random one is never reported. ``limits`` sets every limit and the batching
    (``max_bytes``/``max_seconds`` are shortcuts for two of them). ``api_keys`` requires a key
    on ``/v1/detect`` and ``/metrics``; ``rate_limit`` (requests a minute per client) bounds
    each client. ``log_content`` adds file names, transcripts and verdict details to the log.

    The returned app is the gate; the FastAPI app is ``app.app`` and its state (the default
    detector, the catalog of all, limits, metrics, scorer) is on ``app.app.state``.
    """
    if detectors is not None and detector is not None:
        raise ConfigError("give detector or detectors, not both")
    if detectors is None:
        if detector is None:
            detector = load_detector(detector_path, model)
        detectors = {"default": detector}
    catalog = Catalog(detectors)
    for each in catalog.detectors.values():
        each.set_mask_seed(mask_seed)
    limits = limits or Limits(max_bytes=max_bytes, max_seconds=max_seconds)
    metrics = Metrics()
    scorer = Scorer(metrics, batch_size=limits.batch_size, batch_wait=limits.batch_wait_ms / 1000,
                    batch_seconds=limits.batch_seconds, admitted=lambda: gate.inflight)
    decode_pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="asrguard-decode")
    # the default detector's settings stay at the top level, as before several could be served
    default = {k: v for k, v in describe(catalog.default, catalog.detectors[catalog.default]).items()
               if k not in ("name", "recognizer")}
    health = {"status": "ok", **default, "max_bytes": limits.max_bytes, "max_seconds": limits.max_seconds,
              "max_sample_rate": limits.max_sample_rate, "batch_size": limits.batch_size,
              "batch_wait_ms": limits.batch_wait_ms, "auth": api_keys is not None, "rate_limit_per_min": rate_limit,
              "default_detector": catalog.default, "detectors": catalog.describe()}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        # uvicorn has already waited for requests in flight; let queued work finish, then stop
        decode_pool.shutdown(wait=True)
        scorer.shutdown(wait=True)

    # /docs and /redoc load scripts from CDNs and are blank offline; /openapi.json stays
    app = FastAPI(title="asrguard", description="Detect adversarial audio from a recogniser's dropout uncertainty.",
                  version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.detector = catalog.detectors[catalog.default]
    app.state.catalog, app.state.limits, app.state.metrics, app.state.scorer = catalog, limits, metrics, scorer

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
        asked = request.query_params.get("detector")
        catalog.get(asked)  # an unknown name is refused before the body is read
        started = time.perf_counter()
        upload = await read_upload(request, limits)
        metrics.stage.labels("read").observe(time.perf_counter() - started)
        if asked and upload.detector and upload.detector != asked:
            raise UploadError(f"the query names detector {asked!r} but the form names {upload.detector[:64]!r}; "
                              "name one")
        name, chosen = catalog.get(asked or upload.detector)
        record["detector"] = name
        if log_content:
            record["file"] = upload.filename
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        waveform = await loop.run_in_executor(decode_pool, _decode, upload, chosen.recognizer.sample_rate, limits)
        metrics.stage.labels("decode").observe(time.perf_counter() - started)
        upload.data = b""  # the bytes are no longer needed while the request waits
        result = await scorer.explain(chosen, waveform, upload.filename)
        metrics.verdicts.labels(result["verdict"]).inc()
        record.update(verdict=result["verdict"], score=round(result["score"], 4), duration_s=result["duration_s"])
        if log_content:
            record["transcript"] = result["transcript"]
        return {"file": upload.filename, "detector_name": name, **result}

    # a request answered without reaching the scorer (refused while read or decoded) ends a batch's wait for it
    gate = Gate(app, limits=limits, metrics=metrics, api_keys=api_keys,
                rate_limiter=RateLimiter(rate_limit) if rate_limit else None, on_release=scorer.nudge)
    gate.state = app.state  # tests and embedders reach the detector through the gate too
    return gate


def _decode(upload, sample_rate: int, limits: Limits):
    return decode_upload(upload.data, upload.filename, sample_rate, limits=limits)


def _version() -> str:
    try:
        return version("asrguard")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "0"


__all__ = ["MAX_BYTES", "MAX_SECONDS", "UploadError", "create_app", "decode_upload"]
