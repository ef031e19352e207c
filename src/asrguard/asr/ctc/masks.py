"""Seeded dropout masks for the CTC model's realisations and training.

Masks come from fast seeded bit streams (16-bit draws per 64-bit word, several times faster
than ``torch.rand``) and are cached across calls and lengths (:func:`realization_keep_masks`),
so the detector's I realisations of any utterance are reproducible from their seed.

Two schemes draw the I realisations' masks (:data:`MASK_SCHEMES`):

* ``"iid"``: every unit of every realisation is dropped independently with probability ``p``;
* ``"balanced"``: the realisations come in blocks of B (the smallest B with ``p·B`` whole, e.g.
  10 at p = 0.1), and within a block each unit is dropped in exactly ``p·B`` of them, chosen at
  random. Each realisation alone is still dropout at rate ``p``; across a block the masks are
  stratified, so averages over the block (the detector's features) vary less from seed to seed.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch

from ...errors import ConfigError
from ..base import MASK_SCHEMES

#: Dropout draws are 16-bit integers: a unit is dropped when its draw is below round(p * 2**16).
MASK_RESOLUTION = 1 << 16


def dropout_keep_masks(shapes: Sequence[tuple[int, ...]], p: float, seed: int) -> tuple[list[torch.Tensor], float]:
    """Boolean keep masks (True = kept) of the given shapes for dropout at rate ``p``, and the keep probability.

    Mask ``k`` is read, row-major, from its own PCG64 stream seeded with ``[seed, k]`` (four
    16-bit draws per 64-bit word, several times faster than ``torch.rand``). So masks depend
    only on ``(shapes, p, seed)``, and a mask with more leading rows extends a shorter one:
    :func:`realization_keep_masks` caches them across utterance lengths. The realised rate
    is round(p * 2**16) / 2**16, within 2**-17 of ``p``; the keep probability returned is the
    exact one, so rescaling stays unbiased.

    Example:
        >>> masks, keep = dropout_keep_masks([(2, 3)], 0.5, seed=0)
        >>> masks[0].shape, masks[0].dtype, keep
        (torch.Size([2, 3]), torch.bool, 0.5)
    """
    threshold, keep_probability = _mask_threshold(p, seed)
    masks = []
    for index, shape in enumerate(shapes):
        row_size = int(np.prod(shape[1:]))
        masks.append(torch.from_numpy(_keep_rows(seed, index, row_size, 0, shape[0], threshold)).view(shape))
    return masks, keep_probability


def _mask_threshold(p: float, seed: int) -> tuple[int, float]:
    """The 16-bit draw below which a unit is dropped, and the exact keep probability it gives."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"dropout rate must be in [0, 1), got {p}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    threshold = int(round(p * MASK_RESOLUTION))
    if threshold >= MASK_RESOLUTION:
        raise ConfigError(f"dropout rate {p} is too close to 1 for masks of 16-bit resolution")
    return threshold, 1.0 - threshold / MASK_RESOLUTION


