"""One-class Gaussian detector: fit a normal distribution to benign scores only.

An input is flagged when its uncertainty score is improbable under the Gaussian fitted to
benign examples. :meth:`OneClassGaussian.score` returns the negative log-density (higher =
more anomalous), so it can be handed to ROC analysis directly. Works on one score per
example ``(N,)`` or several ``(N, D)`` (full covariance, with a small ridge).

Example:
    >>> import numpy as np
    >>> det = OneClassGaussian().fit(np.random.default_rng(0).normal(size=200))
    >>> bool(det.score([0.0])[0] < det.score([5.0])[0])
    True
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from ..errors import ConfigError


class OneClassGaussian:
    """Gaussian density on benign scores; learned state ends in ``_``."""

    def __init__(self, ridge: float = 1e-6, one_sided: bool = False):
        #: added to the covariance diagonal (relative to its mean variance) for stability
        self.ridge = float(ridge)
        #: when True, only scores *above* the benign mean count as anomalous (score = z clipped at 0);
        #: the paper's detector is two-sided (any improbable value), the default here.
        self.one_sided = bool(one_sided)

    def fit(self, benign) -> "OneClassGaussian":
        x = _as_2d(benign)
        if x.shape[0] < 2:
            raise ConfigError(f"need at least 2 benign examples to fit a Gaussian, got {x.shape[0]}")
        if not np.all(np.isfinite(x)):
            raise ConfigError("benign scores contain NaN or infinite values")
        self.mean_ = x.mean(axis=0)
        cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
        scale = float(np.mean(np.diag(cov))) or 1.0
        self.covariance_ = cov + np.eye(x.shape[1]) * self.ridge * scale
        self.precision_ = np.linalg.inv(self.covariance_)
        sign, logdet = np.linalg.slogdet(self.covariance_)
        if sign <= 0:
            raise ConfigError("benign score covariance is not positive definite")
        self.log_norm_ = -0.5 * (x.shape[1] * math.log(2 * math.pi) + logdet)
        self.n_features_in_ = x.shape[1]
        return self

    def _check(self, x) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise ConfigError("OneClassGaussian is not fitted; call fit(benign_scores) first")
        x = _as_2d(x)
        if x.shape[1] != self.n_features_in_:
            raise ConfigError(f"expected {self.n_features_in_} features, got {x.shape[1]}")
        return x

    def log_density(self, x) -> np.ndarray:
        x = self._check(x)
        diff = x - self.mean_
        return self.log_norm_ - 0.5 * np.einsum("nd,de,ne->n", diff, self.precision_, diff)

    def score(self, x) -> np.ndarray:
        """Anomaly score per example: negative log-density (two-sided), higher = more suspicious."""
        x = self._check(x)
        if self.one_sided:
            diff = np.maximum(x - self.mean_, 0.0)
            return 0.5 * np.einsum("nd,de,ne->n", diff, self.precision_, diff) - self.log_norm_
        return -self.log_density(x)

    def predict(self, x, threshold: float) -> np.ndarray:
        """1 for adversarial (score above ``threshold``), 0 for benign."""
        return (self.score(x) > threshold).astype(int)

    def threshold_for_fpr(self, benign, fpr: float = 0.05) -> float:
        """Score threshold that flags a fraction ``fpr`` of the given benign examples."""
        return float(np.quantile(self.score(benign), 1.0 - fpr))

    def auroc(self, benign, adversarial) -> float:
        """Area under the ROC curve separating ``adversarial`` (positive) from ``benign``."""
        labels, scores = self._labelled(benign, adversarial)
        return float(roc_auc_score(labels, scores))

    def roc(self, benign, adversarial) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fpr, tpr, thresholds)`` from :func:`sklearn.metrics.roc_curve`."""
        labels, scores = self._labelled(benign, adversarial)
        return roc_curve(labels, scores)

    def _labelled(self, benign, adversarial):
        sb, sa = self.score(benign), self.score(adversarial)
        labels = np.concatenate([np.zeros(len(sb)), np.ones(len(sa))])
        return labels, np.concatenate([sb, sa])

    def get_state(self) -> dict:
        return {"mean": self.mean_.tolist(), "covariance": self.covariance_.tolist(), "ridge": self.ridge,
                "one_sided": self.one_sided}

    @classmethod
    def from_state(cls, state: dict) -> "OneClassGaussian":
        det = cls(ridge=state["ridge"], one_sided=state.get("one_sided", False))
        det.mean_ = np.asarray(state["mean"], dtype=np.float64)
        det.covariance_ = np.asarray(state["covariance"], dtype=np.float64)
        det.precision_ = np.linalg.inv(det.covariance_)
        det.n_features_in_ = det.mean_.shape[0]
        _, logdet = np.linalg.slogdet(det.covariance_)
        det.log_norm_ = -0.5 * (det.n_features_in_ * math.log(2 * math.pi) + logdet)
        return det


def _as_2d(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ConfigError(f"scores must be (N,) or (N, D), got shape {x.shape}")
    return x
