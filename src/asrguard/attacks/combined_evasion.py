"""The adaptive attack on the ``combined`` detector (:mod:`asrguard.detect.combined`).

:class:`CombinedEvasionAttack` (``combined-evasion``) attacks the ``combined`` detector
(:mod:`asrguard.detect.combined`) on all of its evidence at once, with its members' settings:

    min_δ  ℓ(x + δ, t) + β_d · (1/K) Σ_k ℓ_{m_k}(x + δ, t) + γ · D + β · mean_T ℓ(T(x + δ), t)
                       + β_n · mean_j ℓ(x + δ + n_j, t)

the dropout terms as ``eot-dropout`` (its own fresh masks), the transform terms as
``bpda-transform`` and ``n_j`` band-limited noise at each of the noise member's SNRs, drawn
afresh every step (an expectation over the flooding). An iterate succeeds when the transcript
is the target and the detector, with dropout masks and noise from a seed of the attacker's own
(never the detector's), scores it at or below its threshold.

The dropout and transform terms are those of :mod:`.evasion`'s ``eot-dropout`` and ``bpda-transform``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..asr.base import AudioBatch
from ..detect.combined import CombinedDetector
from ..detect.rivals.transform import TransformDetector
from ..errors import ConfigError
from ..rng import derive, generator
from .evasion import AdaptiveConfig, dropout_terms, transformed_batch
from .losses import flooded
from .verdict import DetectorVerdictAttack


@dataclass
class CombinedEvasionConfig(AdaptiveConfig):
    """Settings of :class:`CombinedEvasionAttack`; the dropout rate, transforms and noise are the detector's.

    Attributes:
        detector: folder of a saved ``combined`` detector (or pass a fitted one to the attack).
        masks_per_step: dropout draws ``K`` per step, from fresh seeds.
        beta_dropout: weight of the draws' mean target loss; gamma: of their disagreement ``D``.
        beta: weight of the transformed copies' mean target loss (when the detector has ``transform``).
        beta_noise: weight of the flooded copies' mean target loss (when it has ``noise-flood``).
        score_margin: success needs the attacker's copy of the detector this far below its threshold.
    """

    detector: str = ""
    masks_per_step: int = 4
    beta_dropout: float = 1.0
    gamma: float = 1.0
    beta: float = 1.0
    beta_noise: float = 1.0
    score_margin: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.masks_per_step < 2:
            raise ConfigError("masks_per_step must be >= 2 (the disagreement D needs two draws)")
        if min(self.beta_dropout, self.gamma, self.beta, self.beta_noise) < 0:
            raise ConfigError("the weights beta_dropout, gamma, beta and beta_noise must be >= 0")
        if not self.score_margin >= 0:
            raise ConfigError(f"score_margin must be >= 0, got {self.score_margin}")


class CombinedEvasionAttack(DetectorVerdictAttack):
    """CW toward the target against every kind of evidence a ``combined`` detector reads.

    Example (skipped: needs a recogniser and a fitted combined detector ``det``):
        >>> attack = CombinedEvasionAttack(recognizer, CombinedEvasionConfig(), detector=det)   # doctest: +SKIP
        >>> attack.generate([x], ["stop"])[0].extra["combined_flagged"]                        # doctest: +SKIP
        False
    """

    name = "combined-evasion"
    config_class = CombinedEvasionConfig
    detector_class, extra_key, check_key = CombinedDetector, "combined", "combined-check"
    requires = ("transcribe", "loss", "stochastic", "posteriors")

    def __init__(self, recognizer, config: CombinedEvasionConfig | None = None,
                 detector: CombinedDetector | None = None):
        super().__init__(recognizer, config, detector)  # self.detector: the attacker's own copy
        detector = self.detector
        member = detector.members.get("transform")
        # its own transformer too: the objective reseeds it every step, which must not touch a detector in use
        self.transform = None if member is None else TransformDetector(recognizer, **member.settings())
        self.noise = detector.members.get("noise-flood")

    def _flooded(self, batch: AudioBatch, step: int) -> list[AudioBatch]:
        return [flooded(batch, snr, self.noise.band_hz,
                        [generator(self.config.seed, "flood", step, index, i) for i in range(len(batch.lengths))])
                for index, snr in enumerate(self.noise.snr_db)]

    def objective(self, batch: AudioBatch, targets: Sequence[str], step: int) -> torch.Tensor:
        c = self.config
        mean_loss, disagreement = dropout_terms(self, batch, targets, p=self.detector.p, draws=c.masks_per_step,
                                                seed=c.seed, step=step, disagreement=c.gamma > 0)
        loss = self.target_loss(batch, targets) + c.beta_dropout * mean_loss
        if disagreement is not None:
            loss = loss + c.gamma * disagreement
        if self.transform is not None and c.beta > 0:
            self.transform.set_mask_seed(derive(c.seed, "bpda", step))  # its Griffin-Lim phase and LPC noise
            copies = [self.target_loss(transformed_batch(batch, self.transform, name), targets)
                      for name in self.transform.transforms]
            loss = loss + c.beta * torch.stack(copies).mean(0)
        if self.noise is not None and c.beta_noise > 0:
            noisy = [self.target_loss(b, targets) for b in self._flooded(batch, step)]
            loss = loss + c.beta_noise * torch.stack(noisy).mean(0)
        return loss


__all__ = ["CombinedEvasionAttack", "CombinedEvasionConfig"]
