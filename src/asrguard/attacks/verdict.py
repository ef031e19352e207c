"""CW attacks whose success also asks a fitted detector, through the attacker's own copy of it.

The copy draws its randomness (dropout masks, noise, transform seeds) from a seed derived from
the attack's own, never the detector's, so a success is what an attacker who does not know the
deployed seed can check. Success needs the copy's score at least ``config.score_margin`` below the
threshold. A detector passed in memory joins the config, and so the attack folder's hash, by its
fingerprint; a saved one by its folder (``config.detector``).

Example (skipped: needs a recogniser and a fitted detector ``det``):
    >>> attack = FloodEvasionAttack(recognizer, detector=det)     # doctest: +SKIP
    >>> attack.detector.seed != det.seed                            # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Sequence

import numpy as np

from ..asr.base import AudioBatch
from ..errors import ConfigError
from ..rng import derive
from .cw import CWAttack


class DetectorVerdictAttack(CWAttack):
    """CW whose success also needs the attacker's copy of a fitted detector to call the iterate benign.

    A subclass names ``detector_class``, the prefix ``extra_key`` of the result's
    ``<key>_score`` and ``<key>_flagged``, and ``check_key``, from which the copy's seed is derived.
    Its config has ``detector`` (a folder or "") and ``score_margin``. The detector class needs
    ``kind``, ``load``, ``threshold``, ``score``, ``copy_with_seed`` and ``fingerprint``.
    """

    detector_class: ClassVar[type]
    extra_key: ClassVar[str] = ""
    check_key: ClassVar[str] = ""

    def __init__(self, recognizer, config=None, detector=None):
        super().__init__(recognizer, config)
        kind = self.detector_class.kind
        if detector is None and self.config.detector:
            detector = self.detector_class.load(self.config.detector, recognizer)
        if getattr(detector, "kind", None) != kind or detector.threshold is None:
            raise ConfigError(f"the {self.name} attack needs a fitted {kind} detector (detector= folder, "
                              "or pass one to the attack)")
        if not self.config.detector:  # a detector passed in memory: its identity joins the config hash
            self.config = replace(self.config, detector=f"in memory, fingerprint {detector.fingerprint()}")
        self.detector = detector.copy_with_seed(derive(self.config.seed, self.check_key))

    def is_success(self, batch: AudioBatch, targets: Sequence[str], step: int) -> np.ndarray:
        ok = super().is_success(batch, targets, step)
        limit = self.detector.threshold - self.config.score_margin
        for i in np.flatnonzero(ok):
            ok[i] = self.detector.score(batch.waveforms[i, : int(batch.lengths[i])].detach().numpy()) <= limit
        return ok

    def extra_measures(self, original: np.ndarray, adversarial: np.ndarray, target: str) -> dict:
        score = self.detector.score(adversarial)
        return {f"{self.extra_key}_score": score, f"{self.extra_key}_flagged": bool(score > self.detector.threshold)}


__all__ = ["DetectorVerdictAttack"]
