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
    >>> config = PGDConfig(eps=0.05, step_size=0.005, iterations=30)
    >>> attack = PGDAttack(recognizer, config)                                       # doctest: +SKIP
    >>> results = attack.generate(batch, random_digit_targets(len(batch), seed=0))   # doctest: +SKIP
    >>> results[0].extra["max_abs_delta"] <= config.eps                              # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..asr.base import AudioBatch, Recognizer, Stochastic, require
from ..errors import ConfigError
from ..text import DIGIT_WORDS
from .base import Attack, AttackConfig, AttackResult, StepReport, Stopwatch, as_batch

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


@dataclass(kw_only=True)
class PGDConfig(AttackConfig):
    """Settings of :class:`PGDAttack`; ``eps``, ``step_size`` and ``iterations`` have no defaults.

    Attributes:
        defence_p: ``None`` (the default): each result's ``transcript_dropout`` is one seeded draw
            of the recogniser's own randomness (dropout at its own rate, a BNN weight sample, an
            ensemble member: the defences of Däubener et al., which have no rate to set); a rate
            gives dropout at that rate, as for the other attacks.
        eps: L∞ bound ``|δ| <= eps`` on the float scale.
        step_size: size of each signed-gradient step.
        iterations: steps per batch (none when ``eps`` is 0).
        random_init: start from a seeded uniform draw in ``[-eps, eps]`` instead of δ = 0.
        stochastic: compute each step's gradient under one fresh seeded draw of the recogniser's
            randomness (the paper's single-sample attacker).

    Example:
        >>> PGDConfig(eps=0.05, step_size=0.005, iterations=30).random_init
        False
    """

    defence_p: float | None = None
    eps: float
    step_size: float
    iterations: int
    random_init: bool = False
    stochastic: bool = False

    def __post_init__(self):
        if self.defence_p is not None:  # None has no range to check
            super().__post_init__()
        if not 0.0 <= float(self.eps) <= 1.0:
            raise ConfigError(f"eps must be in [0, 1] on the float scale, got {self.eps}")
        if float(self.step_size) <= 0.0:
            raise ConfigError(f"step_size must be positive, got {self.step_size}")
        if int(self.iterations) < 0:
            raise ConfigError(f"iterations must be >= 0, got {self.iterations}")
        self.eps, self.step_size, self.iterations = float(self.eps), float(self.step_size), int(self.iterations)
        self.random_init, self.stochastic = bool(self.random_init), bool(self.stochastic)


