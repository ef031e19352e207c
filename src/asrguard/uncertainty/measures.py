"""Uncertainty measures over stochastic draws of a recogniser's posteriors.

Every measure takes per-draw class posteriors of shape ``(S, T, C)`` (one utterance) or
``(B, S, T, C)`` (a batch), given either as probabilities (``probs=``) or as
log-probabilities (``log_probs=``, more accurate for tiny probabilities), plus optional
frame ``lengths`` ``(B,)`` (or a scalar for one utterance). Per-frame values come from the
``frame_*`` functions; :func:`utterance_scores` reduces them by the maximum over valid
frames, the paper's utterance score. Padding frames never enter a score.

Measures (natural logarithms; ``p_s`` is draw ``s``, ``p̄`` their mean):

* ``entropy``: ``H[p̄]`` - applies to a deterministic model too (``S = 1``);
* ``mutual_information``: ``H[p̄] - mean_s H[p_s]`` (equals the mean KL of each draw to ``p̄``);
* ``variance``: ``sum_c (mean_s p_s,c² - p̄_c²)``, the paper's Eq. 5 summed over classes;
* ``akld``: the paper's Eq. 6, ``1/(S-1) sum_s KL(p_s || p_{s+1})`` over consecutive draws
  (depends on the order in which draws were made);
* ``akld_pairs``: the order-independent form, the mean of ``KL(p_s || p_s')`` over all
  ordered pairs ``s != s'`` (computed in ``O(S·T·C)``).

Example:
    >>> import torch
    >>> p = torch.full((3, 4, 5), 0.2)
    >>> round(float(utterance_scores(probs=p)["entropy"]), 4)  # log(5)
    1.6094
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

MEASURES = ("entropy", "mutual_information", "variance", "akld", "akld_pairs")
#: Measures defined for a single deterministic prediction.
DETERMINISTIC_MEASURES = ("entropy",)


def _inputs(probs, log_probs) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Return ``(probs, log_probs)`` as ``(B, S, T, C)`` float64 and whether a batch dim was added."""
    if (probs is None) == (log_probs is None):
        raise ConfigError("give exactly one of probs= or log_probs=")
    x = torch.as_tensor(probs if probs is not None else log_probs).detach()
    if x.ndim not in (3, 4):
        raise ConfigError(f"posteriors must be (S, T, C) or (B, S, T, C), got {tuple(x.shape)}")
    single = x.ndim == 3
    if single:
        x = x[None]
    x = x.double()
    if probs is not None:
        p = x.clamp_min(0.0)
        lp = torch.log(p.clamp_min(1e-300))
    else:
        lp = x
        p = torch.exp(lp)
    return p, lp, single


