"""An adaptive attack on the output-distribution detector (``distribution``, DistriBlock-style).

That detector reads 24 statistics of one forward pass's output distribution
(:func:`asrguard.detect.rivals.distribution.utterance_features`). :func:`utterance_features_torch`
computes the same 24 numbers in torch, differentiably, and :class:`StatsPenaltyAttack`
(``stats-penalty``) is CW plus a pull of them toward benign values:

    min_δ  ℓ(x + δ, t) + γ · Σ_j ((f_j(x + δ) − r_j) / s_j)²    s.t.  dB(δ) ≤ dB(x) − τ

with ``f`` the 24 statistics, ``r`` a benign reference (e.g. the benign mean features) and ``s``
a scale (e.g. the fitted detector's standardisation scale; ones when not given).
:meth:`StatsPenaltyConfig.from_detector` reads both from a fitted ``distribution`` detector. An
iterate succeeds when the transcript is the target and, when the attack holds a fitted detector,
that detector does not flag it (score at or below its threshold); without one, the target alone
counts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..asr.base import AudioBatch
from ..detect.rivals.distribution import AGGREGATES, FEATURE_NAMES, LOG_FLOOR, STATISTICS, DistributionDetector
from ..errors import ConfigError
from .cw import CWAttack
from .evasion import AdaptiveConfig


def _median(values: torch.Tensor, dim: int) -> torch.Tensor:
    # NumPy's median: the mean of the two middle values when their count is even (torch.median takes the lower)
    ordered = values.sort(dim=dim).values
    n = values.shape[dim]
    return 0.5 * (ordered.select(dim, (n - 1) // 2) + ordered.select(dim, n // 2))


def step_statistics_torch(log_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`~asrguard.detect.rivals.distribution.step_statistics` of ``(T, C)`` log-probabilities, in torch.

    The same renormalisation, floor and clipping, in float64; differentiable.

    Example:
        >>> s = step_statistics_torch(torch.log(torch.full((3, 4), 0.25)))
        >>> round(float(s["entropy"][0]), 4), s["kl"].tolist(), tuple(s["js"].shape)
        (1.3863, [0.0, 0.0], (2,))
    """
    if log_probs.ndim != 2 or log_probs.shape[0] == 0 or log_probs.shape[1] < 2:
        raise ConfigError(f"expected (steps, classes) log-probabilities with at least one step and two classes, "
                          f"got shape {tuple(log_probs.shape)}")
    lp = log_probs.to(torch.float64)
    lp = torch.clamp(lp - torch.logsumexp(lp, dim=1, keepdim=True), min=LOG_FLOOR)
    p = lp.exp()
    mix = torch.log(torch.clamp(0.5 * (p[:-1] + p[1:]), min=float(np.exp(LOG_FLOOR))))
    kl = torch.clamp((p[:-1] * (lp[:-1] - lp[1:])).sum(1), min=0.0)
    js = 0.5 * (p[:-1] * (lp[:-1] - mix)).sum(1) + 0.5 * (p[1:] * (lp[1:] - mix)).sum(1)
    return {"median": _median(lp, 1), "max": lp.amax(1), "min": lp.amin(1), "entropy": -(p * lp).sum(1),
            "kl": kl, "js": torch.clamp(js, min=0.0)}


def utterance_features_torch(log_probs: torch.Tensor) -> torch.Tensor:
    """The 24 features of :func:`~asrguard.detect.rivals.distribution.utterance_features`, in torch: ``(24,)``.

    Example:
        >>> tuple(utterance_features_torch(torch.log(torch.full((5, 4), 0.25))).shape)
        (24,)
    """
    stats = step_statistics_torch(log_probs)
    out = []
    for name in STATISTICS:
        values = stats[name]
        if values.numel() == 0:  # one step: no next step to diverge from
            out.append(values.new_zeros(len(AGGREGATES)))
            continue
        out.append(torch.stack([values.mean(), _median(values, 0), values.amax(), values.amin()]))
    return torch.cat(out)


def _vector(value, what: str) -> tuple[float, ...]:
    # the CLI gives "0.1,0.2,..."; Python callers give a sequence or an array
    items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else list(np.ravel(value))
    try:
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers, got {value!r}") from None
    if values and len(values) != len(FEATURE_NAMES):
        raise ConfigError(f"{what} needs {len(FEATURE_NAMES)} values (one per feature), got {len(values)}")
    if not all(np.isfinite(values)):
        raise ConfigError(f"{what} must be finite")
    return values


