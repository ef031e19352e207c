"""Targeted projected gradient descent (PGD) on the waveform, with forced-alignment targets.

The attack of Däubener et al. (2020) against a hybrid recogniser, in two steps:

1. *Forced alignment*: each target transcript (by default a seeded random string of 1-5
   digits) is aligned onto the **original** audio, giving one target state per frame.
2. *PGD*: ``iterations`` signed-gradient steps of size ``step_size`` that lower the frame
   cross-entropy toward those states (``Recognizer.loss``), each followed by projection onto
   the L∞ ball ``|δ| <= eps`` and onto valid audio ``x + δ ∈ [-1, 1]``.

All amplitudes are on the float [-1, 1] scale (int16 equivalent: multiply by 32768, so
``eps = 0.05`` is about 1638 int16 steps). Nothing is left to library defaults: ``eps``,
``step_size`` and ``iterations`` must be given. Padding samples (beyond each utterance's
length) are never perturbed.

For a stochastic recogniser, ``stochastic=True`` computes every step's gradient under one
fresh draw (dropout mask / ensemble member / weight sample) - the paper's single-sample
attacker; the draws are seeded.

Only the :class:`~asrguard.asr.base.Recognizer` interface is used, plus an alignment function
``align(batch, transcripts) -> list of (T_b,) state-id arrays`` that is passed in or, by
default, the recogniser's own ``align`` method.

Example:
    >>> attack = PGD(recognizer, eps=0.05, step_size=0.005, iterations=30)  # doctest: +SKIP
    >>> result = attack.run(batch, random_digit_targets(len(batch), seed=0))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..asr.base import AudioBatch, Recognizer, require
from ..errors import ConfigError
from ..text import DIGIT_WORDS

AlignFn = Callable[[AudioBatch, Sequence[str]], Sequence]


def random_digit_targets(n: int, seed: int, *, min_digits: int = 1, max_digits: int = 5,
                         avoid: Sequence[str] | None = None, start: int = 0) -> list[str]:
    """``n`` seeded target transcripts of ``min_digits``-``max_digits`` random digit words.

    Target ``i`` depends only on ``(seed, start + i)``; with ``avoid`` a target equal to
    ``avoid[i]`` (e.g. the original transcript) is drawn again.

    Example:
        >>> random_digit_targets(2, seed=0) == random_digit_targets(2, seed=0)
        True
    """
    if not 1 <= min_digits <= max_digits:
        raise ConfigError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    out = []
    for i in range(n):
        rng = np.random.default_rng([int(seed), start + i, 5021])
        while True:
            k = int(rng.integers(min_digits, max_digits + 1))
            text = " ".join(DIGIT_WORDS[int(d)] for d in rng.integers(0, 10, size=k))
            if avoid is None or text != " ".join(avoid[i].split()):
                break
        out.append(text)
    return out


@dataclass
class PGDResult:
    """Adversarial batch, its perturbation, the targets and the loss per iteration."""

    adversarial: AudioBatch
    delta: torch.Tensor
    targets: list[str]
    state_targets: list[np.ndarray]
    loss_history: list[list[float]]
    eps: float
    step_size: float
    iterations: int

    def max_abs_delta(self) -> list[float]:
        return [float(self.delta[i, : int(n)].abs().max()) if int(n) else 0.0
                for i, n in enumerate(self.adversarial.lengths)]


class PGD:
    """Targeted L∞ PGD. ``eps``, ``step_size`` and ``iterations`` are required (no defaults)."""

    def __init__(self, recognizer: Recognizer, *, eps: float, step_size: float, iterations: int,
                 align: AlignFn | None = None, random_init: bool = False, stochastic: bool = False,
                 seed: int = 0):
        if not 0.0 <= float(eps) <= 1.0:
            raise ConfigError(f"eps must be in [0, 1] on the float scale, got {eps}")
        if float(step_size) <= 0.0:
            raise ConfigError(f"step_size must be positive, got {step_size}")
        if int(iterations) < 0:
            raise ConfigError(f"iterations must be >= 0, got {iterations}")
        self.recognizer = recognizer
        self.eps, self.step_size, self.iterations = float(eps), float(step_size), int(iterations)
        require(recognizer, "loss", user="PGD")
        if align is None:
            # alignment targets are HMM states: a recogniser without forced alignment (CTC, Whisper) is refused
            require(recognizer, "align", user="PGD toward forced-alignment targets (or pass align=)")
            align = recognizer.align
        self.align = align
        self.random_init, self.stochastic, self.seed = bool(random_init), bool(stochastic), int(seed)

    def state_targets(self, batch: AudioBatch, targets: Sequence[str]) -> list[np.ndarray]:
        """Frame-level state targets: ``targets`` force-aligned onto the original audio."""
        return [np.asarray(t) for t in self.align(batch, list(targets))]

    def run(self, batch: AudioBatch, targets: Sequence[str], *, state_targets: Sequence | None = None,
            progress: Callable[[int], None] | None = None) -> PGDResult:
        """Attack every utterance of ``batch`` toward its transcript in ``targets``."""
        if len(targets) != len(batch):
            raise ConfigError(f"{len(targets)} targets for a batch of {len(batch)}")
        x = batch.waveforms.detach().to(torch.float32)
        mask = batch.mask()
        if state_targets is None:
            state_targets = self.state_targets(batch, targets)
        state_targets = [np.asarray(t) for t in state_targets]
        eps = self.eps
        delta = torch.zeros_like(x)
        if self.random_init and eps > 0:
            g = torch.Generator().manual_seed(self.seed * 7919 + 1)
            delta = (torch.rand(x.shape, generator=g) * 2 - 1) * eps
        delta = self._project(x, delta, mask)
        history: list[list[float]] = []
        for it in range(self.iterations if eps > 0 else 0):
            delta.requires_grad_(True)
            adv = batch.with_waveforms(x + delta)
            draw = (self.recognizer.stochastic(seed=self.seed * 1_000_003 + it) if self.stochastic
                    else contextlib.nullcontext())
            with draw:
                loss = self.recognizer.loss(adv, state_targets)
            (grad,) = torch.autograd.grad(loss.sum(), delta)
            history.append(loss.detach().tolist())
            with torch.no_grad():
                delta = self._project(x, delta.detach() - self.step_size * grad.sign(), mask)
            if progress:
                progress(1)
        adversarial = _exact_ball(x, torch.clamp(x + delta.detach(), -1.0, 1.0), eps, mask)
        return PGDResult(batch.with_waveforms(adversarial), adversarial - x, list(targets), state_targets,
                         history, eps, self.step_size, self.iterations)

    def _project(self, x: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        delta = torch.clamp(delta, -self.eps, self.eps) * mask
        return torch.clamp(x + delta, -1.0, 1.0) - x


def _exact_ball(x: torch.Tensor, adv: torch.Tensor, eps: float, mask: torch.Tensor) -> torch.Tensor:
    """Make ``|adv - x| <= eps`` hold exactly in float32 arithmetic and leave padding untouched."""
    adv = torch.where(mask > 0, adv, x)
    for _ in range(4):
        bad = (adv.double() - x.double()).abs() > eps
        if not bad.any():
            break
        adv = torch.where(bad, torch.nextafter(adv, x), adv)
    return adv