def _keep_rows(seed: int, stream: int, row_size: int, start: int, stop: int, threshold: int) -> np.ndarray:
    """Rows ``[start, stop)`` of stream ``stream``'s mask, as a flat bool array."""
    first, last = start * row_size, stop * row_size
    bits = np.random.PCG64([seed, stream])
    bits.advance(first // 4)  # O(log n): rows past a cached prefix cost only themselves
    draws = bits.random_raw(-(-last // 4) - first // 4).view(np.uint16)
    return draws[first % 4: first % 4 + last - first] >= threshold


#: Largest block a balanced scheme uses (p must be a multiple of 1/B for some B up to this).
MAX_BALANCED_BLOCK = 100


def balanced_block(p: float, n: int) -> tuple[int, int]:
    """``(B, m)`` for balanced masks: the smallest block B dividing ``n`` in which ``m = p·B``
    units' draws are whole; ConfigError if there is none.

    Example:
        >>> balanced_block(0.1, 50), balanced_block(0.2, 50), balanced_block(0.05, 60)
        ((10, 1), (5, 1), (20, 1))
    """
    for block in range(2, min(n, MAX_BALANCED_BLOCK) + 1):
        dropped = round(p * block)
        if n % block == 0 and 0 < dropped < block and abs(dropped - p * block) < 1e-9:
            return block, dropped
    raise ConfigError(f"balanced masks need I divisible by a block B with p·B whole; I = {n}, p = {p} has none "
                      "(use masks='iid')")


def _balanced_rows(seed: int, stream: int, n: int, width: int, start: int, stop: int, block: int,
                   dropped: int) -> np.ndarray:
    """Rows ``[start, stop)`` of a balanced keep mask ``(frames, n, width)``: in each block of ``block``
    realisations, each unit is dropped in the ``dropped`` of them whose 32-bit draws rank lowest."""
    per_row = n * width
    bits = np.random.PCG64([seed, stream, block])  # its own streams: never the iid scheme's draws
    bits.advance(start * per_row // 2)
    first = start * per_row % 2
    draws = bits.random_raw(-(-(first + (stop - start) * per_row) // 2)).view(np.uint32)
    draws = draws[first: first + (stop - start) * per_row].reshape(stop - start, n // block, width, block)
    ranks = draws.argsort(axis=-1, kind="stable").argsort(axis=-1, kind="stable")
    return (ranks >= dropped).transpose(0, 1, 3, 2).reshape(-1)


#: Cached realisation masks are capped at this many bytes in all (about 25 s of audio at I = 50).
MASK_CACHE_BYTES = 64 << 20
_mask_cache: dict[tuple, list[torch.Tensor]] = {}
_mask_cache_lock = threading.Lock()


def realization_keep_masks(n_frames: int, n: int, widths: Sequence[int], p: float,
                           seed: int, dtype: torch.dtype = torch.bool, scheme: str = "iid"
                           ) -> tuple[list[torch.Tensor], float]:
    """``dropout_keep_masks([(n_frames, n, w) for w in widths], p, seed)``, served from a cache;
    with ``scheme="balanced"``, balanced masks of the same shapes (module docstring).

    A detector scores every input with one seed, and masks for a shorter utterance are a
    prefix of those for a longer one, so after the first call masks cost a slice: ~3 ms of a
    ~20 ms realisation pass at I = 50. Results never depend on what is cached. ``dtype``
    other than bool gives the masks as 0/1 in that type, cached as such: multiplying
    activations by a mask of their own type is ~1.8x faster than by a bool one, with the
    same result.

    Example:
        >>> short, _ = realization_keep_masks(10, 4, [8], 0.1, seed=0)
        >>> long, _ = realization_keep_masks(30, 4, [8], 0.1, seed=0)
        >>> torch.equal(short[0], long[0][:10])
        True
        >>> balanced, keep = realization_keep_masks(30, 20, [8], 0.1, seed=0, scheme="balanced")
        >>> keep, (~balanced[0]).view(30, 2, 10, 8).sum(dim=2).unique().tolist()  # one drop per block of 10
        (0.9, [1])
    """
    if scheme not in MASK_SCHEMES:
        raise ConfigError(f"mask scheme must be one of {MASK_SCHEMES}, got {scheme!r}")
    threshold, keep_probability = _mask_threshold(p, seed)
    if scheme == "balanced":
        block, dropped = balanced_block(p, n)
        keep_probability = 1.0 - dropped / block

        def rows(stream: int, width: int, start: int, stop: int) -> np.ndarray:
            return _balanced_rows(seed, stream, n, width, start, stop, block, dropped)
    else:
        def rows(stream: int, width: int, start: int, stop: int) -> np.ndarray:
            return _keep_rows(seed, stream, n * width, start, stop, threshold)
    key = (seed, threshold, n, tuple(widths), dtype, scheme)
    with _mask_cache_lock:
        cached = _mask_cache.pop(key, None)  # re-inserted below: the dict's order is the LRU order
        have = cached[0].shape[0] if cached else 0
        if have < n_frames:
            # doubling keeps growth amortised; past the cap, draw only what this call needs
            cap_frames = MASK_CACHE_BYTES // (n * sum(widths) * _itemsize(dtype))
            grow_to = max(n_frames, min(2 * have, cap_frames))
            new = [torch.from_numpy(rows(k, w, have, grow_to)).view(-1, n, w).to(dtype) for k, w in enumerate(widths)]
            cached = new if not cached else [torch.cat([old, more]) for old, more in zip(cached, new)]
        masks = [m[:n_frames] for m in cached]
        if _nbytes(cached) <= MASK_CACHE_BYTES:
            _mask_cache[key] = cached
            while _nbytes(m for ms in _mask_cache.values() for m in ms) > MASK_CACHE_BYTES:
                del _mask_cache[next(iter(_mask_cache))]
    return masks, keep_probability


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def training_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout at rate ``p`` with :func:`dropout_keep_masks` masks, seeded from torch's generator.

    Same maths as ``F.dropout``, but the mask costs a tenth of ``torch.bernoulli_`` on CPU,
    which made dropout a sixth of a training step. ``torch.manual_seed`` still makes it reproducible.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> y = training_dropout(torch.ones(1000), 0.5)
        >>> sorted(set(y.tolist())), 400 < int((y == 0).sum()) < 600
        ([0.0, 2.0], True)
    """
    if not p:
        return x
    # training only (the model's train mode): train() seeds torch's global RNG every epoch, and the
    # shipped model was trained on these draws; inference dropout takes a seed (stochastic())
    seed = int(torch.randint(0, 2**62, (), dtype=torch.long))
    (kept,), keep_probability = dropout_keep_masks([tuple(x.shape)], p, seed)
    return x * kept.to(x.device) * (1.0 / keep_probability)
