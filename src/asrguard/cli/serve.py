"""``asrguard serve``: a thin shell over :func:`asrguard.service.server.serve_forever`.

Several detectors may be served at once (``--detector DIR`` repeated); a request picks one by
name (the folder's name), and the first is the default. Each detector runs on the recogniser
it was fitted for: give ``--recognizer`` once for all of them, or once per ``--detector`` in
the same order; without ``--detector``, each ``--recognizer`` gets its shipped detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from ..service.catalog import unique_names
from ..service.limits import Limits

# Imports inside functions keep `asrguard --help` fast (recognisers and detectors import torch, the service
# fastapi and uvicorn); `from . import` inside register is a cycle (the package imports this module).


def pair_detectors(detectors: list[Path], recognizers: list[str]) -> list[tuple[Path | None, str | None]]:
    """``(detector folder or None for the shipped one, recogniser spec or None for the shipped CTC model)`` pairs.

    Example:
        >>> pair_detectors([Path("a"), Path("b")], ["ctc"])
        [(PosixPath('a'), 'ctc'), (PosixPath('b'), 'ctc')]
        >>> pair_detectors([], ["ctc", "whisper:tiny.en"])
        [(None, 'ctc'), (None, 'whisper:tiny.en')]
    """
    if not detectors:
        return [(None, spec) for spec in recognizers] or [(None, None)]
    if len(recognizers) <= 1:
        return [(path, recognizers[0] if recognizers else None) for path in detectors]
    if len(recognizers) == len(detectors):
        return list(zip(detectors, recognizers))
    raise ConfigError(f"{len(detectors)} --detector folders and {len(recognizers)} --recognizer specs: give one "
                      "--recognizer for all detectors, or one per --detector in the same order")


def load_served(detectors: list[Path], recognizers: list[str]) -> dict:
    """Detectors by name (their folder's name, ``-2``... for repeats), each with its recogniser loaded once."""
    from ..asr.registry import load_recognizer
    from ..defaults import load_detector, shipped_detector_dir

    loaded_recognizers: dict = {}
    folders, loaded = [], []
    for path, spec in pair_detectors(detectors, recognizers):
        if spec not in loaded_recognizers:  # one instance per spec: detectors of one recogniser share it
            loaded_recognizers[spec] = load_recognizer(spec)
        recognizer = loaded_recognizers[spec]
        folder = Path(path) if path is not None else shipped_detector_dir(recognizer)
        folders.append(folder)
        loaded.append(load_detector(folder, recognizer=recognizer))
    names = unique_names([folder.resolve().name or "detector" for folder in folders])
    return dict(zip(names, loaded))


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``asrguard`` app."""
    from . import RECOGNIZER_HELP, friendly_errors

    @app.command("serve")
    @friendly_errors
    def serve(
        detector: Optional[List[Path]] = typer.Option(
            None, "--detector", help="Detector folder (default: the shipped detector). Repeat to serve several: a "
                                     "request names one by its folder's name (?detector=NAME); the first is the "
                                     "default."),
        recognizer_spec: Optional[List[str]] = typer.Option(
            None, "--recognizer", help=RECOGNIZER_HELP + " Each detector must have been fitted for its recogniser: "
                                                         "give one for all detectors or one per --detector, in order."),
        host: str = typer.Option("127.0.0.1", help="Address to bind. Beyond loopback, API keys and a rate limit are "
                                                   "on."),
        port: int = typer.Option(8000, help="Port."),
        mask_seed: Optional[str] = typer.Option(
            None, "--mask-seed", envvar="ASRGUARD_MASK_SEED",
            help="Seed of the dropout masks: an integer, or 'random' for a secret one drawn at start-up. The "
                 "shipped seed is public; a secret one costs no accuracy but does not stop dropout-robust attacks."),
        api_key_file: Optional[Path] = typer.Option(
            None, "--api-key-file", help="File of API keys, one per line (16+ characters); clients send "
                                         "'Authorization: Bearer KEY'. Default: none on loopback, a generated one "
                                         "(the file api-keys in ~/.config/asrguard) beyond it."),
        no_auth: bool = typer.Option(False, "--no-auth", help="Beyond loopback, serve without API keys (behind an "
                                                              "authenticating proxy)."),
        rate_limit: Optional[str] = typer.Option(None, "--rate-limit", help="Requests per client, e.g. 60/min, 2/s "
                                                                             "or 'off'. Default: off on loopback, "
                                                                             "60/min beyond."),
        max_bytes: int = typer.Option(10 * 1024 * 1024, "--max-bytes", min=1, help="Largest upload in bytes."),
        max_seconds: float = typer.Option(30.0, "--max-seconds", min=0.1, help="Longest audio in seconds (refused "
                                                                                 "from the header)."),
        max_sample_rate: int = typer.Option(48_000, "--max-sample-rate", min=4000, help="Highest sample rate (Hz)."),
        max_inflight: int = typer.Option(16, "--max-inflight", min=1, help="Detect requests admitted at once; "
                                                                           "beyond them: 503 with Retry-After."),
        workers: int = typer.Option(2, "--workers", min=1, help="Threads decoding uploads (scoring uses one)."),
        body_timeout: float = typer.Option(20.0, "--body-timeout", min=0.1, help="Seconds a client has to send its "
                                                                                  "whole body (else 408)."),
        batch_size: int = typer.Option(8, "--batch-size", min=1, help="Most uploads scored in one realisation pass "
                                                                      "(1: one at a time)."),
        batch_wait_ms: float = typer.Option(20.0, "--batch-wait-ms", min=0.0, help="Longest wait of a queued upload "
                                                                                   "for others to batch with (ms)."),
        log_content: bool = typer.Option(False, "--log-content", help="Log file names and transcripts (off: the "
                                                                      "request log holds no content)."),
    ):
        """Serve the detector over HTTP: web page at /, POST /v1/detect, GET /healthz, GET /metrics."""
        from ..service.server import serve_forever

        limits = Limits(max_bytes=max_bytes, max_seconds=max_seconds, max_sample_rate=max_sample_rate,
                        max_inflight=max_inflight, workers=workers, body_timeout=body_timeout,
                        batch_size=batch_size, batch_wait_ms=batch_wait_ms)
        served = load_served(list(detector or []), list(recognizer_spec or []))
        serve_forever(served, host, port, limits=limits, api_key_file=api_key_file, rate_limit=rate_limit,
                      no_auth=no_auth, log_content=log_content, mask_seed=mask_seed)


__all__ = ["load_served", "pair_detectors", "register"]
