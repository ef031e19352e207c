"""The detector: recogniser + feature extractor + classifier + calibrated threshold.

``Detector(recognizer, FeatureExtractor(), make_classifier("char-svm4"))``:

* :meth:`Detector.fit` ``(benign, adversarial=None)`` extracts uncertainty features and fits the
  classifier; with benign audio only it fits the one-class Gaussian. It then calibrates a
  threshold on benign scores so that at most ``target_fpr`` of them are flagged (on the
  ``calibration`` set when given - better, since training scores are optimistic - else on
  the benign training set).
* :meth:`Detector.score` (higher = more adversarial), :meth:`Detector.predict` (score above
  the stored threshold) and :meth:`Detector.explain` (distinct transcripts with counts,
  ``P^char`` histogram, score, verdict) accept a file path or a waveform at the recogniser's
  rate; every input goes through :func:`asrguard.audio.load_audio` or
  :func:`asrguard.audio.validate_waveform`.
* :meth:`Detector.save` / :meth:`Detector.load` use no pickle: ``detector.json`` (settings,
  threshold, the recogniser's checksum and, where it covers more, its fingerprint, SHA-256
  checksums) plus ``detector.safetensors`` (classifier arrays). Loading refuses a file whose
  checksums do not match (tampered or corrupt) and a recogniser other than the one the
  detector was fitted for (other weights, or the same weights under another config).

Only :mod:`asrguard.asr.base` is imported from the recogniser side.

Example:
    >>> det = Detector(rec, FeatureExtractor(), make_classifier("char-svm4"))  # doctest: +SKIP
    >>> det.fit(benign_waveforms, adversarial_waveforms).save("my_detector")   # doctest: +SKIP
    >>> Detector.load("my_detector", rec).predict("suspicious.wav")            # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
from pathlib import Path
from typing import Mapping

import numpy as np

from ..asr.base import Recognizer, missing_capabilities, require
from ..audio import load_audio, resample, validate_waveform
from ..errors import AsrguardError, ConfigError, ModelFileError
from ..uncertainty.features import FeatureExtractor, FeatureTable, UncertaintyFeatures
from .classifiers import UncertaintyClassifier, make_classifier
# the file format lives in .document; its names stay importable from here
from .document import (ARRAYS_NAME, DOCUMENT_NAME, FORMAT, FORMAT_VERSION, check_recognizer, read_document,
                       write_document)

log = logging.getLogger(__name__)

DEFAULT_TARGET_FPR = 0.05


def threshold_for_fpr(benign_scores, fpr: float) -> float:
    """Smallest threshold ``t`` from the scores such that at most ``fpr`` of them are ``> t``.

    Example:
        >>> threshold_for_fpr([0.0, 1.0, 2.0, 3.0], 0.25)
        2.0
    """
    scores = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        raise ConfigError("no benign scores to calibrate a threshold on")
    if not 0.0 <= fpr < 1.0:
        raise ConfigError(f"target false-positive rate must be in [0, 1), got {fpr}")
    allowed = int(math.floor(fpr * scores.size + 1e-9))
    return float(scores[min(allowed, scores.size - 1)])


def input_waveform(recognizer, audio, sample_rate: int | None = None, name: str | None = None) -> np.ndarray:
    """One input as a validated waveform at ``recognizer``'s rate: a file path, or samples at
    ``sample_rate`` (default: the recogniser's rate). Every detector's entry points use this."""
    rate = recognizer.sample_rate
    if isinstance(audio, (str, os.PathLike)):
        waveform, _ = load_audio(audio, rate)
        return waveform
    label = name or "audio"
    if sample_rate is not None and int(sample_rate) != rate:
        waveform = validate_waveform(audio, sample_rate, name=label)
        return resample(waveform, sample_rate, rate)
    return validate_waveform(audio, rate, name=label)


class Detector:
    """Adversarial-audio detector from a recogniser's dropout uncertainty."""

    #: the name of this family in :mod:`asrguard.detect.registry` and in saved ``detector.json`` files
    kind = "uncertainty"

    def __init__(self, recognizer: Recognizer, feature_extractor: FeatureExtractor | None = None,
                 classifier: UncertaintyClassifier | str = "char-svm4", *,
                 target_fpr: float = DEFAULT_TARGET_FPR):
        # the capabilities it uses, not a class: Whisper and adapters qualify by what they can do
        require(recognizer, "transcribe", "stochastic", user="a detector")
        if not 0.0 <= target_fpr < 1.0:
            raise ConfigError(f"target_fpr must be in [0, 1), got {target_fpr}")
        self.recognizer = recognizer
        self.feature_extractor = feature_extractor or FeatureExtractor()
        self.classifier = make_classifier(classifier) if isinstance(classifier, str) else classifier
        self.target_fpr = float(target_fpr)
        self.threshold: float | None = None
        self.metadata: dict = {}
        self.mask_seed_is_secret = False

    def __repr__(self) -> str:
        return (f"Detector({self.classifier.name}, {self.feature_extractor!r}, "
                f"threshold={self.threshold}, target_fpr={self.target_fpr})")

    # --- audio in ------------------------------------------------------------------
    def _waveform(self, audio, sample_rate: int | None = None, name: str | None = None) -> np.ndarray:
        return input_waveform(self.recognizer, audio, sample_rate, name)

    def features(self, audio, *, sample_rate: int | None = None, name: str | None = None) -> UncertaintyFeatures:
        """Uncertainty features of one input (path, or waveform at ``sample_rate``/the recogniser's rate)."""
        waveform = self._waveform(audio, sample_rate, name)
        return self.feature_extractor(self.recognizer, waveform, name=name or "audio")

    def _table(self, items, what: str) -> FeatureTable:
        if isinstance(items, FeatureTable):
            return items
        if isinstance(items, (str, os.PathLike)) or getattr(items, "ndim", None) == 1:
            items = [items]  # one input, not a sequence of inputs
        items = list(items)
        if not items:
            raise ConfigError(f"no {what} examples given")
        feats = []
        for i, item in enumerate(items):
            feats.append(item if isinstance(item, UncertaintyFeatures)
                         else self.features(item, name=f"{what}[{i}]"))
        return FeatureTable.stack(feats)

    def set_mask_seed(self, seed: int | str | None) -> "Detector":
        """Draw the dropout masks from another seed; ``"random"`` draws a secret one. Returns ``self``.

        The shipped detector's seed is public, so an attacker knows all I masks. A seed of the
        deployment's own costs nothing: the classifier and threshold carry over, because
        realisations from any seed are alike in distribution (``python -m
        asrguard.experiments.mask_seeds`` measures how alike). It is no defence against an
        attacker who makes the transcript robust to dropout, though: examples optimised against
        the 50 known masks evade unseen masks just as well (``python -m
        asrguard.experiments.adaptive``). A secret seed is never reported by :meth:`explain`;
        ``None`` keeps the current one.

        Example:
            >>> det.set_mask_seed("random").explain("x.wav")["seed"]   # doctest: +SKIP
            'secret'
        """
        if seed is None:
            return self
        secret = isinstance(seed, str) and seed.strip().lower() == "random"
        if secret:
            value = secrets.randbits(63)
        else:
            try:
                value = int(seed)
            except (TypeError, ValueError):
                raise ConfigError(f"mask seed must be a non-negative integer or 'random', got {seed!r}") from None
            if value < 0:
                raise ConfigError(f"mask seed must be a non-negative integer or 'random', got {seed!r}")
        self.feature_extractor = self.feature_extractor.replace(seed=value)
        self.mask_seed_is_secret = secret
        return self

    @property
    def reported_mask_seed(self) -> int | str:
        """The mask seed as outputs may show it: ``"secret"`` for a random one."""
        return "secret" if self.mask_seed_is_secret else self.feature_extractor.config.seed

    def copy_with_seed(self, seed: int) -> "Detector":
        """The same fitted detector drawing its masks from ``seed`` (this one is left as it is).

        Example:
            >>> det.copy_with_seed(7).threshold == det.threshold   # doctest: +SKIP
            True
        """
        self._check_fitted()
        other = type(self)(self.recognizer, self.feature_extractor, self.classifier, target_fpr=self.target_fpr)
        other.threshold, other.metadata = self.threshold, dict(self.metadata)
        return other.set_mask_seed(int(seed))

    def fingerprint(self) -> str:
        """SHA-256 of the kind, feature settings, classifier state and threshold: equal for equal detectors."""
        self._check_fitted()
        config, arrays = self.classifier.get_state()
        digest = hashlib.sha256(json.dumps({"kind": self.kind, "features": self.feature_extractor.to_dict(),
                                            "classifier": config, "threshold": self.threshold},
                                           sort_keys=True).encode())
        for name in sorted(arrays):
            digest.update(np.ascontiguousarray(arrays[name], dtype=np.float64).tobytes())
        return digest.hexdigest()

    # --- fitting ---------------------------------------------------------------------
    def fit(self, benign, adversarial=None, *, calibration=None) -> "Detector":
        """Fit on benign (and adversarial) audio; returns ``self``.

        Each argument is a sequence of waveforms / paths / :class:`UncertaintyFeatures`, or a
        :class:`FeatureTable`. Without ``adversarial`` the classifier becomes the one-class
        Gaussian (fitted on benign data only). ``calibration`` (benign, optional) sets the
        threshold; otherwise the benign training examples do.
        """
        benign_table = self._table(benign, "benign")
        adversarial_table = self._table(adversarial, "adversarial") if adversarial is not None else None
        calibration_table = self._table(calibration, "calibration") if calibration is not None else None
        return self.fit_features(benign_table, adversarial_table, calibration_table)

    def fit_features(self, benign: FeatureTable, adversarial: FeatureTable | None = None,
                     calibration: FeatureTable | None = None) -> "Detector":
        """Like :meth:`fit`, on features already extracted with this detector's extractor."""
        if adversarial is None:
            if not self.classifier.one_class:
                log.info("no adversarial examples: using the one-class Gaussian instead of %s", self.classifier.name)
                self.classifier = make_classifier("gaussian", seed=self.classifier.seed)
            table, labels = benign, np.zeros(len(benign), dtype=int)
        else:
            table = FeatureTable.concat([benign, adversarial])
            labels = np.r_[np.zeros(len(benign), dtype=int), np.ones(len(adversarial), dtype=int)]
        self.classifier.fit(table, labels)
        reference = calibration if calibration is not None else benign
        self.threshold = threshold_for_fpr(self.classifier.decision_function(reference), self.target_fpr)
        self.metadata.update({
            "n_benign": len(benign), "n_adversarial": 0 if adversarial is None else len(adversarial),
            "calibrated_on": "calibration" if calibration is not None else "benign training set",
            "n_calibration": len(reference),
        })
        return self

    def calibrate(self, benign, target_fpr: float | None = None) -> float:
        """Re-choose the threshold on new benign examples (audio or a :class:`FeatureTable`)."""
        if target_fpr is not None:
            if not 0.0 <= target_fpr < 1.0:
                raise ConfigError(f"target_fpr must be in [0, 1), got {target_fpr}")
            self.target_fpr = float(target_fpr)
        table = self._table(benign, "calibration")
        self.threshold = threshold_for_fpr(self.classifier.decision_function(table), self.target_fpr)
        self.metadata.update({"calibrated_on": "calibration", "n_calibration": len(table)})
        return self.threshold

    # --- inference ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.threshold is None or self.classifier.pipeline is None:
            raise ConfigError("detector is not fitted; call fit() or load a saved detector")

    def score_features(self, features: UncertaintyFeatures | FeatureTable) -> np.ndarray:
        self._check_fitted()
        table = features if isinstance(features, FeatureTable) else FeatureTable.stack([features])
        return self.classifier.decision_function(table)

    def score(self, audio, *, sample_rate: int | None = None) -> float:
        """Anomaly score of one input: higher = more likely adversarial."""
        self._check_fitted()
        return float(self.score_features(self.features(audio, sample_rate=sample_rate))[0])

    def predict(self, audio, *, sample_rate: int | None = None) -> bool:
        """True when the input is judged adversarial (score above the calibrated threshold)."""
        return self.score(audio, sample_rate=sample_rate) > self.threshold

    def explain(self, audio, *, sample_rate: int | None = None, name: str | None = None) -> dict:
        """Verdict with its evidence: transcripts, ``P^char`` histogram, moments, score, threshold."""
        return self.explain_batch([audio], sample_rate=sample_rate, names=None if name is None else [name])[0]

    def explain_batch(self, audios, *, sample_rate: int | None = None, names=None) -> list[dict]:
        """:meth:`explain` of several inputs, one answer each, equal to its own :meth:`explain`.

        Where the recogniser has the ``batched_realizations`` capability the realisations of all
        inputs run in one pass (and it transcribes them in one batch, which such recognisers do
        exactly); otherwise they run one input at a time. What the service batches.

        Example:
            >>> [a["verdict"] for a in det.explain_batch(["a.wav", "b.wav"])]   # doctest: +SKIP
            ['benign', 'adversarial']
        """
        self._check_fitted()
        if isinstance(audios, (str, os.PathLike)) or getattr(audios, "ndim", None) == 1:
            raise ConfigError("explain_batch takes a sequence of inputs; use explain() for one")
        audios = list(audios)
        if names is not None and len(names) != len(audios):
            raise ConfigError(f"{len(names)} names for {len(audios)} inputs")
        labels = list(names) if names is not None else [None] * len(audios)
        waveforms = [self._waveform(a, sample_rate, label) for a, label in zip(audios, labels)]
        if not waveforms:
            return []
        features = self.feature_extractor.batch(self.recognizer, waveforms,
                                                names=[label or "audio" for label in labels])
        scores = self.score_features(FeatureTable.stack(features))
        if missing_capabilities(self.recognizer, "batched_realizations"):
            transcripts = [self.recognizer.transcribe([w])[0] for w in waveforms]
        else:
            transcripts = self.recognizer.transcribe(waveforms)
        return [self._explanation(w, t, f, float(s)) for w, t, f, s in zip(waveforms, transcripts, features, scores)]

    def _explanation(self, waveform: np.ndarray, transcript: str, features: UncertaintyFeatures, score: float) -> dict:
        adversarial = score > self.threshold
        c = self.feature_extractor.config
        return {
            "transcript": transcript,
            "verdict": "adversarial" if adversarial else "benign",
            "adversarial": bool(adversarial),
            "score": score,
            "threshold": float(self.threshold),
            "target_fpr": self.target_fpr,
            "classifier": self.classifier.name,
            "realizations": c.n, "p": c.p, "seed": self.reported_mask_seed,
            "medoid": features.medoid,
            "distinct": [{"transcript": t, "count": int(n)} for t, n in features.distinct()],
            "histogram": [int(v) for v in features.char_hist],
            "moments": [float(v) for v in features.char_moments],
            "entropy": float(features.measures.get("entropy", float("nan"))),
            "duration_s": len(waveform) / self.recognizer.sample_rate,
        }

    # --- persistence ---------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, metadata: Mapping | None = None) -> Path:
        """Write ``detector.json`` + ``detector.safetensors`` into ``directory`` (atomically)."""
        self._check_fitted()
        config, arrays = self.classifier.get_state()
        checksum = getattr(self.recognizer, "checksum", None)
        fingerprint = self.recognizer.fingerprint()
        scheme = self.recognizer.realization_scheme()
        document = {
            "format": FORMAT, "version": FORMAT_VERSION, "kind": self.kind,
            "classifier": config, "features": self.feature_extractor.to_dict(),
            "threshold": float(self.threshold), "target_fpr": self.target_fpr,
            "recognizer": {"class": type(self.recognizer).__name__, "checksum_sha256": checksum,
                           "sample_rate": int(self.recognizer.sample_rate),
                           **({"fingerprint": fingerprint} if fingerprint not in (None, checksum) else {}),
                           **({"realization_scheme": scheme} if scheme is not None else {})},
            "metadata": {**self.metadata, **(metadata or {})},
        }
        return write_document(directory, document, {f"classifier.{k}": v for k, v in arrays.items()})

    @classmethod
    def load(cls, directory: str | os.PathLike, recognizer: Recognizer, *, allow_unverified: bool = False
             ) -> "Detector":
        """Load a saved detector for ``recognizer``, verifying both checksums.

        Raises :class:`ModelFileError` when a file is missing, malformed or modified, or when
        ``recognizer`` is not the recogniser the detector was fitted for (its checksum differs).
        A detector saved for a recogniser without a checksum (never saved to disk) loads only
        with ``allow_unverified=True``.
        """
        directory, document, raw = read_document(directory)
        doc_path = directory / DOCUMENT_NAME
        if document.get("kind", cls.kind) != cls.kind:  # files from before kinds existed are this kind
            raise ModelFileError(f"{doc_path}: a {document.get('kind')!r} detector, not a dropout-uncertainty one; "
                                 "load it with asrguard.detect.registry.load_detector")
        expected = document.get("recognizer", {})
        check_recognizer(doc_path, expected, recognizer, getattr(recognizer, "checksum", None), allow_unverified)
        if "fingerprint" in expected and expected["fingerprint"] != recognizer.fingerprint():
            # same weights, other settings (the model's config, the tokenizer, ...): other outputs, so refused too
            raise ModelFileError(
                f"{doc_path}: this detector was fitted for the same weights under another model config (recogniser "
                f"fingerprint {str(expected['fingerprint'])[:12]}…, the given one is "
                f"{str(recognizer.fingerprint())[:12]}…); restore the model's config.json or refit the detector")
        scheme = recognizer.realization_scheme()
        if scheme is not None and expected.get("realization_scheme") not in (None, scheme):
            # same model and seeds, other arithmetic: scores shift slightly, so say so, but load
            log.warning("%s: calibrated on realisations drawn as %s; this machine draws them as %s, so scores may "
                        "differ slightly from the calibration", doc_path, expected["realization_scheme"], scheme)
        arrays = {k[len("classifier."):]: v for k, v in raw.items() if k.startswith("classifier.")}
        try:
            classifier = UncertaintyClassifier.from_state(document["classifier"], arrays)
            extractor = FeatureExtractor.from_dict(document["features"])
            detector = cls(recognizer, extractor, classifier, target_fpr=float(document["target_fpr"]))
            detector.threshold = float(document["threshold"])
        except (AsrguardError, KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{doc_path}: inconsistent detector file ({exc})") from None
        detector.metadata = dict(document.get("metadata", {}))
        return detector


__all__ = ["ARRAYS_NAME", "DEFAULT_TARGET_FPR", "DOCUMENT_NAME", "Detector", "check_recognizer", "input_waveform",
           "read_document", "write_document",
           "threshold_for_fpr"]
