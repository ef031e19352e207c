"""Detection metrics and source-grouped splits.

* :func:`split_by_source`: a train/test split over *source utterances*: an adversarial
  example is always on the same side as the benign utterance it was made from (and as every
  other adversarial example made from it), so a test score never benefits from having seen
  the clean version of a test input.
* :func:`detection_metrics`: accuracy at a threshold, AUROC, and TPR at fixed false-positive
  rates (1 % and 5 %) on labelled scores (1 = adversarial, higher score = more adversarial);
  with ``interval=True`` also a bootstrap interval of the AUROC (``auroc_ci``);
* :func:`auroc_interval`: that interval on its own (percentile bootstrap over examples,
  each side resampled separately, seeded).

Example:
    >>> m = detection_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], threshold=0.5)
    >>> m["accuracy"], m["auroc"], m["tpr_at_1pct_fpr"]
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve as _sk_roc_curve

from ..errors import ConfigError

FPR_POINTS = (0.01, 0.05)
#: The AUROC interval every report uses: its confidence level, resamples and seed.
AUROC_CI_LEVEL = 0.95
AUROC_CI_RESAMPLES = 1000
AUROC_CI_SEED = 0
#: Above this many (adversarial, benign) pairs the bootstrap loops over resamples instead of
#: holding the pairwise comparison matrix (8 bytes a pair) in memory.
_MAX_PAIRS_IN_MEMORY = 4_000_000


def split_by_source(source_ids: Sequence[str], test_fraction: float = 0.3, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(train, test)`` masks over rows, drawn over distinct source ids.

    ``round(test_fraction · n_sources)`` sources (at least one, at most all but one when
    there are two or more) go to the test side; the draw depends only on the set of source
    ids and ``seed``, not on row order.

    Example:
        >>> train, test = split_by_source(["a", "a", "b", "b", "c"], 0.34, seed=0)
        >>> bool(np.all(train ^ test))
        True
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ids = np.asarray([str(s) for s in source_ids])
    if ids.size == 0:
        raise ConfigError("no rows to split")
    unique = np.unique(ids)  # sorted: independent of row order
    n_test = int(round(test_fraction * len(unique)))
    if len(unique) >= 2:
        n_test = min(max(n_test, 1), len(unique) - 1)
    rng = np.random.default_rng(seed)
    test_sources = set(unique[rng.permutation(len(unique))[:n_test]].tolist())
    test = np.array([s in test_sources for s in ids], dtype=bool)
    return ~test, test


def _labelled(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(int).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ConfigError(f"{y.size} labels but {s.size} scores")
    if not set(np.unique(y)) <= {0, 1}:
        raise ConfigError("labels must be 0 (benign) or 1 (adversarial)")
    if not np.all(np.isfinite(s)):
        raise ConfigError("scores contain NaN or infinite values")
    return y, s


def tpr_at_fpr(labels, scores, fpr: float) -> float:
    """True-positive rate at the strictest threshold whose false-positive rate is ``<= fpr``.

    The threshold is a benign score: inputs scoring strictly above it are flagged, so ties
    with benign scores never count as detections. With ``n`` benign examples at most
    ``floor(fpr · n)`` of them are flagged.

    Example:
        >>> tpr_at_fpr([0] * 4 + [1] * 2, [1, 2, 3, 4, 3.5, 5], 0.25)
        1.0
    """
    y, s = _labelled(labels, scores)
    neg, pos = np.sort(s[y == 0])[::-1], s[y == 1]
    if neg.size == 0 or pos.size == 0:
        return float("nan")
    allowed = int(math.floor(fpr * neg.size + 1e-9))
    threshold = neg[allowed] if allowed < neg.size else -np.inf
    return float(np.mean(pos > threshold))


def auroc(labels, scores) -> float:
    y, s = _labelled(labels, scores)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


def auroc_interval(labels, scores, *, level: float = AUROC_CI_LEVEL, n_resamples: int = AUROC_CI_RESAMPLES,
                   seed: int = AUROC_CI_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of the AUROC at confidence ``level``.

    Each resample draws the adversarial and the benign examples with replacement *separately*,
    so every resample keeps the n of each side (and both sides, so its AUROC is defined); the
    interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled
    AUROCs. Each resampled AUROC equals scikit-learn's ``roc_auc_score`` on the resampled
    examples (ties count one half). ``(nan, nan)`` when a side is empty. Deterministic for a
    given ``seed``. With a handful of examples a side the interval is wide, which is the point.

    Example:
        >>> labels, scores = [0, 0, 0, 1, 1, 1], [0.1, 0.4, 0.35, 0.8, 0.3, 0.9]
        >>> round(auroc(labels, scores), 3)
        0.778
        >>> low, high = auroc_interval(labels, scores, seed=0)
        >>> 0.0 <= low < 0.778 < high <= 1.0
        True
        >>> auroc_interval(labels, scores, seed=0) == (low, high)  # seeded: the same every time
        True
    """
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    y, s = _labelled(labels, scores)
    adversarial, benign = s[y == 1], s[y == 0]
    if adversarial.size == 0 or benign.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    adversarial_counts = _resample_counts(rng, adversarial.size, n_resamples)
    benign_counts = _resample_counts(rng, benign.size, n_resamples)
    pairs = adversarial.size * benign.size
    if pairs <= _MAX_PAIRS_IN_MEMORY:
        # AUROC = mean over (adversarial, benign) pairs of [adv > ben] + 0.5 [adv == ben]; a
        # resample weights each pair by how often both of its examples were drawn
        wins = (adversarial[:, None] > benign[None, :]) + 0.5 * (adversarial[:, None] == benign[None, :])
        aurocs = ((adversarial_counts @ wins) * benign_counts).sum(axis=1) / pairs
    else:
        both = np.r_[np.ones(adversarial.size), np.zeros(benign.size)]
        aurocs = np.array([roc_auc_score(both, np.r_[np.repeat(adversarial, a), np.repeat(benign, b)])
                           for a, b in zip(adversarial_counts, benign_counts)])
    low, high = np.quantile(aurocs, [(1.0 - level) / 2, (1.0 + level) / 2])
    return float(low), float(high)


