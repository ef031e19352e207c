"""The shipped recogniser and detectors, loaded together (used by the CLI, the service and the demo).

This module is wiring: it is the one place that pairs the shipped detectors in
``assets/detectors/*/`` with the recognisers they were fitted for (the CTC model in
``assets/models/ctc_default/`` by default). A detector folder records its recogniser's
checksum, so the shipped detector for any recogniser is found by that checksum. The detector
itself (:mod:`asrguard.detect.detector`) only knows the Recognizer interface.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .asr.ctc import CTCRecognizer
from .detect.registry import load_detector as load_saved_detector
from .errors import ModelFileError

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_DETECTOR_DIR = ASSETS / "detectors" / "default"
EXAMPLE_AUDIO = ASSETS / "examples" / "example.wav"
#: the first paper's target phrase
PAPER_TARGET = "okay google unlock phone and delete files"


@dataclass(frozen=True)
class DemoProfile:
    """What the demo attacks for one kind of recogniser: the bundled input, the target and CW settings."""

    audio: Path
    target: str
    attack_settings: dict = field(default_factory=dict)


#: by recogniser kind (the part of ``--recognizer`` before the colon); the CTC model hears digits and commands,
#: Whisper open English (its settings: the Whisper pilot's, which succeeded on 100 of 100 sentences)
DEMO_PROFILES = {
    "ctc": DemoProfile(EXAMPLE_AUDIO, "delete all files"),
    "whisper": DemoProfile(ASSETS / "examples" / "librivox-sense-and-sensibility-0890.flac", PAPER_TARGET,
                           {"max_iter": 150, "max_shrinks": 2}),
}


def demo_profile(recognizer_spec: str | None = None) -> DemoProfile:
    """The demo's input, target and attack settings for ``recognizer_spec`` (default: the shipped CTC model).

    Example:
        >>> demo_profile("whisper:tiny.en").target
        'okay google unlock phone and delete files'
        >>> demo_profile().audio.name
        'example.wav'
    """
    kind = (recognizer_spec or "ctc").split(":", 1)[0]
    return DEMO_PROFILES.get(kind, DEMO_PROFILES["ctc"])


def load_recognizer(model: str | os.PathLike | None = None):
    """The CTC recogniser in ``model`` (default: the shipped one), checksum verified."""
    return CTCRecognizer.load(model)


def shipped_detector_dir(recognizer) -> Path:
    """The shipped detector fitted for ``recognizer`` (matched by its checksum).

    Raises :class:`~asrguard.errors.ModelFileError` when none was shipped for it.
    """
    checksum = getattr(recognizer, "checksum", None)
    for document in sorted((ASSETS / "detectors").glob("*/detector.json")):
        try:
            fitted_for = json.loads(document.read_text(encoding="utf-8")).get("recognizer", {})
        except (OSError, ValueError):
            continue
        if checksum is not None and fitted_for.get("checksum_sha256") == checksum:
            return document.parent
    raise ModelFileError(f"no shipped detector was fitted for this {type(recognizer).__name__} (checksum "
                         f"{str(checksum)[:12]}); fit one with `asrguard fit-detector --recognizer ...` and pass "
                         "--detector")


def load_detector(detector: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
                  recognizer=None):
    """A saved detector with the recogniser it was fitted for (default: the shipped CTC model and its
    detector; for another ``recognizer``, the shipped detector fitted for it).

    Raises :class:`~asrguard.errors.ModelFileError` with a clear message when either file is
    missing, tampered with, or when the detector was fitted for another recogniser.
    """
    if detector is None and recognizer is not None:
        detector = shipped_detector_dir(recognizer)
    path = Path(detector) if detector is not None else DEFAULT_DETECTOR_DIR
    if not path.exists():
        hint = ("the shipped default detector is missing from this installation; reinstall asrguard or "
                "pass --detector" if detector is None else "check the path")
        raise ModelFileError(f"{path}: no detector here; {hint}")
    if recognizer is None:
        recognizer = load_recognizer(model)
    return load_saved_detector(path, recognizer)  # any kind: the folder's detector.json names it


__all__ = ["DEFAULT_DETECTOR_DIR", "DEMO_PROFILES", "EXAMPLE_AUDIO", "PAPER_TARGET", "DemoProfile", "demo_profile",
           "load_detector", "load_recognizer", "shipped_detector_dir"]
