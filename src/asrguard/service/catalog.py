"""The detectors one server offers, by name: the first is the default, a request may name another.

A name is what a client sends (``?detector=NAME`` or a form field ``detector``) and what
``/healthz`` lists with each detector's recogniser and settings. ``asrguard serve`` names a
detector after its folder (``default`` for the shipped one), adding ``-2``, ``-3`` to repeats.

Example:
    >>> unique_names(["default", "mine", "default"])
    ['default', 'mine', 'default-2']
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from ..errors import ConfigError
from .errors import UnknownDetectorError

#: What a detector's name may hold: it travels in URLs and form fields.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with ``-2``, ``-3``, ... added to repeats, in order."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        candidate = name if seen[name] == 1 else f"{name}-{seen[name]}"
        while candidate in out:
            seen[name] += 1
            candidate = f"{name}-{seen[name]}"
        out.append(candidate)
    return out


class Catalog:
    """Detectors by name, in order; the first is the default.

    Example:
        >>> catalog = Catalog({"default": det, "whisper": other})                 # doctest: +SKIP
        >>> catalog.get("whisper")[0], catalog.get(None)[0]                        # doctest: +SKIP
        ('whisper', 'default')
    """

    def __init__(self, detectors: Mapping[str, object]):
        if not detectors:
            raise ConfigError("no detector to serve")
        for name in detectors:
            if not isinstance(name, str) or not NAME.match(name):
                raise ConfigError(f"detector name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting "
                                  "with a letter or digit")
        self.detectors = dict(detectors)
        self.default = next(iter(self.detectors))

    def __len__(self) -> int:
        return len(self.detectors)

    def get(self, name: str | None) -> tuple[str, object]:
        """``(name, detector)`` for ``name``, or the default for None or ''; 400 for an unknown name."""
        if not name:
            return self.default, self.detectors[self.default]
        if name not in self.detectors:
            shown = repr(name) if NAME.match(name) else "(not a valid name)"  # never echo arbitrary input
            raise UnknownDetectorError(f"unknown detector {shown}; this server offers {', '.join(self.detectors)} "
                                       "(see /healthz)")
        return name, self.detectors[name]

    def describe(self) -> list[dict]:
        """What ``/healthz`` says of each detector: its name, recogniser and settings."""
        return [describe(name, detector) for name, detector in self.detectors.items()]


def describe(name: str, detector) -> dict:
    """One detector's public settings (a secret mask seed shows as ``"secret"``)."""
    recognizer = detector.recognizer
    checksum = recognizer.fingerprint() if hasattr(recognizer, "fingerprint") else None
    c = detector.feature_extractor.config
    return {"name": name,
            "recognizer": {"class": type(recognizer).__name__, "checksum": checksum[:12] if checksum else None},
            "classifier": detector.classifier.name, "realizations": c.n, "p": c.p,
            "mask_seed": detector.reported_mask_seed, "threshold": detector.threshold,
            "target_fpr": detector.target_fpr, "sample_rate": recognizer.sample_rate}


__all__ = ["Catalog", "UnknownDetectorError", "describe", "unique_names"]
