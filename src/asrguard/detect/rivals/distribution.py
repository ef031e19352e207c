"""Output-distribution statistics (DistriBlock-style; Pizarro, Kolossa & Fischer, UAI 2024).

One forward pass. At every output step (a CTC frame, a decoder token) of the recogniser's
output distribution the detector measures six statistics (:func:`step_statistics`): the median,
maximum and minimum of the log-probabilities, the entropy, and the Kullback-Leibler and
Jensen-Shannon divergences from that step's distribution to the next step's. Each is aggregated
over the utterance by its mean, median, maximum and minimum: 24 features
(:func:`utterance_features`). A classifier turns them into a score:

* ``model="logistic"`` (default): logistic regression on standardised features, fitted on
  benign and adversarial examples; its decision value is the score;
* ``model="gaussian"``, or whenever ``fit`` gets no adversarial examples: a one-class Gaussian
  fitted on benign rows only (:class:`asrguard.detect.gaussian.OneClassGaussian`, with a ridge
  since 24 features from a few dozen examples make a nearly singular covariance); the score is
  the negative log-density.

The recogniser needs the ``posteriors`` capability (per-step log-probabilities); one without it
is refused when the detector is built.

Example:
    >>> det = DistributionDetector(rec).fit(benign, adversarial)        # doctest: +SKIP
    >>> det.explain("x.wav")["features"]["entropy_max"]                 # doctest: +SKIP
    1.73
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression

from ...asr.base import AudioBatch
from ...errors import ConfigError
from ..detector import DEFAULT_TARGET_FPR
from ..gaussian import OneClassGaussian
from .base import RivalDetector, standardisation

log = logging.getLogger(__name__)

STATISTICS = ("median", "max", "min", "entropy", "kl", "js")
AGGREGATES = ("mean", "median", "max", "min")
MODELS = ("logistic", "gaussian")
#: log-probabilities are floored here: a probability that underflows to 0 would make min and KL infinite
LOG_FLOOR = -100.0


def step_statistics(log_probs) -> dict[str, np.ndarray]:
    """The six statistics of each step of ``(T, C)`` log-probabilities (KL and JS: ``T - 1`` values).

    Rows are renormalised first (a recogniser may return slightly unnormalised rows).

    Example:
        >>> s = step_statistics(np.log(np.full((3, 4), 0.25)))
        >>> round(float(s["entropy"][0]), 4), s["kl"].tolist(), s["js"].shape
        (1.3863, [0.0, 0.0], (2,))
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[0] == 0 or lp.shape[1] < 2:
        raise ConfigError(f"expected (steps, classes) log-probabilities with at least one step and two classes, "
                          f"got shape {lp.shape}")
    if not np.all(np.isfinite(lp) | (lp == -np.inf)):
        raise ConfigError("log-probabilities contain NaN or +inf")
    lp = np.maximum(lp - logsumexp(lp, axis=1, keepdims=True), LOG_FLOOR)
    p = np.exp(lp)
    nxt, cur = slice(1, None), slice(None, -1)
    mix = np.log(np.maximum(0.5 * (p[cur] + p[nxt]), np.exp(LOG_FLOOR)))
    kl = np.maximum((p[cur] * (lp[cur] - lp[nxt])).sum(axis=1), 0.0)
    js = 0.5 * (p[cur] * (lp[cur] - mix)).sum(axis=1) + 0.5 * (p[nxt] * (lp[nxt] - mix)).sum(axis=1)
    return {"median": np.median(lp, axis=1), "max": lp.max(axis=1), "min": lp.min(axis=1),
            "entropy": -(p * lp).sum(axis=1), "kl": kl, "js": np.maximum(js, 0.0)}


def utterance_features(log_probs) -> np.ndarray:
    """The 24 features of one utterance: each statistic's mean, median, max and min over steps.

    With a single step there is no next step, so the divergences' aggregates are 0.

    Example:
        >>> utterance_features(np.log(np.full((5, 4), 0.25))).shape
        (24,)
    """
    stats = step_statistics(log_probs)
    out = []
    for name in STATISTICS:
        values = stats[name]
        if values.size == 0:
            out += [0.0] * len(AGGREGATES)
            continue
        out += [values.mean(), np.median(values), values.max(), values.min()]
    return np.asarray(out, dtype=np.float64)


FEATURE_NAMES = [f"{s}_{a}" for s in STATISTICS for a in AGGREGATES]


