"""Detectors by name: build any detector family with one call, load a saved one of any family.

================  ===========================================================  ========================
kind              evidence                                                     class
================  ===========================================================  ========================
``uncertainty``   dropout realisations (Jayashankar et al. 2020); the default  ``Detector``
``distribution``  output-distribution statistics, one pass (DistriBlock)       ``DistributionDetector``
``transform``     transcript change under audio transformations (WaveGuard)    ``TransformDetector``
``temporal``      first part's transcript against the whole's (Yang et al.)    ``TemporalDetector``
``noise-flood``   transcript change under band-limited noise (Rajaratnam)      ``NoiseFloodDetector``
``combined``      dropout uncertainty + transform and noise-flood distances    ``CombinedDetector``
================  ===========================================================  ========================

A saved ``detector.json`` records its kind (files without one are ``uncertainty``), so
:func:`load_detector` builds the right class; ``asrguard detect`` and ``asrguard serve`` load
through it. docs/detectors.md describes the settings of each.

Example:
    >>> det = make_detector("noise-flood", rec, snr_db=(30, 20), seed=1).fit(benign)   # doctest: +SKIP
    >>> det.save("guard"); load_detector("guard", rec).kind                             # doctest: +SKIP
    'noise-flood'
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from ..errors import ConfigError, ModelFileError
from ..uncertainty.features import FeatureExtractor
from ..uncertainty.realizations import DEFAULT_N, DEFAULT_P, DEFAULT_SEED
from .classifiers import make_classifier
from .combined import CombinedDetector
from .detector import DEFAULT_TARGET_FPR, DOCUMENT_NAME, Detector
from .rivals import DistributionDetector, NoiseFloodDetector, TemporalDetector, TransformDetector

RIVALS = {cls.kind: cls for cls in (DistributionDetector, TransformDetector, TemporalDetector, NoiseFloodDetector)}
#: Every kind built from features on the rivals' base class: the rivals and the combined detector.
FEATURE_DETECTORS = {**RIVALS, CombinedDetector.kind: CombinedDetector}
KINDS = (Detector.kind, *FEATURE_DETECTORS)
UNCERTAINTY_SETTINGS = ("n", "p", "seed", "classifier", "max_distance", "target_fpr", "masks")


def settings_of(kind: str) -> tuple[str, ...]:
    """The keyword settings ``make_detector(kind, ...)`` accepts.

    Example:
        >>> settings_of("temporal")
        ('fractions', 'target_fpr', 'seed')
    """
    if kind == Detector.kind:
        return UNCERTAINTY_SETTINGS
    if kind not in FEATURE_DETECTORS:
        raise ConfigError(f"unknown detector kind {kind!r}; choose from {', '.join(KINDS)}")
    parameters = inspect.signature(FEATURE_DETECTORS[kind].__init__).parameters
    return tuple(name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY)


def make_detector(kind: str, recognizer, **settings):
    """A fresh (unfitted) detector of ``kind`` for ``recognizer``; ``settings`` are its keyword settings.

    ``uncertainty`` takes ``n``, ``p``, ``seed``, ``classifier``, ``max_distance``, ``target_fpr``
    and ``masks``; the rivals and ``combined`` take their constructors' keywords (see :func:`settings_of`).

    Example:
        >>> make_detector("fast", None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        asrguard.errors.ConfigError: unknown detector kind 'fast'; choose from uncertainty, distribution, ...
    """
    accepted = settings_of(kind)
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ConfigError(f"the {kind} detector has no setting {unknown[0]!r}; it takes {', '.join(accepted)}")
    if kind == Detector.kind:
        seed = int(settings.get("seed", DEFAULT_SEED))
        extractor = FeatureExtractor(n=settings.get("n", DEFAULT_N), p=settings.get("p", DEFAULT_P), seed=seed,
                                     masks=settings.get("masks", "iid"),
                                     **({"max_distance": settings["max_distance"]} if "max_distance" in settings
                                        else {}))
        return Detector(recognizer, extractor, make_classifier(settings.get("classifier", "char-svm4"), seed=seed),
                        target_fpr=float(settings.get("target_fpr", DEFAULT_TARGET_FPR)))
    return FEATURE_DETECTORS[kind](recognizer, **settings)


def saved_kind(directory: str | os.PathLike) -> str:
    """The kind recorded in a saved detector folder (not verified: :func:`load_detector` verifies)."""
    path = Path(directory)
    path = path if path.name == DOCUMENT_NAME else path / DOCUMENT_NAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{path.parent}: no {DOCUMENT_NAME} here; pass a folder written by "
                             "`asrguard fit-detector`") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc}); the file is corrupt") from None
    kind = document.get("kind", Detector.kind) if isinstance(document, dict) else None
    if kind not in KINDS:
        raise ModelFileError(f"{path}: unknown detector kind {kind!r}; this asrguard knows {', '.join(KINDS)}")
    return kind


def load_detector(directory: str | os.PathLike, recognizer, *, allow_unverified: bool = False):
    """A saved detector of any kind, for ``recognizer``, with every check of its class's ``load``."""
    kind = saved_kind(directory)
    cls = Detector if kind == Detector.kind else FEATURE_DETECTORS[kind]
    return cls.load(directory, recognizer, allow_unverified=allow_unverified)


__all__ = ["FEATURE_DETECTORS", "KINDS", "RIVALS", "load_detector", "make_detector", "saved_kind", "settings_of"]
