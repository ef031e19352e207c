"""What every rival detector shares: audio in, features, threshold, explain, save / load.

A rival detector measures a short feature vector per input (:meth:`RivalDetector.features`),
turns it into one score (higher = more adversarial) and flags scores above a threshold
calibrated on benign audio to a target false-positive rate
(:func:`asrguard.detect.detector.threshold_for_fpr`), like the dropout-uncertainty
:class:`~asrguard.detect.detector.Detector`. A subclass supplies:

* ``kind`` (its registry name) and ``needs`` (the recogniser capabilities it uses; a recogniser
  without one is refused when the detector is built);
* ``feature_names`` and ``_measure(waveform)``: the features of one input and the evidence
  behind them (the transcripts it compared);
* ``_score_rows(rows)``; and, if it learns anything beyond the threshold, ``_fit_rows``,
  ``_state`` and ``_restore`` (named float arrays for safetensors).

Saved detectors are ``detector.json`` (format, ``kind``, settings, threshold, the recogniser's
checksum, SHA-256 checksums) plus ``detector.safetensors`` (learned arrays, possibly none);
nothing is pickled, and loading refuses a modified file or another recogniser.

Example:
    >>> det = make_detector("transform", rec).fit(benign_waveforms)   # doctest: +SKIP
    >>> det.save("guard"); type(det).load("guard", rec).score(x)       # doctest: +SKIP
    0.125
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar, Mapping

import numpy as np
from rapidfuzz.distance import Levenshtein

from ...asr.base import require
from ...errors import AsrguardError, ConfigError, ModelFileError
from ...uncertainty.distributions import DEFAULT_MAX_DISTANCE, char_histogram
from ..detector import DEFAULT_TARGET_FPR, input_waveform, threshold_for_fpr
from ..document import DOCUMENT_NAME, FORMAT, FORMAT_VERSION, check_recognizer, read_document, write_document


def transcript_distance(a: str, b: str) -> float:
    """Character edit distance over the longer transcript's length, in [0, 1] (0 for two empty ones).

    A symmetric, bounded form of the character error rate: neither transcript is the reference.

    Example:
        >>> transcript_distance("open door", "open dor"), transcript_distance("", "yes")
        (0.1111111111111111, 1.0)
    """
    longest = max(len(a), len(b))
    return 0.0 if longest == 0 else Levenshtein.distance(a, b) / longest


#: Weight of the mean distance added to a "max" score. Distances are capped at 1 and many benign
#: inputs already reach it, so a pure maximum ties at the top and a 5 % threshold can land on 1,
#: where nothing scores above it; the mean orders the ties.
TIE_BREAK = 0.01


def max_with_tie_break(rows: np.ndarray) -> np.ndarray:
    """Per row: the largest distance, plus :data:`TIE_BREAK` times the mean distance.

    Example:
        >>> max_with_tie_break(np.array([[1.0, 1.0], [1.0, 0.0], [0.5, 0.5]])).tolist()
        [1.01, 1.005, 0.505]
    """
    return rows.max(axis=1) + TIE_BREAK * rows.mean(axis=1)


def standardisation(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the mean and the standard deviation, 1 for a constant column (it carries no information).

    Example:
        >>> mean, scale = standardisation(np.array([[1.0, 5.0], [3.0, 5.0]]))
        >>> mean.tolist(), scale.tolist()
        ([2.0, 5.0], [1.0, 1.0])
    """
    scale = rows.std(axis=0)
    return rows.mean(axis=0), np.where(scale > 1e-12, scale, 1.0)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class RivalDetector:
    """Base of the rival detectors; see the module docstring. Learned state ends in ``_``."""

    kind: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ("transcribe",)
    #: True for a detector that cannot fit on benign audio alone (refused before anything is measured)
    needs_adversarial: ClassVar[bool] = False

    def __init__(self, recognizer, *, target_fpr: float = DEFAULT_TARGET_FPR, seed: int = 0):
        require(recognizer, *self.needs, user=f"the {self.kind} detector")
        if not 0.0 <= target_fpr < 1.0:
            raise ConfigError(f"target_fpr must be in [0, 1), got {target_fpr}")
        self.recognizer = recognizer
        self.target_fpr = float(target_fpr)
        self.seed = _check_seed(seed)
        self.seed_is_secret = False
        self.threshold_: float | None = None
        self.metadata: dict = {}

    def __repr__(self) -> str:
        shown = {**self.settings(), "seed": self.reported_mask_seed}  # a secret seed stays secret
        return f"{type(self).__name__}({shown}, threshold={self.threshold_}, target_fpr={self.target_fpr})"

    # --- what a subclass supplies ------------------------------------------------------
    feature_names: list[str] = []
    #: how rows become one score, as the service and CLI report it (in place of a classifier's name)
    rule: str = ""

    def settings(self) -> dict:
        """The constructor's keyword arguments (but ``target_fpr``), JSON-ready; saved and reloaded."""
        return {"seed": self.seed}

    @property
    def passes(self) -> int:
        """Transcriptions per input (what the service reports as "realizations")."""
        return 1

    def _measure(self, waveform: np.ndarray) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def _fit_rows(self, benign: np.ndarray, adversarial: np.ndarray | None) -> None:
        """Learn whatever turns rows into scores; the default rules learn nothing."""

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {}

    def _restore(self, config: Mapping, arrays: Mapping[str, np.ndarray]) -> None:
        """Rebuild learned state from :meth:`_state`'s output."""

    # --- audio in, features out --------------------------------------------------------
    def waveform(self, audio, sample_rate: int | None = None, name: str | None = None) -> np.ndarray:
        """A path or samples as a validated waveform at the recogniser's rate."""
        return input_waveform(self.recognizer, audio, sample_rate, name)

    def features(self, audio, *, sample_rate: int | None = None, name: str | None = None) -> np.ndarray:
        """The feature vector of one input (``len(feature_names)`` floats)."""
        return self._measure(self.waveform(audio, sample_rate, name))[0]

    def feature_matrix(self, items, what: str = "audio") -> np.ndarray:
        """``(N, D)`` features of a sequence of inputs (paths or waveforms), or of one input."""
        if isinstance(items, (str, os.PathLike)) or getattr(items, "ndim", None) == 1:
            items = [items]  # one input, not a sequence of inputs
        items = list(items)
        if not items:
            raise ConfigError(f"no {what} examples given")
        return np.stack([self.features(item, name=f"{what}[{i}]") for i, item in enumerate(items)])

    # --- fitting -----------------------------------------------------------------------
    def fit(self, benign, adversarial=None, *, calibration=None) -> "RivalDetector":
        """Fit on benign (and adversarial) audio, then calibrate the threshold; returns ``self``.

        ``calibration`` (benign) sets the threshold when given, else the benign training set does.
        """
        self.check_adversarial_given(adversarial)
        return self.fit_features(self.feature_matrix(benign, "benign"),
                                 None if adversarial is None else self.feature_matrix(adversarial, "adversarial"),
                                 None if calibration is None else self.feature_matrix(calibration, "calibration"))

    def fit_features(self, benign: np.ndarray, adversarial: np.ndarray | None = None,
                     calibration: np.ndarray | None = None) -> "RivalDetector":
        """Like :meth:`fit`, on rows of :meth:`features` already measured with this detector."""
        self.check_adversarial_given(adversarial)
        benign = self._rows(benign, "benign")
        adversarial = None if adversarial is None else self._rows(adversarial, "adversarial")
        reference = benign if calibration is None else self._rows(calibration, "calibration")
        self._fit_rows(benign, adversarial)
        self.threshold_ = threshold_for_fpr(self._score_rows(reference), self.target_fpr)
        self.metadata.update({
            "n_benign": len(benign), "n_adversarial": 0 if adversarial is None else len(adversarial),
            "calibrated_on": "calibration" if calibration is not None else "benign training set",
            "n_calibration": len(reference)})
        return self

    def check_adversarial_given(self, adversarial) -> None:
        """Refuse ``adversarial=None`` for a detector that cannot fit on benign audio alone."""
        if self.needs_adversarial and adversarial is None:
            raise ConfigError(f"the {self.kind} detector needs adversarial examples to fit (e.g. an `asrguard "
                              "attack` folder); only the uncertainty and distribution detectors fit on benign "
                              "audio alone")

    def calibrate(self, benign, target_fpr: float | None = None) -> float:
        """Re-choose the threshold on new benign audio; returns it."""
        if target_fpr is not None:
            if not 0.0 <= target_fpr < 1.0:
                raise ConfigError(f"target_fpr must be in [0, 1), got {target_fpr}")
            self.target_fpr = float(target_fpr)
        self._check_fitted()
        rows = self.feature_matrix(benign, "calibration")
        self.threshold_ = threshold_for_fpr(self._score_rows(rows), self.target_fpr)
        self.metadata.update({"calibrated_on": "calibration", "n_calibration": len(rows)})
        return self.threshold_

    def _rows(self, rows, what: str) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.feature_names) or rows.shape[0] == 0:
            raise ConfigError(f"{what}: expected (N, {len(self.feature_names)}) feature rows, got {rows.shape}")
        if not np.all(np.isfinite(rows)):
            raise ConfigError(f"{what}: features contain NaN or infinite values")
        return rows

    # --- inference ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.threshold_ is None:
            raise ConfigError(f"{self.kind} detector is not fitted; call fit() or load a saved detector")

    def score_features(self, rows) -> np.ndarray:
        """Scores of feature rows ``(N, D)`` (or one row ``(D,)``)."""
        self._check_fitted()
        rows = np.asarray(rows, dtype=np.float64)
        return self._score_rows(self._rows(rows[None, :] if rows.ndim == 1 else rows, "features"))

    def score(self, audio, *, sample_rate: int | None = None) -> float:
        """Score of one input: higher = more likely adversarial."""
        self._check_fitted()
        return float(self.score_features(self.features(audio, sample_rate=sample_rate))[0])

    def predict(self, audio, *, sample_rate: int | None = None) -> bool:
        """True when the input is judged adversarial (score above the calibrated threshold)."""
        return self.score(audio, sample_rate=sample_rate) > self.threshold_

    def explain(self, audio, *, sample_rate: int | None = None, name: str | None = None) -> dict:
        """Verdict with its evidence: score, threshold, the features and the transcripts compared."""
        self._check_fitted()
        waveform = self.waveform(audio, sample_rate, name)
        row, evidence = self._measure(waveform)
        score = float(self.score_features(row)[0])
        adversarial = score > self.threshold_
        transcript = evidence["transcript"]
        compared = [transcript] + [c["transcript"] for c in evidence.get("compared", [])]
        distances = np.array([Levenshtein.distance(transcript, t) for t in compared], dtype=np.int64)
        return {
            "detector": self.kind, "transcript": transcript,
            "verdict": "adversarial" if adversarial else "benign", "adversarial": bool(adversarial),
            "score": score, "threshold": float(self.threshold_), "target_fpr": self.target_fpr,
            "classifier": self.rule, "realizations": len(compared), "p": None, "seed": self.reported_mask_seed,
            # the page and the CLI show these for every detector: each transcript, and its edit distance
            # from the input's own transcript
            "distinct": [{"transcript": t, "count": int(n)} for t, n in Counter(compared).most_common()],
            "histogram": [int(v) for v in char_histogram(distances, max_distance=DEFAULT_MAX_DISTANCE)],
            "features": {k: float(v) for k, v in zip(self.feature_names, row)},
            "evidence": evidence, "duration_s": len(waveform) / self.recognizer.sample_rate,
        }

    # --- the seed, and what the service reads --------------------------------------------
    def set_mask_seed(self, seed: int | str | None) -> "RivalDetector":
        """Draw this detector's randomness from another seed (``"random"``: a secret one); ``None`` keeps it.

        Only the detectors that draw noise use it (transform, noise-flood); the others ignore it.
        """
        if seed is None:
            return self
        if isinstance(seed, str) and seed.strip().lower() == "random":
            self.seed, self.seed_is_secret = secrets.randbits(63), True
            return self
        try:
            value = int(seed)
        except (TypeError, ValueError):
            raise ConfigError(f"seed must be a non-negative integer or 'random', got {seed!r}") from None
        self.seed, self.seed_is_secret = _check_seed(value), False
        return self

    def copy_with_seed(self, seed: int) -> "RivalDetector":
        """The same fitted detector drawing its randomness from ``seed`` (this one is left as it is).

        Example:
            >>> det.copy_with_seed(7).threshold == det.threshold   # doctest: +SKIP
            True
        """
        self._check_fitted()
        other = type(self)(self.recognizer, **{**self.settings(), "seed": seed}, target_fpr=self.target_fpr)
        other._restore(*self._state())
        other.threshold_, other.metadata = self.threshold_, dict(self.metadata)
        return other

    def fingerprint(self) -> str:
        """SHA-256 of the kind, settings, learned arrays and threshold: equal for equal detectors."""
        self._check_fitted()
        config, arrays = self._state()
        digest = hashlib.sha256(json.dumps({"kind": self.kind, "settings": self.settings(), "model": config,
                                            "threshold": self.threshold_}, sort_keys=True).encode())
        for name in sorted(arrays):
            digest.update(np.ascontiguousarray(arrays[name], dtype=np.float64).tobytes())
        return digest.hexdigest()

    @property
    def reported_mask_seed(self) -> int | str:
        return "secret" if self.seed_is_secret else self.seed

    @property
    def threshold(self) -> float | None:
        """The calibrated threshold (``threshold_``), under the name the CLI and the service read."""
        return self.threshold_

    @property
    def classifier(self) -> SimpleNamespace:
        # the service's health check reads detector.classifier.name and detector.feature_extractor.config
        return SimpleNamespace(name=self.rule)

    @property
    def feature_extractor(self) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(n=self.passes, p=None, seed=self.reported_mask_seed))

    # --- persistence ---------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, metadata: Mapping | None = None) -> Path:
        """Write ``detector.json`` + ``detector.safetensors`` into ``directory`` (atomically)."""
        self._check_fitted()
        if self.seed_is_secret:
            raise ConfigError("this detector draws from a secret seed, which is never written; "
                              "save it before set_mask_seed('random')")
        config, arrays = self._state()
        document = {
            "format": FORMAT, "version": FORMAT_VERSION, "kind": self.kind, "settings": self.settings(),
            "model": config, "threshold": float(self.threshold_), "target_fpr": self.target_fpr,
            "recognizer": {"class": type(self.recognizer).__name__, "checksum_sha256": self.recognizer.fingerprint(),
                           "sample_rate": int(self.recognizer.sample_rate)},
            "metadata": {**self.metadata, **(metadata or {})},
        }
        return write_document(directory, document,
                              {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()})

    @classmethod
    def load(cls, directory: str | os.PathLike, recognizer, *, allow_unverified: bool = False) -> "RivalDetector":
        """Load a saved detector of this kind for ``recognizer``, verifying both checksums.

        Raises :class:`ModelFileError` when a file is missing, malformed or modified, when it holds
        another kind of detector, or when ``recognizer`` is not the one it was fitted for.
        """
        folder, document, arrays = read_document(directory)
        doc_path = folder / DOCUMENT_NAME
        if document.get("kind") != cls.kind:
            raise ModelFileError(f"{doc_path}: a {document.get('kind', 'uncertainty')!r} detector, not a "
                                 f"{cls.kind!r} one; load it with asrguard.detect.registry.load_detector")
        check_recognizer(doc_path, document.get("recognizer", {}), recognizer, recognizer.fingerprint(),
                         allow_unverified)
        try:
            detector = cls(recognizer, **dict(document["settings"]), target_fpr=float(document["target_fpr"]))
            detector._restore(document.get("model", {}), arrays)
            detector.threshold_ = float(document["threshold"])
        except (AsrguardError, KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{doc_path}: inconsistent detector file ({exc})") from None
        detector.metadata = dict(document.get("metadata", {}))
        return detector


__all__ = ["RivalDetector", "standardisation", "transcript_distance"]
