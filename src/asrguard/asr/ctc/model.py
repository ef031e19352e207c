"""The network of the CTC recogniser (a DeepSpeech-like model), readable top to bottom.

waveform ─► log-mel (64 bands, 0–8 kHz) ─► per-utterance mean removal ─► context stack + stride 2
         ─► 3 × [dense, clipped ReLU, dropout] ─► BiLSTM (forward + length-reversed) ─► dense, clipped ReLU, dropout
         ─► dense ─► log-softmax over blank, space, a–z, apostrophe

Full band (0–8 kHz): FSDD is recorded at 8 kHz while Speech Commands is 16 kHz. Training
band-limits random utterances to 3.4–4 kHz so that both bandwidths are familiar; a first
model restricted to 0–3.8 kHz lost the /s/ of "stop" on most held-out speakers.

Dropout follows every non-LSTM layer. It is active during training at ``dropout`` (p_tr)
and, at inference, only inside :meth:`CTCRecognizer.stochastic` at any rate p, with masks
drawn from a seeded generator so that realisations are reproducible. The realisation pass
(:meth:`DeepSpeechCTC.rest_realizations`) runs the layers after the first dropout once per
realisation with masks from :mod:`.masks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ... import frontend
from ...errors import ConfigError
from ...text import CHARACTERS
from .masks import training_dropout


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
        return self.rest_realizations_batch(shared, None, kept, keep_probability, dtype)[0]

    def rest_realizations_batch(self, shared: torch.Tensor, lengths: torch.Tensor | None,
                                kept: Sequence[torch.Tensor], keep_probability: float,
                                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """:meth:`rest_realizations` of ``B`` utterances at once: ``(B, n, T', C)``.

        ``shared`` is ``(B, T', D)``, zero-padded after each utterance's ``lengths`` frames
        (``None``: all ``T'`` are real). Every utterance gets the same masks ``kept`` (``(T', n,
        width)``), so its first ``length`` frames equal what it gives alone: masks of a shorter
        utterance are a prefix of a longer one's, every layer but the LSTMs is per frame, the
        forward LSTM reads padding only after the real frames, and the backward LSTM reads each
        utterance reversed within its own length. Frames past a length are padding: discard them.

        Example:
            >>> m = DeepSpeechCTC(CTCConfig(dense_size=8, lstm_size=4))
            >>> kept = [torch.ones(5, 3, 8)] * 4
            >>> m.rest_realizations_batch(torch.rand(2, 5, 8), torch.tensor([5, 2]), kept, 1.0).shape
            torch.Size([2, 3, 5, 29])
        """
        c = self.config
        w = self._realization_weights(keep_probability, dtype)
        n_time, batch = shared.shape[1], shared.shape[0]
        # time-major (T', B, n, width) throughout: the LSTM needs no transposes and a flip is a block copy;
        # a mask (T', 1, n, width) broadcasts over the utterances, so each one sees exactly its own masks
        kept = [k.to(device=shared.device, dtype=dtype)[:, None] for k in kept]  # no copy for masks already in dtype
        n = kept[0].shape[2]

        def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            # matmul then add_: addmm's broadcast copy of the bias costs more than a second pass
            return torch.matmul(x, weight).add_(bias).clamp_(0.0, c.relu_clip)

        # (T', B, 1, D) * (T', 1, n, D) as a contiguous (T', B, n, D): left to itself the product takes a permuted
        # layout, and every matmul after it a batched copy of the weights (out= is faster, but not differentiable)
        utterances = shared.to(dtype).transpose(0, 1)[:, :, None]
        if torch.is_grad_enabled() and shared.requires_grad:
            hidden = (utterances * kept[0]).contiguous()
        else:
            hidden = torch.mul(utterances, kept[0], out=shared.new_empty((n_time, batch, n, shared.shape[-1]),
                                                                         dtype=dtype))
        for (weight, bias), keep in zip(w["dense"], kept[1:-1]):
            hidden = dense(hidden, weight, bias).mul_(keep)

        rows = hidden.view(n_time, batch * n, -1)
        forward = lstm_time_major(w["lstm_forward"], rows)
        if lengths is None or bool((lengths == n_time).all()):
            backward = lstm_time_major(w["lstm_backward"], rows.flip(0)).flip(0)
        else:
            frames = [int(t) for t in lengths]
            backward = _by_utterance(lstm_time_major(w["lstm_backward"], _by_utterance(hidden, frames)), frames, n)
        # post(cat(forward, backward)) as two products into one buffer: no concatenated copy
        weight, bias = w["post"]
        hidden = torch.matmul(forward, weight[: c.lstm_size])
        hidden.view(-1, hidden.shape[-1]).addmm_(backward.reshape(-1, c.lstm_size), weight[c.lstm_size:])
        hidden = hidden.add_(bias).clamp_(0.0, c.relu_clip).view(n_time, batch, n, -1).mul_(kept[-1])
        logits = torch.matmul(hidden, w["output"][0]).add_(w["output"][1])
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bfloat16 -> float32, float64 stays
        return F.log_softmax(logits, dim=-1).permute(1, 2, 0, 3).contiguous()

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


def lstm_time_major(weights: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """One LSTM layer ``[w_ih, w_hh, b_ih, b_hh]`` over time-major ``x`` ``(T, B, F)`` from a zero state."""
    zeros = x.new_zeros(1, x.shape[1], weights[1].shape[1])
    return torch.lstm(x, (zeros, zeros), list(weights), True, 1, 0.0, False, False, False)[0]


def _by_utterance(x: torch.Tensor, frames: Sequence[int], n: int | None = None) -> torch.Tensor:
    """Each utterance's first ``frames[b]`` steps reversed, its padding zeroed: ``(T, B, n, F)`` -> ``(T, B * n, F)``.

    ``x`` is ``(T, B, n, F)``, or ``(T, B * n, F)`` with ``n`` given. One block copy per utterance
    (a gather over every element costs several times more).

    Example:
        >>> x = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 2, 1, 1)
        >>> _by_utterance(x, [3, 2])[:, :, 0].T.tolist()
        [[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    if n is not None:
        x = x.view(x.shape[0], -1, n, x.shape[-1])
    out = torch.empty_like(x)
    for b, length in enumerate(frames):
        out[:length, b] = x[:length, b].flip(0)
        out[length:, b] = 0.0
    return out.view(x.shape[0], -1, x.shape[-1])


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