class PGDAttack(Attack):
    """Targeted L∞ PGD toward forced-alignment (state) targets.

    Each result's ``extra`` holds ``max_abs_delta`` (``max|δ|``) and ``loss_history`` (the
    utterance's loss before each step). ``align`` replaces the recogniser's forced alignment.

    Example:
        >>> attack = PGDAttack(recognizer, PGDConfig(eps=0.02, step_size=0.002, iterations=30))  # doctest: +SKIP
        >>> attack.generate(batch, ["one two", "nine"])[0].extra["max_abs_delta"]               # doctest: +SKIP
        0.02
    """

    name = "pgd"
    config_class = PGDConfig

    def __init__(self, recognizer: Recognizer, config: PGDConfig, *, align: AlignFn | None = None):
        super().__init__(recognizer, config)
        if align is None:
            # alignment targets are HMM states: a recogniser without forced alignment (CTC, Whisper) is refused
            require(recognizer, "align", user="PGD toward forced-alignment targets (or pass align=)")
            align = recognizer.align
        self.align = align

    def state_targets(self, batch: AudioBatch, targets: Sequence[str]) -> list[np.ndarray]:
        """Frame-level state targets: ``targets`` force-aligned onto the original audio."""
        return [np.asarray(t) for t in self.align(batch, list(targets))]

    # state targets are a keyword of generate, not a setting: they are per-batch data (arrays that
    # belong in no config hash), and without them generate aligns, so generic callers need nothing
    def generate(self, audio_batch, targets: Sequence[str] | None = None, *,
                 state_targets: Sequence | None = None) -> list[AttackResult]:
        """Attack every utterance toward its transcript in ``targets`` (or precomputed ``state_targets``)."""
        clock = Stopwatch()
        batch = as_batch(audio_batch, self.recognizer.sample_rate)
        targets = self._check_targets(batch, targets)
        adversarial, extras = self.perturb(batch, targets, state_targets=state_targets)
        steps = [len(extras[0]["loss_history"]) if extras else 0] * len(batch)
        return self._finish(batch.unbatch(), adversarial, targets, steps, clock(), extras=extras)

    def perturb(self, batch: AudioBatch, targets: Sequence[str], *, state_targets: Sequence | None = None,
                ) -> tuple[list[np.ndarray], list[dict]]:
        """The PGD iterations alone: adversarial waveforms and, per utterance, ``max_abs_delta`` and
        ``loss_history``. :meth:`generate` adds the transcripts and distortion of an
        :class:`AttackResult`, which cost three decodes per utterance; an experiment that only
        needs the audio (the Däubener reproduction) calls this."""
        if state_targets is None:
            state_targets = self.state_targets(batch, targets)
        x = batch.waveforms.detach().to(torch.float32)
        adversarial, history = self._descend(batch, x, [np.asarray(t) for t in state_targets])
        delta = adversarial - x
        lengths = [int(n) for n in batch.lengths]
        extras = [{"max_abs_delta": float(delta[i, :n].abs().max()) if n else 0.0,
                   "loss_history": [row[i] for row in history]} for i, n in enumerate(lengths)]
        return batch.with_waveforms(adversarial).unbatch(), extras

    def _descend(self, batch: AudioBatch, x: torch.Tensor, state_targets: list) -> tuple[torch.Tensor, list]:
        """The PGD loop: adversarial waveforms ``(B, N)`` and the batch's loss before each step."""
        c = self.config
        mask = batch.mask()
        eps = c.eps
        delta = torch.zeros_like(x)
        if c.random_init and eps > 0:
            g = torch.Generator().manual_seed(c.seed * 7919 + 1)
            delta = (torch.rand(x.shape, generator=g) * 2 - 1) * eps
        delta = self._project(x, delta, mask)
        history: list[list[float]] = []
        n_steps = c.iterations if eps > 0 else 0
        for it in range(n_steps):
            delta.requires_grad_(True)
            adv = batch.with_waveforms(x + delta)
            draw = (self.recognizer.stochastic(seed=c.seed * 1_000_003 + it) if c.stochastic
                    else contextlib.nullcontext())
            with draw:
                loss = self.recognizer.loss(adv, state_targets)
            (grad,) = torch.autograd.grad(loss.sum(), delta)
            history.append(loss.detach().tolist())
            with torch.no_grad():
                delta = self._project(x, delta.detach() - c.step_size * grad.sign(), mask)
            if self.on_step is not None:  # PGD checks no success while it runs: nothing reached yet
                self.on_step(StepReport(it + 1, n_steps, len(batch), len(batch), 0, {}))
        return _exact_ball(x, torch.clamp(x + delta.detach(), -1.0, 1.0), eps, mask), history

    def _defence_transcripts(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        if self.config.defence_p is not None:
            return super()._defence_transcripts(waveforms)
        if not isinstance(self.recognizer, Stochastic):
            return [""] * len(waveforms)  # no randomness, no defence draw (as Attack._transcribe)
        rate, seed = self.recognizer.sample_rate, self.config.defence_seed
        out = []
        for w in waveforms:  # one utterance at a time, as every transcript of a result
            with torch.no_grad(), self.recognizer.stochastic(seed=seed):
                out.append(self.recognizer.transcribe(AudioBatch.from_waveforms([w], rate, validate=False))[0])
        return out

    def _project(self, x: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        delta = torch.clamp(delta, -self.config.eps, self.config.eps) * mask
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


__all__ = ["AlignFn", "PGDAttack", "PGDConfig", "random_digit_targets"]
