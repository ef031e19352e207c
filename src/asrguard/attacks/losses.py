"""Loss terms the attacks combine: the CTC alignment margin of Carlini & Wagner's improved loss.

:func:`ctc_best_paths` finds, by Viterbi over the CTC topology, the frame labelling that decodes
to each target; :func:`alignment_margin` pushes every frame's path label a margin above its
strongest competitor. Used by :class:`asrguard.attacks.cw.CWAttack` on recognisers whose
outputs are the project's CTC characters.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def ctc_best_paths(log_probs: np.ndarray, lengths: Sequence[int], labels: Sequence[Sequence[int]]) -> np.ndarray:
    """Most likely frame labelling (Viterbi over the CTC topology) that decodes to each target.

    ``log_probs`` is ``(B, T, C)`` with the blank at index 0; returns ``(B, T)`` labels (blank
    on padding frames). Greedy decoding of a path equals its target, so once every frame's
    argmax is its path label the attack has succeeded; :func:`alignment_margin` pushes toward
    exactly that (the "improved loss" idea of Carlini & Wagner's audio attack). Batched over
    utterances; the loop runs over frames only.
    """
    n_batch, n_time, _ = log_probs.shape
    n_states = max(2 * len(row) + 1 for row in labels)
    ext = np.zeros((n_batch, n_states), dtype=np.int64)
    valid = np.zeros((n_batch, n_states), dtype=bool)
    for i, row in enumerate(labels):
        ext[i, 1: 2 * len(row): 2] = row
        valid[i, : 2 * len(row) + 1] = True
    skip = np.zeros_like(valid)
    skip[:, 2:] = (ext[:, 2:] != 0) & (ext[:, 2:] != ext[:, :-2])
    lengths = np.asarray(lengths)
    rows = np.arange(n_batch)[:, None]
    emit = np.take_along_axis(log_probs, np.broadcast_to(ext[:, None, :], (n_batch, n_time, n_states)), axis=2)
    emit = np.where(valid[:, None, :], emit, -np.inf)
    alpha = np.full((n_batch, n_states), -np.inf)
    alpha[:, :2] = emit[:, 0, :2]
    back = np.zeros((n_batch, n_time, n_states), dtype=np.int8)
    minus_inf = np.full((n_batch, 1), -np.inf)
    for t in range(1, n_time):
        stay = alpha
        step1 = np.concatenate([minus_inf, alpha[:, :-1]], axis=1)
        step2 = np.where(skip, np.concatenate([minus_inf, minus_inf, alpha[:, :-2]], axis=1), -np.inf)
        candidates = np.stack([stay, step1, step2])
        choice = candidates.argmax(axis=0)
        updated = np.take_along_axis(candidates, choice[None], axis=0)[0] + emit[:, t]
        live = (t < lengths)[:, None]
        alpha = np.where(live, updated, alpha)
        back[:, t] = np.where(live, choice, 0)
    n_ext = valid.sum(axis=1)
    last, second = alpha[rows[:, 0], n_ext - 1], alpha[rows[:, 0], np.maximum(n_ext - 2, 0)]
    state = np.where(last >= second, n_ext - 1, np.maximum(n_ext - 2, 0))
    paths = np.zeros((n_batch, n_time), dtype=np.int64)
    for t in range(n_time - 1, -1, -1):
        live = t < lengths
        paths[:, t] = np.where(live, ext[rows[:, 0], state], 0)
        state = np.where(live, state - back[rows[:, 0], t, state], state)
    return paths


def alignment_margin(log_probs: torch.Tensor, lengths: torch.Tensor, paths: torch.Tensor, margin: float) -> torch.Tensor:
    """``Σ_t max(max_{c≠π_t} log p_t(c) − log p_t(π_t) + margin, 0)`` over each utterance's frames, ``(B,)``."""
    own = log_probs.gather(2, paths[..., None])[..., 0]
    others = log_probs.masked_fill(F.one_hot(paths, log_probs.shape[-1]).bool(), float("-inf")).amax(dim=2)
    frames = (torch.arange(log_probs.shape[1])[None, :] < lengths[:, None]).to(log_probs.dtype)
    return (torch.relu(others - own + margin) * frames).sum(dim=1)


__all__ = ["alignment_margin", "ctc_best_paths"]
