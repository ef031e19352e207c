"""Carlini & Wagner targeted attack (eq. 1) and its dropout-robust (eq. 2) and noise-reduction-robust (eq. 3) variants.

    min_δ  ℓ(x + δ, t) [+ β·ℓ_pDR(x + δ, t)] [+ β·ℓ_ss(x + δ, t)]   s.t.  dB(δ) ≤ dB(x) − τ

How the constraint is handled (per utterance):

* The bound is an L∞ ball ``|δ| ≤ b`` with ``b = max|x|·10^(−τ/20)``, i.e. exactly
  ``dB(δ) ≤ dB(x) − τ``. It starts at ``tau_db`` (default 25 dB: a peak-0.5 utterance gets
  ``b ≈ 0.028``, 922 in int16 units; the original CW code starts at 2000 int16 regardless of
  the input level) and is multiplied by ``shrink`` = 0.8 every time the target is reached
  (as in CW's code, from the smaller of the bound and the perturbation's actual peak).
* ``δ`` is optimised directly with Adam (per-utterance step counts) and projected onto
  ``[−b, b]`` after every step; the step size is ``learning_rate·b``, so it scales with the
  bound. The adversarial input is ``clip(x + δ, −1, 1)``.
* The loss toward ``t`` is CTC plus an alignment margin (``margin_weight``): the best CTC path
  to the target is found by Viterbi on the current posteriors and each frame's path label is
  pushed ``margin`` above its strongest competitor. CTC alone left near misses ("call ome"
  for "call home") after 1000 steps on 6 of 100 utterances; with the margin 4 of those 6
  succeeded. It is skipped for recognisers whose outputs are not the project's CTC characters.
* The best (smallest-bound) successful perturbation is kept, not the last iterate.
* Each utterance stops on its own: after ``max_shrinks`` successes, or ``patience`` steps
  after its last success, or at ``max_iter``. Finished utterances leave the batch, so the
  remaining ones run faster. Padding receives no perturbation and no loss.

Success checks run every ``check_every`` steps on the deterministic transcript; DR also
asks a seeded dropout draw at ``p_dr`` to reach the target, NRR asks the transcript after
spectral subtraction to reach it as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..asr.base import AudioBatch
from ..denoise import logmmse, spectral_subtraction
from ..errors import ConfigError
from . import losses
from .base import Attack, AttackConfig, AttackResult, StepReport, Stopwatch, as_batch, peak_bound
from .losses import alignment_margin, ctc_best_paths  # re-exported: they used to live here

#: Keep the internal bound this fraction below the nominal one, so float32 rounding of x + δ
#: can never push the saved perturbation over ``dB(x) − τ``.
BOUND_MARGIN = 1e-4


@dataclass
class CWConfig(AttackConfig):
    """Settings of the CW attack (amplitudes on the float [-1, 1] scale).

    Attributes:
        tau_db: starting constraint ``dB(δ) ≤ dB(x) − tau_db``.
        shrink: factor applied to the bound each time the target is reached (0.8, as CW).
        max_shrinks: stop an utterance after this many successes.
        learning_rate: Adam step as a fraction of the current bound.
        lr_decay: per-step decay of that step since the utterance's start or last success
            (Adam's normalised steps move every sample by about the step size, so a constant
            step keeps δ near ±b; decaying it lets δ settle), floored at ``lr_floor·learning_rate``.
        max_iter: most optimisation steps per utterance.
        check_every: steps between success checks.
        patience: stop an utterance this many steps after its last success.
        margin_weight: weight of the alignment-margin term added to the CTC loss (0: CTC
            only). See :func:`ctc_best_paths`.
        margin: required log-probability margin of the aligned label in each frame.
    """

    tau_db: float = 25.0
    shrink: float = 0.8
    max_shrinks: int = 8
    learning_rate: float = 0.1
    lr_decay: float = 1.0
    lr_floor: float = 0.05
    max_iter: int = 1000
    check_every: int = 5
    patience: int = 40
    margin_weight: float = 1.0
    margin: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.shrink < 1.0:
            raise ConfigError(f"shrink must be in (0, 1), got {self.shrink}")
        if self.margin_weight < 0 or self.margin < 0:
            raise ConfigError("margin_weight and margin must be >= 0")
        if self.max_iter < 1 or self.check_every < 1 or self.patience < 1 or self.max_shrinks < 1:
            raise ConfigError("max_iter, check_every, patience and max_shrinks must be >= 1")
        if self.learning_rate <= 0 or not 0 < self.lr_decay <= 1 or not 0 < self.lr_floor <= 1:
            raise ConfigError("need learning_rate > 0, 0 < lr_decay <= 1 and 0 < lr_floor <= 1")


@dataclass
class DRConfig(CWConfig):
    """Dropout-robust attack: adds ``β·ℓ_pDR`` with dropout at ``p_dr`` on the non-LSTM layers.

    Attributes:
        beta: weight of the dropout loss (paper: 1).
        p_dr: dropout rate used while crafting (paper: 0.05 = the training rate).
        draws: dropout draws averaged per step.
        robust_checks: seeded dropout draws at ``p_dr`` that must also decode to the target
            before an iterate counts as a success (0: deterministic transcript only).
    """

    beta: float = 1.0
    p_dr: float = 0.05
    draws: int = 1
    robust_checks: int = 1

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.p_dr < 1.0:
            raise ConfigError(f"p_dr must be in [0, 1), got {self.p_dr}")
        if self.draws < 1 or self.robust_checks < 0:
            raise ConfigError("draws must be >= 1 and robust_checks >= 0")


@dataclass
class NRRConfig(CWConfig):
    """Noise-reduction-robust attack: adds ``β·ℓ_ss``, the loss after spectral subtraction.

    The spectral subtraction settings are those of :func:`asrguard.denoise.spectral_subtraction`.
    With ``require_denoised`` an iterate only counts as a success when the denoised audio
    reaches the target too.
    """

    beta: float = 1.0
    over_subtraction: float = 1.0
    floor: float = 0.02
    noise_fraction: float = 0.1
    require_denoised: bool = True


class RowAdam:
    """Adam with a step count per row, so utterances can join, pause and leave independently.

    ``direction(rows, n, grad)`` updates the moments of ``rows`` (first ``n`` columns) and
    returns the bias-corrected step direction ``m̂ / (√v̂ + ε)``; the caller scales it.
    """

    def __init__(self, shape, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-12):
        self.m = torch.zeros(shape)
        self.v = torch.zeros(shape)
        self.t = torch.zeros(shape[0])
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def direction(self, rows, n: int, grad: torch.Tensor) -> torch.Tensor:
        t = self.t[rows] + 1
        self.t[rows] = t
        m = self.beta1 * self.m[rows, :n] + (1 - self.beta1) * grad
        v = self.beta2 * self.v[rows, :n] + (1 - self.beta2) * grad.square()
        self.m[rows, :n] = m
        self.v[rows, :n] = v
        m_hat = m / (1 - self.beta1 ** t)[:, None]
        v_hat = v / (1 - self.beta2 ** t)[:, None]
        return m_hat / (v_hat.sqrt() + self.eps)

    def reset(self, rows) -> None:
        self.m[rows] = 0.0
        self.v[rows] = 0.0
        self.t[rows] = 0.0


@dataclass(frozen=True)
class Optimisation:
    """What :meth:`CWAttack.optimise` found, one entry per utterance of the batch.

    Attributes:
        best: the kept (smallest-bound) successful perturbation, unpadded; ``None`` if never reached.
        last: the last iterate's perturbation, unpadded.
        iterations: optimisation steps spent.
        n_success: successes (each one shrank the bound).
        first_success: step of the first success, ``None`` if never reached.
        history: ``(seconds, dB_x(δ))`` of each success.
        bound: the internal L∞ bound at the end.
        best_bound: nominal bound under which ``best`` was found (the starting bound if never).
        peak_x: ``max|x|`` of each input.
    """

    best: list
    last: list
    iterations: list
    n_success: np.ndarray
    first_success: list
    history: list
    bound: torch.Tensor
    best_bound: torch.Tensor
    peak_x: list

    @property
    def kept(self) -> list[np.ndarray]:
        """Per utterance, the best successful perturbation, else the last iterate."""
        return [best if best is not None else last for best, last in zip(self.best, self.last)]

    def bound_db(self, i: int) -> float | None:
        """The kept bound of utterance ``i`` relative to its peak, ``20·log10(best_bound / max|x|)``."""
        value, reference = float(self.best_bound[i]), self.peak_x[i]
        return 20 * math.log10(value / reference) if value > 0 and reference > 0 else None


class _BestSoFar:
    """Per utterance: the smallest-bound success so far, and how often and when the target was reached.

    ``x``, ``delta`` and ``bound`` are the optimisation loop's own tensors: a success shrinks the
    utterance's bound and re-projects its ``delta`` in place, as CW does.
    """

    def __init__(self, attack: "CWAttack", batch: AudioBatch, targets: Sequence[str], x: torch.Tensor,
                 delta: torch.Tensor, bound: torch.Tensor, bounds: torch.Tensor, clock: Stopwatch):
        self.attack, self.batch, self.targets, self.clock = attack, batch, targets, clock
        self.x, self.delta, self.bound = x, delta, bound
        n_batch = len(x)
        self.n_success = np.zeros(n_batch, dtype=int)
        self.last_success = np.full(n_batch, -1)
        self.first_success: list[int | None] = [None] * n_batch
        self.best: list[np.ndarray | None] = [None] * n_batch
        self.best_bound = [float(b) for b in bounds]  # nominal bound under which the kept example was found
        self.history: list[list] = [[] for _ in range(n_batch)]
        self.peak_x = [float(x[i, : int(batch.lengths[i])].abs().max()) for i in range(n_batch)]

    def update(self, rows: list[int], step: int) -> list[int]:
        """Success check on ``rows`` at ``step``; keeps each success and returns the rows that are finished."""
        c, x, lengths = self.attack.config, self.x, self.batch.lengths
        n_max = int(lengths[rows].max())
        adv = torch.clamp(x[rows, :n_max] + self.delta[rows, :n_max], -1.0, 1.0)
        ok = self.attack.is_success(AudioBatch(adv, lengths[rows], self.batch.sample_rate),
                                    [self.targets[i] for i in rows], step)
        done = []
        for j, i in enumerate(rows):
            if ok[j]:
                n = int(lengths[i])
                self._keep(i, (adv[j, :n] - x[i, :n]).numpy().copy(), step)
            n_success, since = self.n_success[i], step - self.last_success[i]
            if n_success >= c.max_shrinks or (n_success > 0 and since >= c.patience):
                done.append(i)
        return done

    def _keep(self, i: int, effective: np.ndarray, step: int) -> None:
        c, bound = self.attack.config, self.bound
        self.best[i] = effective
        self.best_bound[i] = float(bound[i]) / (1.0 - BOUND_MARGIN)
        self.n_success[i] += 1
        self.last_success[i] = step
        if self.first_success[i] is None:
            self.first_success[i] = step
        peak_d = float(np.abs(effective).max())
        db_x = 20 * math.log10(peak_d / self.peak_x[i]) if peak_d > 0 else float("-inf")
        self.history[i].append((round(self.clock(), 4), db_x))
        # as CW: shrink from the smaller of the bound and the perturbation's actual peak
        bound[i] = c.shrink * min(float(bound[i]), peak_d)
        self.delta[i] = torch.clamp(self.delta[i], -bound[i], bound[i])


class CWAttack(Attack):
    """Carlini & Wagner (eq. 1), batched with per-utterance bounds and early stopping.

    Example:
        >>> attack = CWAttack(recognizer, CWConfig(tau_db=25))              # doctest: +SKIP
        >>> [r.success for r in attack.generate([x1, x2], ["stop", "go"])]   # doctest: +SKIP
        [True, True]
    """

    name = "cw"
    config_class = CWConfig

    # --- hooks the variants override -----------------------------------------------------
    def objective(self, batch: AudioBatch, targets: Sequence[str], step: int) -> torch.Tensor:
        """Per-utterance loss ``(B,)`` to minimise."""
        return self.target_loss(batch, targets)

    def target_loss(self, batch: AudioBatch, targets: Sequence[str]) -> torch.Tensor:
        """``ℓ(x + δ, t)``: :func:`asrguard.attacks.losses.target_loss` with this config's alignment margin."""
        return losses.target_loss(self.recognizer, batch, targets, margin_weight=self.config.margin_weight,
                                  margin=self.config.margin)

    def is_success(self, batch: AudioBatch, targets: Sequence[str], step: int) -> np.ndarray:
        """Boolean ``(B,)``: does this iterate count as reaching the target?"""
        self.last_transcripts = self._decode(batch)  # what progress reports show
        return self._matches(self.last_transcripts, targets)

    def extra_measures(self, original: np.ndarray, adversarial: np.ndarray, target: str) -> dict:
        """Attack-specific figures stored with each result."""
        return {}

    # --- helpers ---------------------------------------------------------------------------
    def _decode(self, batch: AudioBatch, p: float | None = None, seed: int = 0) -> list[str]:
        return self._transcribe(batch, p, seed)

    def _check_fit(self, batch: AudioBatch, targets: Sequence[str]) -> None:
        for i, (target, fits) in enumerate(zip(targets, self.recognizer.target_fits(batch, targets))):
            if not fits:
                seconds = int(batch.lengths[i]) / batch.sample_rate
                raise ConfigError(
                    f"{self.name}: target {target!r} does not fit utterance {i} ({seconds:.2f} s) for "
                    f"{type(self.recognizer).__name__}; choose a shorter target (see asrguard.attacks.targets)")

    def _prepare(self, audio_batch, targets):
        """Validated batch and targets, unpadded originals and their clean transcripts."""
        batch = as_batch(audio_batch, self.recognizer.sample_rate)
        targets = self._check_targets(batch, targets)
        self._check_fit(batch, targets)
        originals = batch.unbatch()
        return batch, targets, originals, self._transcribe_each(originals)

    # --- the attack ------------------------------------------------------------------------
    def generate(self, audio_batch, targets: Sequence[str] | None = None) -> list[AttackResult]:
        clock = Stopwatch()
        batch, targets, originals, original_transcripts = self._prepare(audio_batch, targets)
        found = self.optimise(batch, targets, clock=clock)
        adversarial = [x + delta for x, delta in zip(originals, found.kept)]
        extras = []
        for i in range(len(batch)):
            extra = {"first_success_iteration": found.first_success[i], "n_successes": int(found.n_success[i]),
                     "bound_db": found.bound_db(i), "success_history": found.history[i]}
            adv = np.clip(adversarial[i], -1, 1).astype(np.float32)
            extra.update(self.extra_measures(originals[i], adv, targets[i]))
            extras.append(extra)
        return self._finish(originals, adversarial, targets, found.iterations, clock(), original_transcripts, extras)

    def optimise(self, batch: AudioBatch, targets: Sequence[str], *, clock: Stopwatch | None = None,
                 init_delta: torch.Tensor | None = None, bounds: torch.Tensor | None = None) -> Optimisation:
        """The batched CW loop: best and last perturbations (numpy, unpadded) and bookkeeping.

        ``bounds`` overrides the starting L∞ bound per utterance; ``init_delta`` warm-starts δ.
        """
        c = self.config
        clock = clock or Stopwatch()
        x = batch.waveforms.detach().float()
        lengths = batch.lengths
        n_batch, n_samples = x.shape
        mask = batch.mask().float()
        if bounds is None:
            bounds = peak_bound(x, lengths, c.tau_db)
        bound = bounds.clone().float() * (1.0 - BOUND_MARGIN)
        delta = torch.zeros_like(x) if init_delta is None else torch.clamp(init_delta.float(), -bound[:, None],
                                                                            bound[:, None]) * mask
        adam = RowAdam(x.shape)
        iterations = np.zeros(n_batch, dtype=int)
        tracker = _BestSoFar(self, batch, targets, x, delta, bound, bounds, clock)
        active = [i for i in range(n_batch) if float(bound[i]) > 0.0]  # silent inputs cannot be attacked

        step = 0
        while active and step < c.max_iter:
            if step % c.check_every == 0:
                checked = list(active)
                finished = set(tracker.update(active, step))
                if self.on_step is not None:
                    self.on_step(StepReport(step, c.max_iter, len(active) - len(finished), n_batch,
                                            int((tracker.n_success > 0).sum()),
                                            dict(zip(checked, getattr(self, "last_transcripts", [])))))
                active = [i for i in active if i not in finished]
                if not active:
                    break
            rows = active
            n_max = int(lengths[rows].max())
            row_mask = mask[rows, :n_max]
            d = delta[rows, :n_max].clone().requires_grad_(True)
            adv = torch.clamp(x[rows, :n_max] + d, -1.0, 1.0)
            loss = self.objective(AudioBatch(adv, lengths[rows], batch.sample_rate), [targets[i] for i in rows], step)
            (grad,) = torch.autograd.grad(loss.sum(), d)
            grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0) * row_mask
            b = bound[rows][:, None]
            since = torch.tensor([step - max(tracker.last_success[i], 0) for i in rows], dtype=torch.float32)
            rate = c.learning_rate * torch.clamp(c.lr_decay ** since, min=c.lr_floor)[:, None]
            updated = d.detach() - rate * b * adam.direction(rows, n_max, grad)
            delta[rows, :n_max] = torch.maximum(torch.minimum(updated, b), -b) * row_mask
            iterations[rows] += 1
            step += 1
        if active:  # the last steps since the previous check still get their chance
            tracker.update(active, step)
        last = [(torch.clamp(x[i] + delta[i], -1, 1) - x[i])[: int(lengths[i])].numpy().copy()
                for i in range(n_batch)]
        return Optimisation(best=tracker.best, last=last, iterations=iterations.tolist(),
                            n_success=tracker.n_success, first_success=tracker.first_success,
                            history=tracker.history, bound=bound, best_bound=torch.tensor(tracker.best_bound),
                            peak_x=tracker.peak_x)


