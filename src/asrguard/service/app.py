"""HTTP API over the detector (FastAPI).

``create_app(detector_path=None)`` returns an app with

* ``GET /healthz``: ``{"status": "ok", ...}`` once the recogniser and detector are loaded;
* ``POST /v1/detect`` (multipart form, field ``file``: WAV / FLAC / OGG): the transcript, the
  verdict, the score and threshold, and the distinct dropout transcripts with counts.

Bad input gets the same messages as the library: 400 for unreadable or invalid audio, 413
for an upload over ``max_bytes`` or audio over ``max_seconds``, 415 for a declared media
type that is not audio. Nothing is written to disk: uploads are decoded in memory.

Run it with ``uvicorn`` (``asrguard serve``), or in tests with ``fastapi.testclient``.

Example:
    >>> app = create_app()                                                       # doctest: +SKIP
    >>> TestClient(app).post("/v1/detect", files={"file": open("x.wav", "rb")})  # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
import os
import threading

import numpy as np
import soundfile as sf
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import JSONResponse

from ..audio import resample, short_reason, validate_waveform
from ..errors import AsrguardError, AudioFileError, InvalidAudioError

log = logging.getLogger(__name__)

#: Largest accepted upload (bytes): 10 MiB is over a minute of 16 kHz 32-bit float audio.
MAX_BYTES = 10 * 1024 * 1024
#: Longest accepted audio: the recognisers here are trained on clips of a few seconds.
MAX_SECONDS = 30.0
ACCEPTED_TYPES = ("audio/", "application/octet-stream")


class UploadError(AsrguardError):
    """An upload the service refuses; ``status`` is the HTTP status code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, filename: str, sample_rate: int, *, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Decode uploaded bytes into a validated mono waveform at ``sample_rate``."""
    if not data:
        raise UploadError(f"{filename}: file is empty (0 bytes)")
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types
        raise UploadError(f"{filename}: not a readable audio file ({short_reason(exc)}); supported: WAV, FLAC, OGG") from None
    if info.samplerate > 0 and info.frames > max_seconds * info.samplerate:
        raise UploadError(f"{filename}: is {info.frames / info.samplerate:.1f} s long, over the limit of "
                          f"{max_seconds:g} s; split it into shorter segments", status=413)
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001
        raise UploadError(f"{filename}: audio data is corrupt ({short_reason(exc)})") from None
    if samples.shape[0] == 0:
        raise UploadError(f"{filename}: contains no samples")
    waveform = validate_waveform(samples.mean(axis=1), rate, name=filename, max_seconds=max_seconds)
    if rate != sample_rate:
        waveform = resample(waveform, rate, sample_rate)
    return waveform


def create_app(detector_path: str | os.PathLike | None = None, *, model: str | os.PathLike | None = None,
               detector=None, max_bytes: int = MAX_BYTES, max_seconds: float = MAX_SECONDS,
               mask_seed: int | str | None = None):
    """The FastAPI app. ``detector`` (a loaded :class:`~asrguard.detect.detector.Detector`)
    overrides ``detector_path``/``model``; by default the shipped detector and model are used.
    ``mask_seed`` (an integer or ``"random"``) replaces the detector's dropout seed
    (:meth:`~asrguard.detect.detector.Detector.set_mask_seed`); a random one is never reported."""
    if detector is None:
        from ..defaults import load_detector

        detector = load_detector(detector_path, model)
    detector.set_mask_seed(mask_seed)
    lock = threading.Lock()  # the recogniser's dropout state is per instance: one request at a time
    app = FastAPI(title="asrguard", description="Detect adversarial audio from a recogniser's dropout uncertainty.",
                  version=_version())
    app.state.detector = detector

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError):
        return JSONResponse(status_code=exc.status, content={"error": str(exc)})

    @app.exception_handler(AsrguardError)
    async def _asrguard_error(request: Request, exc: AsrguardError):
        status = 400 if isinstance(exc, (InvalidAudioError, AudioFileError)) else 500
        if isinstance(exc, InvalidAudioError) and "over the limit" in str(exc):
            status = 413
        return JSONResponse(status_code=status, content={"error": str(exc)})

    @app.get("/healthz")
    def healthz():
        c = detector.feature_extractor.config
        return {"status": "ok", "classifier": detector.classifier.name, "realizations": c.n, "p": c.p,
                "mask_seed": detector.reported_mask_seed,
                "threshold": detector.threshold, "target_fpr": detector.target_fpr,
                "sample_rate": detector.recognizer.sample_rate, "max_bytes": max_bytes, "max_seconds": max_seconds}

    @app.post("/v1/detect")
    def detect(request: Request, file: UploadFile = File(..., description="WAV, FLAC or OGG audio")):
        # a plain (sync) endpoint: FastAPI runs it in a worker thread, so scoring never blocks the loop
        name = file.filename or "upload"
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
            raise UploadError(f"{name}: upload is {int(declared)} bytes, over the limit of {max_bytes} bytes", 413)
        content_type = (file.content_type or "").lower()
        if content_type and not content_type.startswith(ACCEPTED_TYPES):
            raise UploadError(f"{name}: media type {content_type!r} is not audio; upload WAV, FLAC or OGG", 415)
        data = file.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise UploadError(f"{name}: upload is over the limit of {max_bytes} bytes", 413)
        waveform = decode_upload(data, name, detector.recognizer.sample_rate, max_seconds=max_seconds)
        with lock:
            result = detector.explain(waveform, name=name)
        return {"file": name, **result}

    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("asrguard")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "0"


__all__ = ["MAX_BYTES", "MAX_SECONDS", "UploadError", "create_app", "decode_upload"]
