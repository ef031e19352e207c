"""Adaptive attacks on the dropout-uncertainty and transformation-consistency detectors.

Both are CW (:class:`~asrguard.attacks.cw.CWAttack`) with another objective and another
success test, so they keep CW's distortion bound ``dB(δ) ≤ dB(x) − τ`` (shrinking after each
success), its step schedule and its early stopping; docs/detectors.md compares them with the
known-mask and statistics-penalty attacks.

:class:`EOTDropoutAttack` (``eot-dropout``) does not know the detector's dropout seed. It
takes the expectation over dropout masks it draws itself, fresh ones every step
(Expectation over Transformation, Athalye et al. 2018):

    min_δ  ℓ(x + δ, t) + β · (1/K) Σ_k ℓ_{m_k}(x + δ, t) + γ · D(x + δ)

with ``m_k`` the masks of seed ``rng.derive(seed, "eot", step, k)``, ``K = masks_per_step``, and
``D`` the realisations' disagreement on the same draws, averaged over output steps ``f``:

    D = mean_f (1/K) Σ_k KL(p_{k,f} ‖ p̄_f),    p̄_f = (1/K) Σ_k p_{k,f}

(the mutual information between a step's output and the mask, one of the uncertainty measures
the detector reads). An iterate succeeds when the deterministic transcript and at least
``required_fraction`` of ``n_check`` realisations drawn from a further fresh seed say the target.

:class:`BPDATransformAttack` (``bpda-transform``) keeps the transcript through the detector's
transformations ``T`` (:mod:`asrguard.detect.rivals.transforms`, with the detector's settings):

    min_δ  ℓ(x + δ, t) + β · mean_{T} ℓ(T(x + δ), t)

Down- and up-sampling is linear and is backpropagated through its torch twin
(:func:`~asrguard.detect.rivals.transforms.down_up_torch`); mel inversion (Griffin-Lim), LPC
resynthesis and quantisation (whose gradient is zero almost everywhere) use BPDA (Athalye,
Carlini & Wagner 2018): the real transform forward, the identity backward (:func:`bpda`). An
iterate succeeds when ``x + δ`` and every transformed copy say the target.

:class:`~asrguard.attacks.combined_evasion.CombinedEvasionAttack` attacks both at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..asr.base import AudioBatch, require
from ..detect.rivals.distribution import LOG_FLOOR
from ..detect.rivals.transform import MEASURES, REDUCTIONS, TransformDetector
from ..detect.rivals.transforms import TRANSFORMS, down_up_torch
from ..errors import ConfigError
from ..rng import derive
from .base import config_hash
from .cw import CWAttack, CWConfig


@dataclass
class AdaptiveConfig(CWConfig):
    """CW's settings with the shorter schedule of the adaptive attacks (the known-mask attack's)."""

    max_iter: int = 600
    patience: int = 30
    max_shrinks: int = 4


@dataclass
class EOTDropoutConfig(AdaptiveConfig):
    """Settings of :class:`EOTDropoutAttack`.

    Attributes:
        p: the detector's dropout rate (the shipped detector's: 0.1); its seed stays unknown.
        masks_per_step: dropout draws ``K`` per step, from fresh seeds.
        beta: weight of the draws' mean target loss.
        gamma: weight of the draws' disagreement ``D`` (0: off; > 0 needs ``posteriors`` and K ≥ 2).
        n_check: fresh realisations each success check draws (0: the deterministic transcript only).
        required_fraction: share of them that must say the target.
    """

    p: float = 0.1
    masks_per_step: int = 4
    beta: float = 1.0
    gamma: float = 0.0
    n_check: int = 20
    required_fraction: float = 0.9

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.p < 1.0:
            raise ConfigError(f"p must be in (0, 1), got {self.p}")
        if self.masks_per_step < 1 or self.n_check < 0:
            raise ConfigError("need masks_per_step >= 1 and n_check >= 0")
        if self.beta < 0 or self.gamma < 0 or not 0.0 < self.required_fraction <= 1.0:
            raise ConfigError("need beta >= 0, gamma >= 0 and 0 < required_fraction <= 1")
        if self.gamma > 0 and self.masks_per_step < 2:
            raise ConfigError("the disagreement penalty (gamma > 0) needs masks_per_step >= 2")


def realization_disagreement(log_probs: Sequence[torch.Tensor], lengths: Sequence[torch.Tensor]) -> torch.Tensor:
    """``D`` per utterance: mean over steps of ``(1/K) Σ_k KL(p_k ‖ p̄)``, differentiable; ``(B,)``.

    ``log_probs`` holds K passes ``(B, T_k, C)`` and ``lengths`` their ``(B,)`` step counts; steps
    past the shortest pass of a row are left out (a decoder's passes may differ in length), and
    log-probabilities are floored as the distribution detector floors them.

    Example:
        >>> same = [torch.log_softmax(torch.randn(2, 5, 4), -1)] * 3
        >>> realization_disagreement(same, [torch.tensor([5, 3])] * 3).abs().max().item() < 1e-6
        True
    """
    steps = min(lp.shape[1] for lp in log_probs)
    stacked = torch.clamp(torch.stack([lp[:, :steps] for lp in log_probs]), min=LOG_FLOOR)  # (K, B, T, C)
    log_mean = torch.logsumexp(stacked, dim=0) - math.log(len(log_probs))
    kl = (stacked.exp() * (stacked - log_mean)).sum(-1).mean(0)  # (B, T)
    shortest = torch.stack([torch.as_tensor(n) for n in lengths]).amin(0)
    valid = (torch.arange(steps)[None, :] < shortest[:, None]).to(kl.dtype)
    return (kl * valid).sum(1) / valid.sum(1).clamp(min=1.0)


def dropout_terms(attack: CWAttack, batch: AudioBatch, targets: Sequence[str], *, p: float, draws: int, seed: int,
                  step: int, disagreement: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The EOT dropout terms: mean target loss over ``draws`` masks and (optionally) their disagreement ``D``.

    The masks come from ``rng.derive(seed, "eot", step, k)``, fresh every step; ``D`` is
    measured on the same draws (a second pass under the same seed draws the same masks).
    Both are ``(B,)``; ``D`` is None unless asked for.
    """
    drawn, passes = [], []
    for k in range(draws):
        draw_seed = derive(seed, "eot", step, k)
        with attack.recognizer.stochastic(p, seed=draw_seed):
            drawn.append(attack.target_loss(batch, targets))
        if disagreement:
            with attack.recognizer.stochastic(p, seed=draw_seed):
                passes.append(attack.recognizer.log_probs(batch))
    mean_loss = torch.stack(drawn).mean(0)
    if not passes:
        return mean_loss, None
    return mean_loss, realization_disagreement([lp for lp, _ in passes], [n for _, n in passes])


class EOTDropoutAttack(CWAttack):
    """CW toward the target under the expectation over random dropout masks (the detector's seed is secret).

    Example (skipped: needs a recogniser):
        >>> attack = EOTDropoutAttack(recognizer, EOTDropoutConfig(p=0.1, gamma=0.5))   # doctest: +SKIP
        >>> attack.generate([x], ["open the door"])[0].extra["eot_target_fraction"]   # doctest: +SKIP
        0.95
    """

    name = "eot-dropout"
    config_class = EOTDropoutConfig
    requires = ("transcribe", "loss", "stochastic")

    def __init__(self, recognizer, config: EOTDropoutConfig | None = None):
        super().__init__(recognizer, config)
        if self.config.gamma > 0:
            require(recognizer, "posteriors", user=f"the {self.name} attack's disagreement penalty (gamma > 0)")

    def objective(self, batch: AudioBatch, targets: Sequence[str], step: int) -> torch.Tensor:
        c = self.config
        mean_loss, disagreement = dropout_terms(self, batch, targets, p=c.p, draws=c.masks_per_step, seed=c.seed,
                                                step=step, disagreement=c.gamma > 0)
        loss = self.target_loss(batch, targets) + c.beta * mean_loss
        return loss if disagreement is None else loss + c.gamma * disagreement

    def target_fraction(self, waveform: np.ndarray, target: str, seed: int) -> float:
        """Share of ``n_check`` realisations at rate ``p`` from ``seed`` that say ``target``."""
        r = self.recognizer.realizations(waveform, self.config.n_check, seed=seed, p=self.config.p)
        return float(np.mean(self._matches(r.transcripts, [target] * len(r.transcripts))))

    def is_success(self, batch: AudioBatch, targets: Sequence[str], step: int) -> np.ndarray:
        ok = super().is_success(batch, targets, step)
        if self.config.n_check == 0:
            return ok
        seed = derive(self.config.seed, "eot-check", step)  # never one of the training draws' seeds
        for i in np.flatnonzero(ok):
            waveform = batch.waveforms[i, : int(batch.lengths[i])].detach().numpy()
            ok[i] = self.target_fraction(waveform, targets[i], seed) >= self.config.required_fraction
        return ok

    def extra_measures(self, original: np.ndarray, adversarial: np.ndarray, target: str) -> dict:
        if self.config.n_check == 0:
            return {}
        return {"eot_target_fraction": self.target_fraction(adversarial, target, derive(self.config.seed, "eot-final"))}


@dataclass
class BPDATransformConfig(AdaptiveConfig):
    """Settings of :class:`BPDATransformAttack`.

    Attributes:
        transforms: the detector's transformations, comma-separated (``mel,lpc,resample,quantize``).
        beta: weight of the transformed copies' mean target loss.
        n_mels, griffin_lim_iterations, lpc_order, lpc_cutoff_hz, low_rate, bits: the transforms'
            settings, named and defaulted as :class:`~asrguard.detect.rivals.TransformDetector`'s.
        transform_seed: the detector's seed (its Griffin-Lim phase and LPC noise); success checks use it.
        fresh_seeds: for a detector whose seed is secret: draw the randomised transforms' seeds afresh
            every step (an expectation over them) and check success under a seed derived from the
            attack's own ``seed``; ``transform_seed`` is then unused.
        randomize: the detector draws each input's transform settings (``TransformDetector(randomize=True)``);
            the attack's copies then draw theirs the same way, from the seed of the step.
        measure, reduce: the detector's (``TransformDetector``'s settings of those names).
        score_limit: with ``measure="likelihood"``, success also needs the detector's score at most this
            (its calibrated threshold; :meth:`from_detector` sets it).
    """

    transforms: str = "mel,lpc,resample,quantize"
    beta: float = 1.0
    n_mels: int = 80
    griffin_lim_iterations: int = 32
    lpc_order: int = 20
    lpc_cutoff_hz: float = 1000.0
    low_rate: int = 8000
    bits: int = 8
    transform_seed: int = 0
    fresh_seeds: bool = False
    randomize: bool = False
    measure: str = "transcript"
    reduce: str = "max"
    score_limit: float | None = None

    #: settings added after folders were made: left out of the hash at these values, so old folders keep their names
    LATER_DEFAULTS = {"randomize": False, "measure": "transcript", "reduce": "max", "score_limit": None}

    def __post_init__(self):
        super().__post_init__()
        # one comma-separated string (as the CLI gives it) or a sequence of names
        given = self.transforms.split(",") if isinstance(self.transforms, str) else list(self.transforms)
        names = [str(n).strip() for n in given]
        if not names or any(n not in TRANSFORMS for n in names) or len(set(names)) != len(names):
            raise ConfigError(f"transforms must be distinct names from {', '.join(TRANSFORMS)}; "
                              f"got {self.transforms!r}")
        self.transforms = ",".join(names)  # one spelling, so equal settings hash equally
        if self.beta < 0 or self.transform_seed < 0:
            raise ConfigError("need beta >= 0 and transform_seed >= 0")
        if self.measure not in MEASURES or self.reduce not in REDUCTIONS:
            raise ConfigError(f"measure must be one of {', '.join(MEASURES)} and reduce one of {', '.join(REDUCTIONS)}; "
                              f"got {self.measure!r}, {self.reduce!r}")
        if self.measure == "likelihood" and not isinstance(self.score_limit, (int, float)):
            raise ConfigError("measure=likelihood needs score_limit, the detector's threshold (from_detector sets it)")

    @classmethod
    def from_detector(cls, detector: TransformDetector, **overrides) -> "BPDATransformConfig":
        """The transforms and settings of a ``transform`` detector (its seed too, unless it is secret).

        Example (skipped: needs a transform detector ``det``):
            >>> BPDATransformConfig.from_detector(det, beta=2.0).transforms   # doctest: +SKIP
            'mel,lpc,resample,quantize'
        """
        known = {f.name for f in fields(cls)} - {"seed"}  # the detector's seed is not the attack's
        values = {k: v for k, v in detector.settings().items() if k in known}
        values["transforms"] = ",".join(detector.transforms)
        if detector.measure == "likelihood":
            if detector.threshold_ is None:
                raise ConfigError("fit the likelihood transform detector first: its threshold is the attack's goal")
            values["score_limit"] = float(detector.threshold_)
        if not detector.seed_is_secret:
            values["transform_seed"] = detector.seed
        else:
            values["fresh_seeds"] = True
        return cls(**{**values, **overrides})


def bpda(x: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor],
         surrogate: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``transform(x)`` forward; backward through ``surrogate`` (the identity when None).

    ``transform`` may be anything (NumPy, SciPy); it sees ``x`` detached. The result is
    ``T(x) + (s(x) − s(x).detach())``: its value is exactly ``T(x)`` (the bracket is exactly zero,
    where ``s(x) + (T(x) − s(x)).detach()`` would round), its gradient that of ``s``.

    Example:
        >>> x = torch.tensor([0.3, -0.6], requires_grad=True)
        >>> y = bpda(x, lambda v: torch.round(v))
        >>> y.tolist(), torch.autograd.grad(y.sum(), x)[0].tolist()
        ([0.0, -1.0], [1.0, 1.0])
    """
    approx = x if surrogate is None else surrogate(x)
    return transform(x.detach()).to(approx.dtype) + (approx - approx.detach())


def transformed_batch(batch: AudioBatch, transformer: TransformDetector, name: str) -> AudioBatch:
    """``batch`` after ``transformer``'s transformation ``name`` (each utterance on its own samples), BPDA-wrapped.

    ``resample`` is differentiated through its torch twin; the others backward as the identity.
    """
    rate = transformer.recognizer.sample_rate

    def real(w: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(transformer.transform(name, w.numpy()))

    def differentiable(w: torch.Tensor) -> torch.Tensor:
        # the rate this input is resampled at (its own draw when the detector randomises)
        return down_up_torch(w, rate, **transformer.settings_for("resample", w.detach().numpy()))

    width = batch.waveforms.shape[1]
    rows = [bpda(batch.waveforms[i, : int(n)], real, differentiable if name == "resample" else None)
            for i, n in enumerate(batch.lengths)]
    return batch.with_waveforms(torch.stack([F.pad(r, (0, width - len(r))) for r in rows]))


class BPDATransformAttack(CWAttack):
    """CW toward the target on the input and on each of the detector's transformed copies of it.

    Example (skipped: needs a recogniser):
        >>> config = BPDATransformConfig(transforms="mel,resample", beta=1.0)             # doctest: +SKIP
        >>> BPDATransformAttack(recognizer, config).generate([x], ["stop"])[0].success     # doctest: +SKIP
        True
    """

    name = "bpda-transform"
    config_class = BPDATransformConfig

    def __init__(self, recognizer, config: BPDATransformConfig | None = None):
        super().__init__(recognizer, config)
        c = self.config
        self.names = c.transforms.split(",")
        # the detector's own transform code and settings, so the attack transforms exactly as it does
        self.transformer = TransformDetector(recognizer, transforms=self.names, n_mels=c.n_mels,
                                             griffin_lim_iterations=c.griffin_lim_iterations, lpc_order=c.lpc_order,
                                             lpc_cutoff_hz=c.lpc_cutoff_hz, low_rate=c.low_rate, bits=c.bits,
                                             randomize=c.randomize, measure=c.measure, reduce=c.reduce,
                                             seed=c.transform_seed)
        if c.measure == "likelihood":
            self.transformer.threshold_ = float(c.score_limit)  # the attacker's copy of the fitted detector

    @property
    def config_hash(self) -> str:
        data = {k: v for k, v in asdict(self.config).items()
                if k not in BPDATransformConfig.LATER_DEFAULTS or v != BPDATransformConfig.LATER_DEFAULTS[k]}
        return config_hash(data, self.name)

    def transformed(self, batch: AudioBatch, name: str, seed: int | None = None) -> AudioBatch:
        """``batch`` after transformation ``name`` (each utterance on its own samples), BPDA-wrapped.

        ``seed`` replaces :meth:`check_seed` for the randomised transforms.
        """
        self.transformer.set_mask_seed(self.check_seed() if seed is None else seed)
        return transformed_batch(batch, self.transformer, name)

    def check_seed(self) -> int:
        """The randomised transforms' seed in success checks: the detector's, or the attack's own when it is secret."""
        c = self.config
        # never one of the objective's per-step seeds, and never the deployed detector's
        return derive(c.seed, "bpda-check") if c.fresh_seeds else c.transform_seed

    def objective(self, batch: AudioBatch, targets: Sequence[str], step: int) -> torch.Tensor:
        c = self.config
        seed = derive(c.seed, "bpda", step) if c.fresh_seeds else None
        copies = [self.target_loss(self.transformed(batch, name, seed), targets) for name in self.names]
        return self.target_loss(batch, targets) + c.beta * torch.stack(copies).mean(0)

    def is_success(self, batch: AudioBatch, targets: Sequence[str], step: int) -> np.ndarray:
        ok = super().is_success(batch, targets, step)
        copies = []
        for name in self.names:
            if not ok.any():
                break
            copies.append(self.transformed(batch, name))
            ok &= self._matches(self._decode(copies[-1]), targets)
        if self.config.measure == "likelihood":
            # the detector's score from the copies already made under the check seed, not transformed again
            for i in np.flatnonzero(ok):
                n = int(batch.lengths[i])
                gains = self.transformer.likelihood_gains(batch.waveforms[i, :n].detach().numpy(),
                                                          [c.waveforms[i, :n].detach().numpy() for c in copies],
                                                          self.last_transcripts[i])
                ok[i] = float(self.transformer.score_features(gains)[0]) <= self.config.score_limit
        return ok

    def detector_score(self, waveform: np.ndarray) -> float:
        """The score the attacker's copy of the detector gives ``waveform`` (under :meth:`check_seed`)."""
        self.transformer.set_mask_seed(self.check_seed())
        return float(self.transformer.score_features(self.transformer.features(waveform)[None])[0])

    def extra_measures(self, original: np.ndarray, adversarial: np.ndarray, target: str) -> dict:
        batch = AudioBatch.from_waveforms([adversarial], self.recognizer.sample_rate, validate=False)
        with torch.no_grad():
            texts = [self._decode(self.transformed(batch, name))[0] for name in self.names]
        matched = self._matches(texts, [target] * len(texts))
        scored = {"transform_score": self.detector_score(adversarial)} if self.config.measure == "likelihood" else {}
        return {**{f"transcript_{n}": t for n, t in zip(self.names, texts)},
                "success_all_transforms": bool(matched.all()), **scored}


__all__ = ["AdaptiveConfig", "BPDATransformAttack", "BPDATransformConfig", "EOTDropoutAttack", "EOTDropoutConfig",
           "bpda", "dropout_terms", "realization_disagreement", "transformed_batch"]