class DRAttack(CWAttack):
    """Dropout-robust attack (eq. 2): ``ℓ + β·ℓ_pDR`` with dropout on while crafting."""

    name = "dr"
    config_class = DRConfig
    requires = ("transcribe", "loss", "stochastic")

    def _dropout_seed(self, step: int, k: int, salt: int) -> int:
        return (self.config.seed * 1_000_003 + step * 7919 + k * 104_729 + salt) % (2**63 - 1)

    def objective(self, batch, targets, step):
        c = self.config
        seeds = [self._dropout_seed(step, k, 1) for k in range(c.draws)]
        return self.target_loss(batch, targets) + losses.dropout_robust_loss(
            self.recognizer, self.target_loss, batch, targets, p=c.p_dr, seeds=seeds, weight=c.beta)

    def is_success(self, batch, targets, step):
        ok = super().is_success(batch, targets, step)
        for k in range(self.config.robust_checks):
            if not ok.any():
                break
            decoded = self._decode(batch, self.config.p_dr, seed=self._dropout_seed(step, k, 2))
            ok &= self._matches(decoded, targets)
        return ok


class NRRAttack(CWAttack):
    """Noise-reduction-robust attack (eq. 3): ``ℓ + β·ℓ_ss`` through differentiable spectral subtraction."""

    name = "nrr"
    config_class = NRRConfig

    def denoise(self, batch: AudioBatch) -> AudioBatch:
        c = self.config
        cleaned = spectral_subtraction(batch.waveforms, batch.lengths, sample_rate=batch.sample_rate,
                                       over_subtraction=c.over_subtraction, floor=c.floor,
                                       noise_fraction=c.noise_fraction)
        return batch.with_waveforms(torch.clamp(cleaned, -1.0, 1.0))

    def objective(self, batch, targets, step):
        loss = self.target_loss(batch, targets)
        return loss + self.config.beta * losses.denoised_loss(self.target_loss, batch, targets, self.denoise)

    def is_success(self, batch, targets, step):
        ok = super().is_success(batch, targets, step)
        if self.config.require_denoised and ok.any():
            ok &= self._matches(self._decode(self.denoise(batch)), targets)
        return ok

    def extra_measures(self, original, adversarial, target):
        rate = self.recognizer.sample_rate
        wave = torch.from_numpy(adversarial)[None]
        with torch.no_grad():
            ss = self.denoise(AudioBatch(wave, torch.tensor([len(adversarial)]), rate)).waveforms[0].numpy()
        lm = logmmse(adversarial, rate)
        ss_text, lm_text = self._transcribe_each([ss, lm])
        ss_ok, lm_ok = self._matches([ss_text, lm_text], [target, target])
        return {"transcript_spectral_subtraction": ss_text, "success_spectral_subtraction": bool(ss_ok),
                "transcript_logmmse": lm_text, "success_logmmse": bool(lm_ok)}


class USAttack(CWAttack):
    """Urban-sound attack: plain CW on non-speech recordings toward command targets."""

    name = "us"


__all__ = ["CWAttack", "CWConfig", "DRAttack", "DRConfig", "NRRAttack", "NRRConfig", "Optimisation", "USAttack",
           "alignment_margin", "ctc_best_paths"]
