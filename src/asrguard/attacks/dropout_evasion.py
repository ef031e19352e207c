"""The dropout-uncertainty detector's adaptive attacker that asks the detector's verdict.

``eot-dropout`` (:class:`~asrguard.attacks.evasion.EOTDropoutAttack`) stops improving an
example once the target survives most fresh dropout masks, and then shrinks its distortion
bound; it never checks whether the detector would flag the result. :class:`DropoutEvasionAttack`
(``dropout-evasion``) has the same objective,

    min_δ  ℓ(x + δ, t) + β · mean_k ℓ_k(x + δ, t) + γ · D(x + δ)

(``ℓ_k`` the target loss under the step's k-th fresh dropout mask, ``D`` the draws'
disagreement), but an iterate succeeds only when the transcript is the target *and* the
attacker's copy of the fitted detector, drawing its realisations from a seed of the attacker's
own (the deployed seed stays secret), scores it at least ``score_margin`` below the threshold.
The bound shrinks only after such a success, so the distortion of the result is what evading
the detector at its calibrated threshold costs under CW's budget and schedule.

Example (skipped: needs a recogniser and a fitted dropout-uncertainty detector ``det``):
    >>> attack = DropoutEvasionAttack(recognizer, DropoutEvasionConfig(), detector=det)   # doctest: +SKIP
    >>> attack.generate([x], ["stop"])[0].extra["uncertainty_flagged"]                    # doctest: +SKIP
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..asr.base import AudioBatch, require
from ..detect.detector import Detector
from ..errors import ConfigError
from .evasion import AdaptiveConfig, dropout_terms
from .verdict import DetectorVerdictAttack


@dataclass
class DropoutEvasionConfig(AdaptiveConfig):
    """Settings of :class:`DropoutEvasionAttack`; the dropout rate is the detector's.

    Attributes:
        detector: folder of a saved dropout-uncertainty detector (or pass a fitted one to the attack).
        masks_per_step: dropout draws ``K`` per step, from fresh seeds.
        beta: weight of the draws' mean target loss; gamma: of their disagreement ``D`` (0: off).
        score_margin: success needs the attacker's copy of the detector this far below its threshold.
    """

    detector: str = ""
    masks_per_step: int = 4
    beta: float = 1.0
    gamma: float = 1.0
    score_margin: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.masks_per_step, bool) or self.masks_per_step < 1:
            raise ConfigError(f"masks_per_step must be >= 1, got {self.masks_per_step}")
        if not (self.beta >= 0 and self.gamma >= 0):
            raise ConfigError("the weights beta and gamma must be >= 0")
        if self.gamma > 0 and self.masks_per_step < 2:
            raise ConfigError("the disagreement penalty (gamma > 0) needs masks_per_step >= 2")
        if not self.score_margin >= 0:
            raise ConfigError(f"score_margin must be >= 0, got {self.score_margin}")


class DropoutEvasionAttack(DetectorVerdictAttack):
    """CW toward the target under fresh dropout masks, successful only once the detector calls it benign.

    Example (skipped: needs a recogniser and a fitted dropout-uncertainty detector ``det``):
        >>> attack = DropoutEvasionAttack(recognizer, DropoutEvasionConfig(gamma=0.5), detector=det)  # doctest: +SKIP
        >>> attack.detector.feature_extractor.config.seed != det.feature_extractor.config.seed      # doctest: +SKIP
        True
    """

    name = "dropout-evasion"
    config_class = DropoutEvasionConfig
    detector_class, extra_key, check_key = Detector, "uncertainty", "dropout-evasion-check"
    requires = ("transcribe", "loss", "stochastic")

    def __init__(self, recognizer, config: DropoutEvasionConfig | None = None, detector: Detector | None = None):
        super().__init__(recognizer, config, detector)
        if self.config.gamma > 0:
            require(recognizer, "posteriors", user=f"the {self.name} attack's disagreement penalty (gamma > 0)")

    def objective(self, batch: AudioBatch, targets: Sequence[str], step: int) -> torch.Tensor:
        c = self.config
        mean_loss, disagreement = dropout_terms(self, batch, targets, p=self.detector.feature_extractor.config.p,
                                                draws=c.masks_per_step, seed=c.seed, step=step,
                                                disagreement=c.gamma > 0)
        loss = self.target_loss(batch, targets) + c.beta * mean_loss
        return loss if disagreement is None else loss + c.gamma * disagreement


__all__ = ["DropoutEvasionAttack", "DropoutEvasionConfig"]