def _resample_counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """``(n_resamples, n)``: how often each of ``n`` examples is drawn in each resample of size ``n``."""
    drawn = rng.integers(0, n, size=(n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    return np.bincount(drawn.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` (scikit-learn's ROC curve)."""
    y, s = _labelled(labels, scores)
    return _sk_roc_curve(y, s)


def detection_metrics(labels, scores, *, threshold: float = 0.0, predictions=None,
                      fprs: Sequence[float] = FPR_POINTS, interval: bool = False) -> dict:
    """Accuracy (of ``predictions`` or ``score > threshold``), AUROC and TPR at each FPR in ``fprs``.

    ``interval=True`` adds ``auroc_ci``, the ``[low, high]`` bootstrap interval of the AUROC
    from :func:`auroc_interval` with its defaults (the n of each side is always there).

    Example:
        >>> m = detection_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], interval=True)
        >>> m["auroc"], m["auroc_ci"], m["n_adversarial"], m["n_benign"]
        (1.0, [1.0, 1.0], 2, 2)
    """
    y, s = _labelled(labels, scores)
    predicted = (s > threshold) if predictions is None else np.asarray(predictions).astype(bool).reshape(-1)
    out = {
        "n_benign": int(np.sum(y == 0)), "n_adversarial": int(np.sum(y == 1)),
        "accuracy": float(np.mean(predicted == (y == 1))) if y.size else float("nan"),
        "auroc": auroc(y, s),
    }
    if np.any(y == 0):
        out["false_positive_rate"] = float(np.mean(predicted[y == 0]))
    if np.any(y == 1):
        out["true_positive_rate"] = float(np.mean(predicted[y == 1]))
    for f in fprs:
        out[f"tpr_at_{_pct(f)}_fpr"] = tpr_at_fpr(y, s, f)
    if interval:
        out["auroc_ci"] = list(auroc_interval(y, s))
    return out


def _pct(f: float) -> str:
    value = 100 * f
    return f"{value:g}pct".replace(".", "_")


__all__ = ["AUROC_CI_LEVEL", "AUROC_CI_RESAMPLES", "AUROC_CI_SEED", "FPR_POINTS", "auroc", "auroc_interval",
           "detection_metrics", "roc_curve", "split_by_source", "tpr_at_fpr"]
