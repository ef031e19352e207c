"""Adaptive attacks on the noise-flooding and temporal-dependency detectors.

Both are CW (:class:`~asrguard.attacks.cw.CWAttack`) with another objective and success test,
so they keep CW's distortion bound ``dB(δ) ≤ dB(x) − τ``, its step schedule and its early
stopping. Each holds a fitted detector of its kind; an iterate succeeds when the transcript is
the target and the detector, drawing from a seed of the attacker's own (never the detector's),
scores it at least ``score_margin`` below its threshold.

:class:`FloodEvasionAttack` (``eot-noise``) keeps the target under the detector's flooding
(Expectation over Transformation over the noise, whose seed stays secret):

    min_δ  ℓ(x + δ, t) + β · mean_{j,k} ℓ(x + δ + n_{j,k}, t)

with ``n_{j,k}`` band-limited noise at each of the detector's SNRs ``j``, ``draws_per_step``
fresh draws ``k`` per step, in the detector's band.

:class:`PrefixEvasionAttack` (``prefix-consistent``) makes the start of the audio say the start
of the target, which is what the temporal-dependency detector checks:

    min_δ  ℓ(x + δ, t) + β · mean_f ℓ((x + δ)[: f·N], t_f)

with ``t_f`` the first ``round(f · len(t))`` characters of the target (:func:`prefix_target`)
for each of the detector's fractions ``f``, cut exactly where the detector cuts.

Example (skipped: needs a recogniser and a fitted detector ``det``):
    >>> attack = FloodEvasionAttack(recognizer, FloodEvasionConfig(), detector=det)   # doctest: +SKIP
    >>> attack.generate([x], ["stop"])[0].extra["noise_flood_flagged"]                # doctest: +SKIP
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..asr.base import AudioBatch
from ..detect.rivals import NoiseFloodDetector, TemporalDetector
from ..detect.rivals.temporal import cut_samples
from ..errors import ConfigError
from ..rng import generator
from .evasion import AdaptiveConfig
from .losses import flooded
from .verdict import DetectorVerdictAttack


@dataclass
class RivalEvasionConfig(AdaptiveConfig):
    """Settings shared by the attacks of this module.

    Attributes:
        detector: folder of a saved detector of the attacked kind (or pass a fitted one to the attack).
        beta: weight of the extra target losses.
        score_margin: success needs the attacker's copy of the detector this far below its threshold.
    """

    detector: str = ""
    beta: float = 1.0
    score_margin: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not self.beta >= 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")
        if not self.score_margin >= 0:
            raise ConfigError(f"score_margin must be >= 0, got {self.score_margin}")


@dataclass
class FloodEvasionConfig(RivalEvasionConfig):
    """Settings of :class:`FloodEvasionAttack`; the SNRs and band are the detector's.

    Attributes:
        draws_per_step: fresh noise draws per SNR per step.
    """

    draws_per_step: int = 2

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.draws_per_step, bool) or self.draws_per_step < 1:
            raise ConfigError(f"draws_per_step must be >= 1, got {self.draws_per_step}")


class FloodEvasionAttack(DetectorVerdictAttack):
    """CW toward the target on the input and on fresh noise-flooded copies of it (``noise-flood``).

    Example (skipped: needs a recogniser and a fitted ``noise-flood`` detector ``det``):
        >>> attack = FloodEvasionAttack(recognizer, FloodEvasionConfig(draws_per_step=1), detector=det)  # doctest: +SKIP
        >>> attack.generate([x], ["stop"])[0].extra["noise_flood_score"] <= det.threshold                # doctest: +SKIP
        True
    """

    name = "eot-noise"
    config_class = FloodEvasionConfig
    detector_class, extra_key, check_key = NoiseFloodDetector, "noise_flood", "eot-noise-check"

    def flooded_copies(self, batch: AudioBatch, step: int) -> list[AudioBatch]:
        """The step's noisy copies of ``batch``: ``draws_per_step`` per SNR, from the attacker's seeds."""
        d = self.detector
        return [flooded(batch, snr, d.band_hz, [generator(self.config.seed, "eot-noise", step, level, k, i)
                                                 for i in range(len(batch.lengths))])
                for level, snr in enumerate(d.snr_db) for k in range(self.config.draws_per_step)]

    def objective(self, batch: AudioBatch, targets: Sequence[str], step: int) -> torch.Tensor:
        loss = self.target_loss(batch, targets)
        if self.config.beta == 0:
            return loss
        copies = [self.target_loss(b, targets) for b in self.flooded_copies(batch, step)]
        return loss + self.config.beta * torch.stack(copies).mean(0)


def prefix_target(target: str, fraction: float) -> str:
    """The start of ``target`` that the first ``fraction`` of the audio should say: its first
    ``round(fraction · len(target))`` characters (at least one), without trailing spaces.

    Example:
        >>> prefix_target("open the door", 0.5), prefix_target("go", 0.2)
        ('open t', 'g')
    """
    return target[: max(1, int(round(fraction * len(target))))].rstrip()


class PrefixEvasionAttack(DetectorVerdictAttack):
    """CW toward the target on the whole input and toward the target's start on its first part (``temporal``).

    Example (skipped: needs a recogniser and a fitted ``temporal`` detector ``det``):
        >>> attack = PrefixEvasionAttack(recognizer, RivalEvasionConfig(), detector=det)   # doctest: +SKIP
        >>> attack.generate([x], ["open the door"])[0].extra["temporal_flagged"]            # doctest: +SKIP
        False
    """

    name = "prefix-consistent"
    config_class = RivalEvasionConfig
    detector_class, extra_key, check_key = TemporalDetector, "temporal", "prefix-consistent-check"

    def prefixes(self, batch: AudioBatch, targets: Sequence[str], fraction: float) -> tuple[AudioBatch, list[str]]:
        """The first ``fraction`` of each utterance (cut where the detector cuts) and the target starts."""
        cuts = [cut_samples(int(n), fraction) for n in batch.lengths]
        width = max(cuts)
        rows = [F.pad(batch.waveforms[i, :cut], (0, width - cut)) for i, cut in enumerate(cuts)]
        part = AudioBatch(torch.stack(rows), torch.tensor(cuts, dtype=batch.lengths.dtype), batch.sample_rate)
        return part, [prefix_target(t, fraction) for t in targets]

    def objective(self, batch: AudioBatch, targets: Sequence[str], step: int) -> torch.Tensor:
        loss = self.target_loss(batch, targets)
        if self.config.beta == 0:
            return loss
        parts = [self.target_loss(*self.prefixes(batch, targets, f)) for f in self.detector.fractions]
        return loss + self.config.beta * torch.stack(parts).mean(0)


__all__ = ["FloodEvasionAttack", "FloodEvasionConfig", "PrefixEvasionAttack", "RivalEvasionConfig", "prefix_target"]