@dataclass
class StatsPenaltyConfig(AdaptiveConfig):
    """Settings of :class:`StatsPenaltyAttack`.

    Attributes:
        gamma: weight of the squared distance of the statistics from ``reference``.
        reference: the 24 benign reference values, in :data:`FEATURE_NAMES` order (needed when
            ``gamma > 0`` and no fitted detector supplies them).
        scale: per-feature scale of the distance (empty: ones).
        detector: folder of a saved ``distribution`` detector (optional): it supplies ``reference``
            and ``scale`` when they are empty, and success then also needs its verdict "benign".
    """

    gamma: float = 0.1
    reference: tuple = ()
    scale: tuple = ()
    detector: str = ""

    def __post_init__(self):
        super().__post_init__()
        self.reference, self.scale = _vector(self.reference, "reference"), _vector(self.scale, "scale")
        if self.gamma < 0 or any(s <= 0 for s in self.scale):
            raise ConfigError("need gamma >= 0 and every scale > 0")

    @classmethod
    def from_detector(cls, detector: DistributionDetector, benign=None, **overrides) -> "StatsPenaltyConfig":
        """``reference`` and ``scale`` from a fitted ``distribution`` detector.

        ``reference`` is the mean features of ``benign`` audio when given, else the detector's
        benign mean, which only the one-class Gaussian keeps (its standardisation mean is taken
        over benign rows alone); ``scale`` is the detector's standardisation scale.

        Example (skipped: needs a recogniser and, for ``det``, a fitted detector):
            >>> config = StatsPenaltyConfig.from_detector(det, benign=clean_clips, gamma=0.5)   # doctest: +SKIP
            >>> len(config.reference), len(config.scale)                                         # doctest: +SKIP
            (24, 24)
        """
        if getattr(detector, "kind", None) != DistributionDetector.kind or detector.fitted_model_ is None:
            raise ConfigError("the statistics penalty reads a fitted distribution detector")
        if benign is not None:
            reference = detector.feature_matrix(benign, "benign").mean(axis=0)
        elif detector.fitted_model_ == "gaussian":
            reference = detector.mean_
        else:
            raise ConfigError("a logistic distribution detector keeps no benign mean; pass benign audio "
                              "(StatsPenaltyConfig.from_detector(det, benign=...)) or reference=")
        return cls(**{"reference": tuple(map(float, reference)), "scale": tuple(map(float, detector.scale_)),
                      **overrides})


class StatsPenaltyAttack(CWAttack):
    """CW toward the target with the output statistics pulled toward benign ones.

    ``detector`` (a fitted ``distribution`` detector, or ``config.detector``'s folder) fills an
    empty reference and scale and adds its verdict to the success test.

    Example (skipped: needs a recogniser and, for ``det``, a fitted detector):
        >>> config = StatsPenaltyConfig.from_detector(det, gamma=0.5)                   # doctest: +SKIP
        >>> result = StatsPenaltyAttack(rec, config, detector=det).generate([x], ["stop"])[0]  # doctest: +SKIP
        >>> result.success, result.extra["distribution_flagged"]                         # doctest: +SKIP
        (True, False)
    """

    name = "stats-penalty"
    config_class = StatsPenaltyConfig
    requires = ("transcribe", "loss", "posteriors")

    def __init__(self, recognizer, config: StatsPenaltyConfig | None = None,
                 detector: DistributionDetector | None = None):
        super().__init__(recognizer, config)
        c = self.config
        if detector is None and c.detector:
            detector = DistributionDetector.load(c.detector, recognizer)
        if detector is not None and (getattr(detector, "kind", None) != DistributionDetector.kind
                                     or detector.threshold_ is None):
            raise ConfigError("the stats-penalty attack's detector must be a fitted distribution detector")
        self.detector = detector
        if detector is not None and not c.reference:
            filled = StatsPenaltyConfig.from_detector(detector)
            self.config = dataclasses.replace(c, reference=filled.reference, scale=c.scale or filled.scale)
        if self.config.gamma > 0 and not self.config.reference:
            raise ConfigError("stats-penalty: gamma > 0 needs reference= (24 values) or a fitted distribution "
                              "detector (detector= or StatsPenaltyConfig.from_detector)")

    def statistics_distance(self, batch: AudioBatch) -> torch.Tensor:
        """``Σ_j ((f_j − r_j) / s_j)²`` per utterance ``(B,)``, differentiable."""
        log_probs, lengths = self.recognizer.log_probs(batch)
        features = torch.stack([utterance_features_torch(log_probs[i, : int(n)]) for i, n in enumerate(lengths)])
        reference = torch.tensor(self.config.reference, dtype=torch.float64)
        scale = torch.tensor(self.config.scale or (1.0,) * len(FEATURE_NAMES), dtype=torch.float64)
        return (((features - reference) / scale) ** 2).sum(1)

    def objective(self, batch: AudioBatch, targets, step: int) -> torch.Tensor:
        loss = self.target_loss(batch, targets)
        if self.config.gamma == 0:
            return loss
        return loss + self.config.gamma * self.statistics_distance(batch).to(loss.dtype)

    def is_success(self, batch: AudioBatch, targets, step: int) -> np.ndarray:
        ok = super().is_success(batch, targets, step)
        if self.detector is not None:
            for i in np.flatnonzero(ok):
                ok[i] = not self.detector.predict(batch.waveforms[i, : int(batch.lengths[i])].detach().numpy())
        return ok

    def extra_measures(self, original: np.ndarray, adversarial: np.ndarray, target: str) -> dict:
        extra = {}
        if self.config.reference:
            batch = AudioBatch.from_waveforms([adversarial], self.recognizer.sample_rate, validate=False)
            with torch.no_grad():
                extra["statistics_distance"] = float(self.statistics_distance(batch)[0])
        if self.detector is not None:
            score = self.detector.score(adversarial)
            extra.update(distribution_score=score, distribution_flagged=bool(score > self.detector.threshold_))
        return extra


__all__ = ["StatsPenaltyAttack", "StatsPenaltyConfig", "step_statistics_torch", "utterance_features_torch"]
