"""An adaptive attack on the dropout detector by an attacker who knows its seed.

The detector flags an input when its I seeded dropout realisations disagree. Its masks are
reproducible from ``(seed, p, I)``, so an attacker who knows them (the shipped detector's seed
is public) can craft δ such that *those* I realisations all transcribe as the target: the
``P^char`` histogram collapses to zero, as for clean speech.

:class:`KnownMaskAttack` is CW plus that term:

    min_δ  ℓ(x + δ, t) + β · mean_{k ∈ S} ℓ_k(x + δ, t)    s.t.  dB(δ) ≤ dB(x) − τ

where ``ℓ_k`` is the loss of realisation ``k`` with the detector's exact mask (the
``realization_loss`` capability, e.g. :meth:`CTCRecognizer.realization_loss`) and ``S`` a
seeded subset of ``masks_per_step`` of the I realisations (cheaper steps; every realisation
is visited). A recogniser that cannot replay its realisations differentiably (Whisper: its
masks follow the free-running decoder) gets the expectation over ``masks_per_step`` seeded
draws of its own dropout at rate ``p`` instead. An iterate succeeds when the deterministic
transcript and at least ``required_fraction`` of all I exact realisations (drawn by
``realizations``, the detector's own call) say the target.

Whether such examples also fool a detector whose seed is secret is what
:mod:`asrguard.experiments.adaptive` measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..asr.base import AudioBatch, DifferentiableRealizations
from ..errors import ConfigError
from ..rng import derive
from .cw import CWAttack, CWConfig


@dataclass
class KnownMaskConfig(CWConfig):
    """Settings of :class:`KnownMaskAttack`.

    Attributes:
        mask_seed, n_realizations, p: the detector's realisations the attacker knows
            (the shipped detector: seed 0, I = 50, p = 0.1).
        masks_per_step: realisations in each step's loss (a seeded subset of the I).
        beta: weight of the realisations' loss.
        required_fraction: share of the I realisations that must decode to the target.
    """

    mask_seed: int = 0
    n_realizations: int = 50
    p: float = 0.1
    masks_per_step: int = 10
    beta: float = 1.0
    required_fraction: float = 1.0
    max_iter: int = 600
    patience: int = 30
    max_shrinks: int = 4

    def __post_init__(self):
        super().__post_init__()
        if self.n_realizations < 1 or not 1 <= self.masks_per_step <= self.n_realizations:
            raise ConfigError("need n_realizations >= 1 and 1 <= masks_per_step <= n_realizations")
        if not 0.0 < self.p < 1.0:
            raise ConfigError(f"p must be in (0, 1), got {self.p}")
        if not 0.0 < self.required_fraction <= 1.0 or self.beta < 0:
            raise ConfigError("need 0 < required_fraction <= 1 and beta >= 0")


class KnownMaskAttack(CWAttack):
    """CW toward the target on the deterministic model *and* on the detector's own realisations.

    Example:
        >>> attack = KnownMaskAttack(recognizer, KnownMaskConfig(mask_seed=0))   # doctest: +SKIP
        >>> attack.generate([x], ["open the door"])[0].success                   # doctest: +SKIP
        True
    """

    name = "known-mask"
    config_class = KnownMaskConfig
    requires = ("transcribe", "loss", "stochastic")

    def _subset(self, step: int) -> list[int]:
        c = self.config
        # a fresh permutation every pass over the I realisations, so each is visited equally
        per_pass = max(1, c.n_realizations // c.masks_per_step)
        order = np.random.default_rng([c.seed, step // per_pass]).permutation(c.n_realizations)
        start = (step % per_pass) * c.masks_per_step
        return sorted(order[start:start + c.masks_per_step].tolist())

    def objective(self, batch: AudioBatch, targets: Sequence[str], step: int) -> torch.Tensor:
        c = self.config
        loss = self.target_loss(batch, targets)
        subset = self._subset(step)
        if not isinstance(self.recognizer, DifferentiableRealizations):
            draws = [self._drawn_loss(batch, targets, step, k) for k in range(c.masks_per_step)]
            return loss + c.beta * torch.stack(draws).mean(0)
        robust = []
        for i, target in enumerate(targets):  # realisations are per utterance
            n = int(batch.lengths[i])
            robust.append(self.recognizer.realization_loss(batch.waveforms[i, :n], target, c.n_realizations,
                                                           c.mask_seed, p=c.p, indices=subset).mean())
        return loss + c.beta * torch.stack(robust)

    def _drawn_loss(self, batch: AudioBatch, targets: Sequence[str], step: int, k: int) -> torch.Tensor:
        with self.recognizer.stochastic(self.config.p, seed=derive(self.config.seed, "known-mask-draw", step, k)):
            return self.recognizer.loss(batch, targets)

    def is_success(self, batch: AudioBatch, targets: Sequence[str], step: int) -> np.ndarray:
        ok = super().is_success(batch, targets, step)
        c = self.config
        for i in np.flatnonzero(ok):
            n = int(batch.lengths[i])
            r = self.recognizer.realizations(batch.waveforms[i, :n].detach().numpy(), c.n_realizations,
                                             seed=c.mask_seed, p=c.p)
            ok[i] = np.mean(self._matches(r.transcripts, [targets[i]] * len(r.transcripts))) >= c.required_fraction
        return ok

    def extra_measures(self, original: np.ndarray, adversarial: np.ndarray, target: str) -> dict:
        c = self.config
        r = self.recognizer.realizations(adversarial, c.n_realizations, seed=c.mask_seed, p=c.p)
        return {"known_mask_target_fraction": float(np.mean(self._matches(r.transcripts, [target] * len(r.transcripts))))}


__all__ = ["KnownMaskAttack", "KnownMaskConfig"]
