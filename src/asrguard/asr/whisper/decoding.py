"""Batch bookkeeping for Whisper's greedy decoding: a cross-attention cache shared by rows that
decode one encoder output, dropping finished rows from a cache, and padding token rows.

SUPPRESSED is the logit given to tokens Whisper never emits; it also pads posterior steps.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

#: Suppressed logits are set to this rather than -inf, so posterior measures never see 0·log 0.
SUPPRESSED = -1e9


def shared_cross_cache(decoder, encoded: torch.Tensor, size: int):
    """A decoder cache whose cross-attention keys/values come from one encoder output, viewed ``size`` times."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache  # heavy: imported with the model

    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    for index, layer in enumerate(decoder.layers):
        attention = layer.encoder_attn
        shape = (1, -1, attention.num_heads, attention.head_dim)
        keys = attention.k_proj(encoded).view(shape).transpose(1, 2)
        values = attention.v_proj(encoded).view(shape).transpose(1, 2)
        cache.cross_attention_cache.update(keys, values, index)
        stored = cache.cross_attention_cache.layers[index]
        stored.keys, stored.values = stored.keys.expand(size, -1, -1, -1), stored.values.expand(size, -1, -1, -1)
        cache.is_updated[index] = True
    return cache


def select_rows(cache, keep: torch.Tensor, shared: bool) -> None:
    """Keep only ``keep`` rows of a decoder cache (shared cross-attention stays one view)."""
    if not shared:
        cache.batch_select_indices(keep)
        return
    cache.self_attention_cache.batch_select_indices(keep)
    for stored in cache.cross_attention_cache.layers:
        stored.keys = stored.keys[:1].expand(len(keep), -1, -1, -1)
        stored.values = stored.values[:1].expand(len(keep), -1, -1, -1)


def padded(rows: Sequence[Sequence[int]], fill: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [fill] * (width - len(r)) for r in rows], dtype=torch.long)


def pad_steps(steps: Sequence[torch.Tensor]) -> torch.Tensor:
    width = max(s.shape[0] for s in steps)
    return torch.stack([F.pad(s, (0, 0, 0, width - s.shape[0]), value=SUPPRESSED) for s in steps])


def medoid_index(texts: Sequence[str]) -> int:
    """Index of the text with the smallest summed edit distance to all others (the first on ties).

    Example:
        >>> medoid_index(["open the door", "open the doors", "open a door", "close it"])
        0
    """
    distances = cdist(list(texts), list(texts), scorer=Levenshtein.distance)
    return int(distances.sum(axis=1).argmin())


def top_classes(log_probs: torch.Tensor, k: int) -> torch.Tensor:
    """``(n, L, V)`` log-probabilities reduced to ``(n, L, k + 1)``: at each step the ``k`` tokens most
    probable on average over the ``n`` rows (the same tokens for every row), then the rest's mass.

    Example:
        >>> lp = torch.log_softmax(torch.randn(3, 2, 10), -1)
        >>> reduced = top_classes(lp, 4)
        >>> reduced.shape, torch.allclose(reduced.exp().sum(-1), torch.ones(3, 2), atol=1e-5)
        (torch.Size([3, 2, 5]), True)
    """
    k = min(int(k), log_probs.shape[-1] - 1)
    ids = log_probs.exp().mean(0).topk(k, dim=-1).indices
    kept = log_probs.gather(-1, ids.expand(log_probs.shape[0], -1, -1))
    rest_mass = (1.0 - kept.logsumexp(-1).exp()).clamp_min(1e-12)
    return torch.cat([kept, rest_mass.log()[..., None]], dim=-1)
