"""A DeepSpeech-like CTC recogniser, readable top to bottom.

waveform ─► log-mel (64 bands, 0–8 kHz) ─► per-utterance mean removal ─► context stack + stride 2
         ─► 3 × [dense, clipped ReLU, dropout] ─► BiLSTM (forward + length-reversed) ─► dense, clipped ReLU, dropout
         ─► dense ─► log-softmax over blank, space, a–z, apostrophe

Full band (0–8 kHz): FSDD is recorded at 8 kHz while Speech Commands is 16 kHz. Training
band-limits random utterances to 3.4–4 kHz so that both bandwidths are familiar; a first
model restricted to 0–3.8 kHz lost the /s/ of "stop" on most held-out speakers.

Dropout follows every non-LSTM layer. It is active during training at ``dropout`` (p_tr)
and, at inference, only inside :meth:`CTCRecognizer.stochastic` at any rate p, with masks
drawn from a seeded generator so that realisations are reproducible.

:meth:`CTCRecognizer.realizations` has its own gradient-free pass for the detector: the
first dense layer runs once, the 1/(1-p) rescaling is folded into the weights that follow
each dropout, masks come from fast seeded bit streams, cached across calls and lengths
(:func:`realization_keep_masks`), and on CPUs with native bfloat16 the mask-dependent layers
run in bfloat16 (about 1.9x faster here; the rounding is far below the dropout noise being
measured). ``precision="float32"`` opts out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .. import frontend
from ..audio import validate_waveform
from ..errors import ConfigError, ModelFileError
from ..fileio import atomic_write, atomic_write_text, sha256_file
from ..text import CHARACTERS, encode
from .base import AudioBatch, Realizations, Recognizer

FORMAT_VERSION = 1
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "ctc_default"


@dataclass
class CTCConfig:
    sample_rate: int = 16_000
    n_mels: int = 64
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    f_min: float = 20.0
    f_max: float = 8_000.0
    context: int = 3
    stride: int = 2
    dense_size: int = 256
    n_dense: int = 3
    lstm_size: int = 160
    dropout: float = 0.05
    relu_clip: float = 20.0
    n_classes: int = len(CHARACTERS)

    def __post_init__(self):
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_dense < 1 or self.stride < 1 or self.context < 0:
            raise ConfigError("n_dense and stride must be >= 1, context >= 0")


# ──────────────────────────────────────────────────────────────────────────────
# The network
# ──────────────────────────────────────────────────────────────────────────────


class DeepSpeechCTC(nn.Module):
    def __init__(self, config: CTCConfig):
        super().__init__()
        self.config = c = config
        self.logmel = frontend.LogMel(c.sample_rate, n_mels=c.n_mels, n_fft=c.n_fft, hop_length=c.hop_length,
                                      win_length=c.win_length, f_min=c.f_min, f_max=c.f_max)
        # global feature scale, estimated from training data before the first step
        self.register_buffer("feature_std", torch.ones(c.n_mels))
        input_size = c.n_mels * (2 * c.context + 1)
        sizes = [input_size] + [c.dense_size] * c.n_dense
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        # two unidirectional LSTMs instead of one packed bidirectional one: the backward pass
        # reads each utterance reversed within its own length, so padding stays at the end for
        # both directions and no PackedSequence (2-5x slower on CPU) is needed
        self.lstm_forward = nn.LSTM(c.dense_size, c.lstm_size, batch_first=True)
        self.lstm_backward = nn.LSTM(c.dense_size, c.lstm_size, batch_first=True)
        self.post = nn.Linear(2 * c.lstm_size, c.dense_size)
        self.output = nn.Linear(c.dense_size, c.n_classes)
        # inference-time dropout: None = off; set only through CTCRecognizer.stochastic
        self.inference_p: float | None = None
        self.generator: torch.Generator | None = None
        self.spec_augment = None  # callable(features, lengths) used in training only

    # --- pieces -----------------------------------------------------------------
    def features(self, waveforms: torch.Tensor, sample_lengths: torch.Tensor):
        """Normalised, context-stacked, strided features ``(B, T', F)`` and lengths ``(B,)``."""
        c = self.config
        # zero the padding explicitly so it can never reach features or receive gradient
        sample_mask = frontend.length_mask(sample_lengths.to(waveforms.device), waveforms.shape[-1])
        logmel = self.logmel(waveforms * sample_mask.to(waveforms.dtype))  # (B, T, n_mels)
        lengths = frontend.n_frames(sample_lengths, c.hop_length).clamp(max=logmel.shape[1])
        mask = frontend.length_mask(lengths, logmel.shape[1]).unsqueeze(-1).to(logmel.dtype)
        mean = (logmel * mask).sum(1, keepdim=True) / lengths.clamp(min=1)[:, None, None]
        normalised = (logmel - mean) / self.feature_std * mask
        if self.training and self.spec_augment is not None:
            normalised = self.spec_augment(normalised, lengths)
        stacked = _stack_context_per_length(normalised, lengths, c.context)
        stacked = stacked[:, :: c.stride]
        out_lengths = torch.div(lengths + c.stride - 1, c.stride, rounding_mode="floor")
        return stacked, out_lengths

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return training_dropout(x, self.config.dropout)
        p = self.inference_p
        if not p:
            return x
        # drawn on the CPU generator on every device, so a seed gives the same masks on a GPU
        keep = torch.rand(x.shape, generator=self.generator, dtype=x.dtype).to(x.device) >= p
        return x * keep / (1.0 - p)

    def clipped_relu(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, 0.0, self.config.relu_clip)

    def first_layer(self, features: torch.Tensor) -> torch.Tensor:
        """Everything before the first dropout: computed once for all realisations."""
        return self.clipped_relu(self.dense[0](features))

    def rest(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """From the first dropout to log-probabilities ``(B, T', C)``."""
        hidden = self.dropout(hidden)
        for layer in self.dense[1:]:
            hidden = self.dropout(self.clipped_relu(layer(hidden)))
        forward, _ = self.lstm_forward(hidden)
        reverse = _reverse_within_length(hidden, lengths)
        backward = _reverse_within_length(self.lstm_backward(reverse)[0], lengths)
        hidden = self.dropout(self.clipped_relu(self.post(torch.cat([forward, backward], dim=-1))))
        return F.log_softmax(self.output(hidden), dim=-1)

    def forward(self, waveforms: torch.Tensor, sample_lengths: torch.Tensor):
        features, lengths = self.features(waveforms, sample_lengths)
        return self.rest(self.first_layer(features), lengths), lengths

    def rest_realizations(self, shared: torch.Tensor, kept: Sequence[torch.Tensor], keep_probability: float,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``rest`` for many dropout realisations of one utterance ``(1, T', D)``: ``(n, T', C)``.

        ``kept`` are keep masks (bool, or 0/1 in a float type), one per dropout in order
        (:meth:`dropout_widths`), each time-major ``(T', n, width)``. Dividing by the keep
        probability is folded into the weights of the layer after each dropout, so a mask costs
        one multiplication; the layers run in ``dtype``. Differentiable with respect to
        ``shared`` when gradients are on (adaptive attacks need that); call it under
        ``torch.no_grad()`` otherwise.
        """
        c = self.config
        w = self._realization_weights(keep_probability, dtype)
        # time-major (T', n, width) throughout: the LSTM needs no transposes and a flip is a block copy
        kept = [k.to(device=shared.device, dtype=dtype) for k in kept]  # a no-op for masks already in dtype

        def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            # matmul then add_: addmm's broadcast copy of the bias costs more than a second pass
            return torch.matmul(x, weight).add_(bias).clamp_(0.0, c.relu_clip)

        hidden = shared.to(dtype).transpose(0, 1) * kept[0]  # (T', 1, D) broadcast to (T', n, D)
        for (weight, bias), keep in zip(w["dense"], kept[1:-1]):
            hidden = dense(hidden, weight, bias).mul_(keep)

        # one utterance, so every realisation spans all T' frames and reversing is a flip
        forward = lstm_time_major(w["lstm_forward"], hidden)
        backward = lstm_time_major(w["lstm_backward"], hidden.flip(0)).flip(0)
        # post(cat(forward, backward)) as two products into one buffer: no concatenated copy
        weight, bias = w["post"]
        hidden = torch.matmul(forward, weight[: c.lstm_size])
        hidden.view(-1, hidden.shape[-1]).addmm_(backward.reshape(-1, c.lstm_size), weight[c.lstm_size:])
        hidden = hidden.add_(bias).clamp_(0.0, c.relu_clip).mul_(kept[-1])
        logits = torch.matmul(hidden, w["output"][0]).add_(w["output"][1])
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bfloat16 -> float32, float64 stays
        return F.log_softmax(logits, dim=-1).transpose(0, 1).contiguous()

    def _realization_weights(self, keep_probability: float, dtype: torch.dtype) -> dict:
        """Weights cast to ``dtype`` with 1/keep folded in where a dropout precedes; cached until any weight changes."""
        stamp = (keep_probability, dtype, tuple((t.data_ptr(), t._version) for t in self.parameters()))
        if getattr(self, "_realization_cache", (None,))[0] == stamp:
            return self._realization_cache[1]
        scale = 1.0 / keep_probability

        def cast(t: torch.Tensor, s: float = 1.0) -> torch.Tensor:
            return (t.detach() * s).to(dtype).contiguous()

        def lstm(m: nn.LSTM) -> list[torch.Tensor]:
            return [cast(m.weight_ih_l0, scale), cast(m.weight_hh_l0), cast(m.bias_ih_l0), cast(m.bias_hh_l0)]

        # dense weights stored as (in, out) for ``x @ W``
        weights = {"dense": [(cast(layer.weight.T, scale), cast(layer.bias)) for layer in self.dense[1:]],
                   "lstm_forward": lstm(self.lstm_forward), "lstm_backward": lstm(self.lstm_backward),
                   "post": (cast(self.post.weight.T), cast(self.post.bias)),
                   "output": (cast(self.output.weight.T, scale), cast(self.output.bias))}
        self._realization_cache = (stamp, weights)
        return weights

    def dropout_widths(self) -> list[int]:
        """Feature width at each dropout of :meth:`rest`, in order."""
        return [self.config.dense_size] * (self.config.n_dense + 1)  # after each dense layer and after post


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


#: Cached realisation masks are capped at this many bytes in all (about 25 s of audio at I = 50).
MASK_CACHE_BYTES = 64 << 20
_mask_cache: dict[tuple, list[torch.Tensor]] = {}
_mask_cache_lock = threading.Lock()


def realization_keep_masks(n_frames: int, n: int, widths: Sequence[int], p: float,
                           seed: int, dtype: torch.dtype = torch.bool) -> tuple[list[torch.Tensor], float]:
    """``dropout_keep_masks([(n_frames, n, w) for w in widths], p, seed)``, served from a cache.

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
    """
    threshold, keep_probability = _mask_threshold(p, seed)
    key = (seed, threshold, n, tuple(widths), dtype)
    with _mask_cache_lock:
        cached = _mask_cache.pop(key, None)  # re-inserted below: the dict's order is the LRU order
        have = cached[0].shape[0] if cached else 0
        if have < n_frames:
            # doubling keeps growth amortised; past the cap, draw only what this call needs
            cap_frames = MASK_CACHE_BYTES // (n * sum(widths) * _itemsize(dtype))
            grow_to = max(n_frames, min(2 * have, cap_frames))
            rows = [torch.from_numpy(_keep_rows(seed, k, n * w, have, grow_to, threshold)).view(-1, n, w).to(dtype)
                    for k, w in enumerate(widths)]
            cached = rows if not cached else [torch.cat([old, new]) for old, new in zip(cached, rows)]
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
    seed = int(torch.randint(0, 2**62, (), dtype=torch.long))
    (kept,), keep_probability = dropout_keep_masks([tuple(x.shape)], p, seed)
    return x * kept.to(x.device) * (1.0 / keep_probability)


def lstm_time_major(weights: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """One LSTM layer ``[w_ih, w_hh, b_ih, b_hh]`` over time-major ``x`` ``(T, B, F)`` from a zero state."""
    zeros = x.new_zeros(1, x.shape[1], weights[1].shape[1])
    return torch.lstm(x, (zeros, zeros), list(weights), True, 1, 0.0, False, False, False)[0]


def native_bfloat16() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX512-BF16 or AMX).

    Example:
        >>> isinstance(native_bfloat16(), bool)
        True
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


REALIZATION_PRECISIONS = ("auto", "float32", "bfloat16")


def _reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each ``(T, F)`` sequence over its first ``length`` steps; padding stays in place."""
    n_time = x.shape[1]
    time = torch.arange(n_time, device=x.device)[None, :]
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(time < lengths, lengths - 1 - time, time)
    return torch.gather(x, 1, index[..., None].expand_as(x))


def _stack_context_per_length(features: torch.Tensor, lengths: torch.Tensor, context: int) -> torch.Tensor:
    """Context stacking that replicates each utterance's own last frame, never padding."""
    if context == 0:
        return features
    batch, n_time, n_feat = features.shape
    time = torch.arange(n_time, device=features.device)
    last = (lengths.to(features.device) - 1).clamp(min=0)[:, None]
    frames = []
    for offset in range(-context, context + 1):
        index = torch.minimum((time[None, :] + offset).clamp(min=0), last)
        frames.append(torch.gather(features, 1, index[..., None].expand(batch, n_time, n_feat)))
    return torch.cat(frames, dim=-1)


# ──────────────────────────────────────────────────────────────────────────────
# Decoding
# ──────────────────────────────────────────────────────────────────────────────


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Best path: argmax per frame, merge repeats, drop blanks.

    Example:
        >>> lp = torch.log(torch.eye(29)[[0, 9, 9, 0, 10]]).unsqueeze(0)
        >>> greedy_decode(lp, torch.tensor([5]))
        ['hi']
    """
    best = log_probs.argmax(dim=-1).cpu().numpy()
    transcripts = []
    for row, n in zip(best, lengths.tolist()):
        row = row[:n]
        keep = np.ones(len(row), dtype=bool)
        keep[1:] = row[1:] != row[:-1]
        chars = [CHARACTERS[i] for i in row[keep] if i != 0]
        transcripts.append(" ".join("".join(chars).split()))
    return transcripts


# ──────────────────────────────────────────────────────────────────────────────
# The Recognizer
# ──────────────────────────────────────────────────────────────────────────────


class CTCRecognizer(Recognizer):
    """The CTC recogniser behind the Recognizer interface.

    Example:
        >>> rec = CTCRecognizer.load()                      # doctest: +SKIP
        >>> rec.transcribe([waveform])                       # doctest: +SKIP
        ['okay google']
        >>> r = rec.realizations(waveform, n=50, seed=0)     # doctest: +SKIP
    """

    def __init__(self, config: CTCConfig | None = None, model: DeepSpeechCTC | None = None,
                 metadata: dict | None = None):
        self.config = config or CTCConfig()
        self.model = model or DeepSpeechCTC(self.config)
        self.model.eval()
        self.sample_rate = self.config.sample_rate
        self.metadata = metadata or {}
        self.checksum: str | None = None

    # --- Recognizer interface ---------------------------------------------------
    @property
    def vocabulary(self) -> Sequence[str]:
        return CHARACTERS

    def target_fits(self, batch: AudioBatch, targets: Sequence[str]) -> list[bool]:
        """A CTC target needs one output frame per character plus one per doubled letter."""
        with torch.no_grad():
            _, frames = self.log_probs(batch)
        return [bool(t.strip()) and required_frames(t) <= int(n) for t, n in zip(targets, frames.tolist())]

    def log_probs(self, batch: AudioBatch):
        """Log-posteriors ``(B, T', C)`` and frame counts, on the CPU whatever :attr:`device` runs the model."""
        self._check_rate(batch)
        device = self.device
        log_probs, lengths = self.model(batch.waveforms.to(device), batch.lengths.to(device))
        return log_probs.cpu(), lengths.cpu()  # differentiable: gradients flow back to CPU inputs

    @property
    def device(self) -> torch.device:
        return self.model.feature_std.device

    def to(self, device: str | torch.device) -> "CTCRecognizer":
        """Run the network on ``device`` (``"cuda"``); inputs and outputs stay CPU tensors. Returns ``self``.

        Example:
            >>> CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8)).to("cpu").device.type
            'cpu'
        """
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: this PyTorch build sees no CUDA device (torch.cuda.is_available() "
                              "is False)")
        self.model.to(device)
        return self

    def decode(self, log_probs, lengths):
        return greedy_decode(log_probs, lengths)

    def loss(self, batch: AudioBatch, targets: Sequence[str]) -> torch.Tensor:
        """CTC loss toward ``targets`` (one string per utterance), shape ``(B,)``."""
        if len(targets) != len(batch):
            raise ConfigError(f"{len(targets)} targets for a batch of {len(batch)}")
        log_probs, lengths = self.log_probs(batch)
        encoded = [torch.tensor(encode(t), dtype=torch.long) for t in targets]
        for i, (e, n) in enumerate(zip(encoded, lengths.tolist())):
            needed = len(e) + int((e[1:] == e[:-1]).sum()) if len(e) else 0
            if len(e) == 0 or needed > n:
                raise ConfigError(
                    f"target {targets[i]!r} needs {needed} frames but utterance {i} has {n}; "
                    "use a longer utterance or a shorter target"
                )
        target_lengths = torch.tensor([len(e) for e in encoded])
        return F.ctc_loss(log_probs.transpose(0, 1), torch.cat(encoded), lengths, target_lengths,
                          blank=0, reduction="none", zero_infinity=False)

    @contextlib.contextmanager
    def stochastic(self, p: float | None = None, *, seed: int | None = None):
        """Dropout at rate ``p`` (default: the training rate) on every non-LSTM layer.

        Weights are untouched. With ``seed`` the masks come from a dedicated generator.
        """
        p = self.config.dropout if p is None else float(p)
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {p}")
        previous = (self.model.inference_p, self.model.generator)
        self.model.inference_p = p
        self.model.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        try:
            yield self
        finally:
            self.model.inference_p, self.model.generator = previous

    def realizations(self, audio, n: int = 50, seed: int = 0, *, p: float | None = 0.1,
                     precision: str = "auto") -> Realizations:
        """``n`` dropout realisations of one waveform in one batched, gradient-free pass.

        The front end and the first dense layer run once; only the layers after the first
        dropout run ``n`` times. ``precision``: ``"float32"``, ``"bfloat16"``, or ``"auto"``
        (bfloat16 where the CPU has it natively, see :func:`native_bfloat16`). Reproducible
        from ``seed`` (:func:`dropout_keep_masks`).
        """
        p = self.config.dropout if p is None else float(p)
        waveform = torch.from_numpy(validate_waveform(audio, self.sample_rate))
        with torch.no_grad():
            log_probs, length = self.realization_log_probs(waveform, n, seed, p=p, precision=precision)
        log_probs = log_probs.cpu()
        transcripts = greedy_decode(log_probs, torch.tensor([length]).expand(n))
        return Realizations(transcripts, log_probs, length, p, seed)

    def realization_log_probs(self, waveform: torch.Tensor, n: int = 50, seed: int = 0, *, p: float = 0.1,
                              precision: str = "auto", indices: Sequence[int] | None = None
                              ) -> tuple[torch.Tensor, int]:
        """Log-posteriors ``(n, T', C)`` and frame count of the realisations :meth:`realizations` draws.

        The same masks as :meth:`realizations` with the same ``n``, ``seed`` and ``p``, and
        differentiable with respect to ``waveform`` (a 1-D tensor at :attr:`sample_rate`) when
        gradients are on: an attacker who knows a detector's seed can optimise against exactly
        its realisations (:class:`asrguard.attacks.adaptive.KnownMaskAttack`). ``indices``
        keeps only those realisations (a subset of the ``n``), for cheaper steps.

        Example:
            >>> rec = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
            >>> x = torch.full((3200,), 0.1, requires_grad=True)
            >>> log_probs, frames = rec.realization_log_probs(x, 4, seed=1, indices=[0, 2])
            >>> tuple(log_probs.shape), frames
            ((2, 11, 29), 11)
            >>> log_probs.sum().backward(); x.grad.shape
            torch.Size([3200])
        """
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        dtype = self._realization_dtype(precision)
        device = self.model.feature_std.device
        waveform = waveform.to(device)
        features, lengths = self.model.features(waveform[None], torch.tensor([waveform.shape[-1]], device=device))
        shared = self.model.first_layer(features)
        kept, keep = realization_keep_masks(shared.shape[1], n, self.model.dropout_widths(), p, seed, dtype)
        if indices is not None:
            index = torch.as_tensor(list(indices), dtype=torch.long)
            if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= n:
                raise ConfigError(f"indices must name realisations in 0..{n - 1}")
            kept = [k.index_select(1, index) for k in kept]
        return self.model.rest_realizations(shared, kept, keep, dtype).cpu(), int(lengths[0])

    def realization_loss(self, waveform: torch.Tensor, target: str, n: int = 50, seed: int = 0, *, p: float = 0.1,
                         indices: Sequence[int] | None = None) -> torch.Tensor:
        """CTC loss toward ``target`` of each realisation :meth:`realizations` draws (or ``indices`` of them): ``(k,)``.

        Example:
            >>> rec = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
            >>> rec.realization_loss(torch.full((3200,), 0.1), "hi", 4, seed=1, indices=[0, 2]).shape
            torch.Size([2])
        """
        log_probs, frames = self.realization_log_probs(waveform, n, seed, p=p, indices=indices)
        label = torch.tensor(encode(target), dtype=torch.long)
        k = log_probs.shape[0]
        return F.ctc_loss(log_probs.float().transpose(0, 1), label.repeat(k), torch.full((k,), frames),
                          torch.full((k,), len(label)), blank=0, reduction="none", zero_infinity=True)

    def realization_scheme(self, precision: str = "auto") -> str:
        """How :meth:`realizations` draws here, e.g. ``"pcg64-rows-u16/bfloat16"``.

        Feature caches and saved detectors record it: realisations drawn under another scheme
        are statistically alike but not identical.

        Example:
            >>> CTCRecognizer().realization_scheme("float32")
            'pcg64-rows-u16/float32'
        """
        return f"pcg64-rows-u16/{str(self._realization_dtype(precision)).removeprefix('torch.')}"

    @staticmethod
    def _realization_dtype(precision: str) -> torch.dtype:
        if precision not in REALIZATION_PRECISIONS:
            raise ConfigError(f"precision must be one of {REALIZATION_PRECISIONS}, got {precision!r}")
        use_bf16 = precision == "bfloat16" or (precision == "auto" and native_bfloat16())
        return torch.bfloat16 if use_bf16 else torch.float32

    # --- persistence ------------------------------------------------------------
    def save(self, directory: str | os.PathLike, metadata: dict | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (with version and checksum) atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / "model.safetensors"
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        atomic_write(weights, lambda tmp: save_file(state, tmp))
        self.checksum = sha256_file(weights)
        document = {
            "format": "asrguard-ctc", "version": FORMAT_VERSION, "config": asdict(self.config),
            "config_sha256": config_digest(asdict(self.config)),
            "checksum_sha256": self.checksum, "metadata": {**self.metadata, **(metadata or {})},
        }
        atomic_write_text(directory / "config.json", json.dumps(document, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike | None = None) -> "CTCRecognizer":
        """Load a saved model, verifying its checksum; ``None`` loads the shipped default."""
        directory = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
        config_path, weights = directory / "config.json", directory / "model.safetensors"
        if not config_path.exists() or not weights.exists():
            raise ModelFileError(f"{directory}: expected config.json and model.safetensors; "
                                 "train one with `asrguard train` or pass --model")
        try:
            document = json.loads(config_path.read_text())
            config = CTCConfig(**document["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{config_path}: not a valid asrguard CTC config ({exc})") from None
        if document.get("format") != "asrguard-ctc" or document.get("version") != FORMAT_VERSION:
            raise ModelFileError(f"{config_path}: unsupported format/version")
        if "config_sha256" in document and document["config_sha256"] != config_digest(document["config"]):
            # the config changes the model's output (clipping, filterbank, ...): an edit is refused like a weight edit
            raise ModelFileError(f"{config_path}: the model config was modified (config_sha256 mismatch); restore it "
                                 "or retrain")
        checksum = sha256_file(weights)
        if checksum != document.get("checksum_sha256"):
            raise ModelFileError(f"{weights}: checksum mismatch; the file was modified or is corrupt")
        model = DeepSpeechCTC(config)
        try:
            model.load_state_dict(load_file(str(weights)))
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"{weights}: weights do not match the config ({exc})") from None
        recognizer = cls(config, model, document.get("metadata", {}))
        recognizer.checksum = checksum
        return recognizer

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def config_digest(config: dict) -> str:
    """SHA-256 of a model config in canonical JSON (sorted keys), stored beside the weights' checksum.

    Example:
        >>> config_digest({"b": 1, "a": 2}) == config_digest({"a": 2, "b": 1})
        True
    """
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()


def required_frames(target: str) -> int:
    """Frames CTC needs to emit ``target``: its length plus one blank per doubled letter."""
    e = encode(target)
    return len(e) + sum(a == b for a, b in zip(e, e[1:]))


def seconds_for_target(target: str, config: CTCConfig | None = None) -> float:
    config = config or CTCConfig()
    return required_frames(target) * config.stride * config.hop_length / config.sample_rate


__all__ = ["CTCConfig", "CTCRecognizer", "DeepSpeechCTC", "dropout_keep_masks", "greedy_decode", "native_bfloat16",
           "realization_keep_masks", "required_frames", "seconds_for_target", "DEFAULT_MODEL_DIR"]