def _entropy(p: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    return -(p * torch.where(p > 0, lp, torch.zeros_like(lp))).sum(-1)


def _mean_log_probs(lp: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(lp, dim=1) - torch.log(torch.tensor(float(lp.shape[1]), dtype=lp.dtype))


def _log_floor(lp: torch.Tensor, floor: float) -> torch.Tensor:
    return lp.clamp_min(torch.log(torch.tensor(floor, dtype=lp.dtype)))


# Each measure on (B, S, T, C) probabilities and log-probabilities, returning (B, T).
def _entropy_of_mean(p: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    mean_lp = _mean_log_probs(lp)
    return _entropy(torch.exp(mean_lp), mean_lp)


def _mutual_information(p: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    return (_entropy_of_mean(p, lp) - _entropy(p, lp).mean(dim=1)).clamp_min(0.0)


def _variance(p: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    return (p.square().mean(dim=1) - p.mean(dim=1).square()).sum(-1).clamp_min(0.0)


def _akld(p: torch.Tensor, lp: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
    if p.shape[1] < 2:
        return torch.zeros(p.shape[0], p.shape[2], dtype=p.dtype)
    return _kl(p[:, :-1], lp[:, :-1], _log_floor(lp[:, 1:], floor)).mean(dim=1).clamp_min(0.0)


def _akld_pairs(p: torch.Tensor, lp: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
    s = p.shape[1]
    if s < 2:
        return torch.zeros(p.shape[0], p.shape[2], dtype=p.dtype)
    lq = _log_floor(lp, floor)
    plp = torch.where(p > 0, p * lp, torch.zeros_like(lp))
    all_pairs = s * plp.sum(dim=(1, 3)) - (p.sum(dim=1) * lq.sum(dim=1)).sum(-1)
    # the s = s' terms are KL(p_s || clamp(p_s)), zero up to the floor: take them out exactly
    diagonal = (plp - p * lq).sum(dim=(1, 3))
    return ((all_pairs - diagonal) / (s * (s - 1))).clamp_min(0.0)


def _frame(measure, probs, log_probs, **kwargs) -> torch.Tensor:
    p, lp, single = _inputs(probs, log_probs)
    out = measure(p, lp, **kwargs)
    return out[0] if single else out


def frame_entropy(probs=None, *, log_probs=None) -> torch.Tensor:
    """Entropy of the mean prediction per frame: ``(T,)`` or ``(B, T)``."""
    return _frame(_entropy_of_mean, probs, log_probs)


def frame_mutual_information(probs=None, *, log_probs=None) -> torch.Tensor:
    return _frame(_mutual_information, probs, log_probs)


def frame_variance(probs=None, *, log_probs=None) -> torch.Tensor:
    return _frame(_variance, probs, log_probs)


def _kl(p_a, lp_a, lp_b) -> torch.Tensor:
    return (p_a * torch.where(p_a > 0, lp_a - lp_b, torch.zeros_like(lp_a))).sum(-1)


def frame_akld(probs=None, *, log_probs=None, floor: float = 1e-12) -> torch.Tensor:
    """Paper's Eq. 6: mean KL between consecutive draws (order-dependent). ``(T,)``/``(B, T)``.

    ``floor`` clamps the second argument's probabilities so that a zero there gives a large
    finite value rather than infinity.
    """
    return _frame(_akld, probs, log_probs, floor=floor)


def frame_akld_pairs(probs=None, *, log_probs=None, floor: float = 1e-12) -> torch.Tensor:
    """Order-independent aKLD: mean ``KL(p_s || p_s')`` over all ordered pairs ``s != s'``.

    Uses ``sum_{s,s'} KL(p_s||p_s') = S·sum_s sum_c p_s log p_s - sum_c (sum_s p_s)(sum_s' log p_s')``
    (the diagonal terms are zero), so it costs ``O(S·T·C)`` rather than ``O(S²·T·C)``.
    """
    return _frame(_akld_pairs, probs, log_probs, floor=floor)


_MEASURE_FUNCTIONS = {
    "entropy": _entropy_of_mean,
    "mutual_information": _mutual_information,
    "variance": _variance,
    "akld": _akld,
    "akld_pairs": _akld_pairs,
}


def frame_measures(probs=None, *, log_probs=None, measures=MEASURES) -> dict[str, torch.Tensor]:
    """Per-frame values of several measures, each ``(T,)`` or ``(B, T)``; the inputs are converted once."""
    unknown = set(measures) - set(_MEASURE_FUNCTIONS)
    if unknown:
        raise ConfigError(f"unknown measures {sorted(unknown)}; choose from {', '.join(MEASURES)}")
    p, lp, single = _inputs(probs, log_probs)
    out = {m: _MEASURE_FUNCTIONS[m](p, lp) for m in measures}
    return {m: v[0] for m, v in out.items()} if single else out


def reduce_max(frame_values: torch.Tensor, lengths=None) -> torch.Tensor:
    """Maximum over valid frames: ``(T,)`` -> scalar, ``(B, T)`` -> ``(B,)``."""
    x = torch.as_tensor(frame_values)
    single = x.ndim == 1
    if single:
        x = x[None]
    t = x.shape[1]
    if lengths is None:
        lengths = torch.full((x.shape[0],), t)
    lengths = torch.as_tensor(lengths).reshape(-1).to(torch.long)
    if lengths.shape[0] != x.shape[0]:
        raise ConfigError(f"{lengths.shape[0]} lengths for {x.shape[0]} utterances")
    if torch.any(lengths < 1) or torch.any(lengths > t):
        raise ConfigError(f"lengths must be in 1..{t}, got {lengths.tolist()}")
    valid = torch.arange(t)[None, :] < lengths[:, None]
    out = torch.where(valid, x, torch.full_like(x, -torch.inf)).amax(dim=1)
    return out[0] if single else out


def utterance_scores(probs=None, *, log_probs=None, lengths=None, measures=MEASURES) -> dict[str, torch.Tensor]:
    """Each measure reduced by the max over valid frames: scalars, or ``(B,)`` for a batch."""
    frames = frame_measures(probs, log_probs=log_probs, measures=measures)
    return {m: reduce_max(v, lengths) for m, v in frames.items()}