class DistributionDetector(RivalDetector):
    """Statistics of the output distribution, one forward pass, and a simple classifier."""

    kind = "distribution"
    needs = ("transcribe", "posteriors")

    def __init__(self, recognizer, *, model: str = "logistic", C: float = 1.0, ridge: float = 0.1,
                 target_fpr: float = DEFAULT_TARGET_FPR, seed: int = 0):
        super().__init__(recognizer, target_fpr=target_fpr, seed=seed)
        if model not in MODELS:
            raise ConfigError(f"unknown distribution model {model!r}; choose from {', '.join(MODELS)}")
        if not float(C) > 0:
            raise ConfigError(f"C must be positive, got {C}")
        if not float(ridge) >= 0:
            raise ConfigError(f"ridge must be >= 0, got {ridge}")
        self.model, self.C, self.ridge = model, float(C), float(ridge)
        self.feature_names = list(FEATURE_NAMES)
        self.fitted_model_: str | None = None
        self.mean_ = self.scale_ = self.coef_ = self.intercept_ = None
        self.gaussian_: OneClassGaussian | None = None

    def settings(self) -> dict:
        return {"model": self.model, "C": self.C, "ridge": self.ridge, "seed": self.seed}

    @property
    def rule(self) -> str:
        return f"distribution-{self.fitted_model_ or self.model}"

    def _measure(self, waveform: np.ndarray) -> tuple[np.ndarray, dict]:
        batch = AudioBatch.from_waveforms([waveform], self.recognizer.sample_rate, validate=False)
        with torch.no_grad():
            log_probs, lengths = self.recognizer.log_probs(batch)
            transcript = self.recognizer.decode(log_probs, lengths)[0]
        steps = int(lengths[0])
        if steps < 1:
            raise ConfigError("the recogniser produced no output steps for this input; it is too short")
        rows = log_probs[0, :steps].detach().cpu().numpy()
        entropy = step_statistics(rows)["entropy"]
        evidence = {"transcript": transcript, "steps": steps, "most_uncertain_step": int(np.argmax(entropy)),
                    "largest_entropy": float(entropy.max())}
        return utterance_features(rows), evidence

    def _standardise(self, rows: np.ndarray) -> np.ndarray:
        return (rows - self.mean_) / self.scale_

    def _fit_rows(self, benign: np.ndarray, adversarial: np.ndarray | None) -> None:
        use = self.model if adversarial is not None else "gaussian"
        if use != self.model:
            log.info("no adversarial examples: fitting the one-class Gaussian instead of logistic regression")
        rows = benign if use == "gaussian" else np.vstack([benign, adversarial])
        self.mean_, self.scale_ = standardisation(rows)
        if use == "gaussian":
            if len(benign) < 2:
                raise ConfigError("the one-class Gaussian needs at least 2 benign examples")
            self.gaussian_ = OneClassGaussian(ridge=self.ridge).fit(self._standardise(benign))
            self.coef_ = self.intercept_ = None
        else:
            labels = np.r_[np.zeros(len(benign), dtype=int), np.ones(len(adversarial), dtype=int)]
            fitted = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000).fit(
                self._standardise(rows), labels)
            self.coef_, self.intercept_ = fitted.coef_[0].astype(np.float64), float(fitted.intercept_[0])
            self.gaussian_ = None
        self.fitted_model_ = use

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        if self.fitted_model_ is None:
            raise ConfigError("distribution detector is not fitted; call fit() or load a saved detector")
        z = self._standardise(rows)
        if self.fitted_model_ == "gaussian":
            return self.gaussian_.score(z)
        return z @ self.coef_ + self.intercept_

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {"scale.mean": self.mean_, "scale.scale": self.scale_}
        if self.fitted_model_ == "gaussian":
            arrays.update({"gaussian.mean": self.gaussian_.mean_, "gaussian.covariance": self.gaussian_.covariance_})
        else:
            arrays.update({"logistic.coef": self.coef_, "logistic.intercept": np.array([self.intercept_])})
        return {"fitted_model": self.fitted_model_}, arrays

    def _restore(self, config: Mapping, arrays: Mapping[str, np.ndarray]) -> None:
        fitted = config.get("fitted_model")
        if fitted not in MODELS:
            raise ConfigError(f"unknown fitted model {fitted!r}")
        self.mean_, self.scale_ = np.asarray(arrays["scale.mean"]), np.asarray(arrays["scale.scale"])
        if self.mean_.shape != (len(FEATURE_NAMES),) or self.scale_.shape != self.mean_.shape:
            raise ConfigError(f"expected {len(FEATURE_NAMES)} feature means and scales")
        if fitted == "gaussian":
            self.gaussian_ = OneClassGaussian.from_state({"mean": arrays["gaussian.mean"].tolist(),
                                                          "covariance": arrays["gaussian.covariance"].tolist(),
                                                          "ridge": self.ridge})
        else:
            self.coef_ = np.asarray(arrays["logistic.coef"])
            self.intercept_ = float(arrays["logistic.intercept"][0])
        self.fitted_model_ = fitted


__all__ = ["AGGREGATES", "DistributionDetector", "FEATURE_NAMES", "MODELS", "STATISTICS", "step_statistics",
           "utterance_features"]
