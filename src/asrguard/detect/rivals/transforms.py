"""Audio transformations for the transformation-consistency detector (WaveGuard-style).

Each takes a mono float waveform at ``rate`` and returns a waveform of the same length in
[-1, 1]; the randomised ones take a seed and are deterministic given it:

* :func:`quantize`: round every sample to ``bits`` bits (quantise, then dequantise);
* :func:`down_up`: resample to ``low_rate`` and back (polyphase, :func:`asrguard.audio.resample`);
  :func:`down_up_torch` computes the same linear map in torch, so gradients pass through it (the
  adaptive attack :class:`asrguard.attacks.evasion.BPDATransformAttack` backpropagates through it);
* :func:`mel_inversion`: magnitude mel spectrogram (``torch.stft``), back to a linear
  spectrogram with the filterbank's pseudo-inverse, then phase from fast Griffin-Lim
  (Perraudin et al. 2013) started from seeded random phase;
* :func:`lpc_resynthesis`: per 32 ms frame an all-pole (LPC) model of order ``order``; the
  frame's prediction residual keeps its band below ``cutoff_hz`` and its band above is replaced
  by seeded noise of the same energy (a residual-excited coder), then the all-pole filter
  resynthesises the frame; frames overlap-add under a Hann window. ``cutoff_hz`` at the Nyquist
  rate gives the input back; 0 gives a noise-excited coder.

:func:`random_settings` draws one input's settings of a transformation from :data:`RANDOM_RANGES`
(the detector's ``randomize`` option).

The transforms are implemented with NumPy, SciPy and torch only, so the same input gives the
same output whether or not optional libraries (librosa) are installed.

Example:
    >>> x = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32) * 0.5
    >>> [len(f(x, 16000)) for f in (quantize, down_up, mel_inversion, lpc_resynthesis)]
    [16000, 16000, 16000, 16000]
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from scipy.fft import next_fast_len
from scipy.linalg import solve_toeplitz
from scipy.signal import firwin, lfilter

from ...audio import resample
from ...errors import ConfigError
from ...frontend import mel_filterbank
from ...rng import derive, generator


def _finish(y, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)[:n]
    if len(y) < n:
        y = np.pad(y, (0, n - len(y)))
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def quantize(x, rate: int, *, bits: int = 8) -> np.ndarray:
    """Round each sample to a grid of ``2 ** (bits - 1)`` steps per unit amplitude.

    Example:
        >>> quantize(np.array([0.3, -0.01]), 16000, bits=4).tolist()
        [0.25, -0.0]
    """
    if not 1 <= int(bits) <= 24:
        raise ConfigError(f"quantisation bits must be in 1..24, got {bits}")
    steps = 2.0 ** (int(bits) - 1)
    return _finish(np.round(np.asarray(x, dtype=np.float64) * steps) / steps, len(x))


def down_up(x, rate: int, *, low_rate: int = 8000) -> np.ndarray:
    """Resample to ``low_rate`` and back, which removes everything above ``low_rate / 2``.

    Example:
        >>> down_up(np.zeros(1000, dtype=np.float32), 16000).shape
        (1000,)
    """
    if not 0 < int(low_rate) < rate:
        raise ConfigError(f"down-sampling rate must be below the input's {rate} Hz, got {low_rate}")
    low = resample(np.asarray(x, dtype=np.float32), rate, int(low_rate))
    return _finish(resample(low, int(low_rate), rate), len(x))


def _resample_poly_torch(x: torch.Tensor, up: int, down: int) -> torch.Tensor:
    """scipy's ``resample_poly(x, up, down)`` (its default Kaiser-windowed FIR, zero padding) on a 1-D tensor."""
    max_rate, half_len = max(up, down), 10 * max(up, down)
    n_pre_pad = down - half_len % down  # as scipy: output samples at the filter's centre
    taps = np.r_[np.zeros(n_pre_pad), firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up]
    n_out = -(-len(x) * up // down)
    start = (half_len + n_pre_pad) // down
    stuffed = torch.nn.functional.pad(x[:, None], (0, up - 1)).reshape(-1)  # up - 1 zeros after each sample
    size = len(stuffed) + len(taps) - 1
    # full convolution by FFT (a direct one would unfold length x taps for rates like 11025 / 16000),
    # at a length the FFT factorises well
    fast = next_fast_len(size, real=True)
    spectrum = torch.fft.rfft(stuffed, fast) * torch.fft.rfft(torch.from_numpy(taps).to(x.dtype), fast)
    full = torch.fft.irfft(spectrum, fast)[:size:down]
    full = torch.nn.functional.pad(full, (0, max(0, start + n_out - len(full))))
    return full[start:start + n_out]


def down_up_torch(x: torch.Tensor, rate: int, *, low_rate: int = 8000) -> torch.Tensor:
    """:func:`down_up` on a 1-D tensor, differentiable: the same filters, clipping and length.

    Computed in float64 and returned in ``x``'s dtype; it equals :func:`down_up` up to float rounding.

    Example:
        >>> x = torch.linspace(-0.5, 0.5, 800, dtype=torch.float64)
        >>> bool(torch.allclose(down_up_torch(x, 16000), torch.from_numpy(down_up(x.numpy(), 16000)).double(),
        ...                     atol=1e-6))
        True
    """
    if not 0 < int(low_rate) < rate:
        raise ConfigError(f"down-sampling rate must be below the input's {rate} Hz, got {low_rate}")
    ratio = math.gcd(int(low_rate), int(rate))
    low = torch.clamp(_resample_poly_torch(x.to(torch.float64), int(low_rate) // ratio, rate // ratio), -1.0, 1.0)
    y = torch.clamp(_resample_poly_torch(low, rate // ratio, int(low_rate) // ratio), -1.0, 1.0)
    y = torch.nn.functional.pad(y[: len(x)], (0, max(0, len(x) - len(y))))
    return y.to(x.dtype)


def mel_inversion(x, rate: int, *, n_mels: int = 80, n_fft: int = 512, hop: int = 128, iterations: int = 32,
                  momentum: float = 0.99, seed: int = 0) -> np.ndarray:
    """Mel spectrogram and back: the filterbank's pseudo-inverse, then ``iterations`` of fast Griffin-Lim.

    Example:
        >>> y = mel_inversion(np.zeros(4000, dtype=np.float32), 16000, iterations=2)
        >>> y.shape, float(np.abs(y).max())
        ((4000,), 0.0)
    """
    if n_mels < 1 or iterations < 0 or not 0 <= momentum < 1 or hop < 1 or n_fft < 2 * hop:
        raise ConfigError(f"mel inversion needs n_mels >= 1, iterations >= 0, momentum in [0, 1) and "
                          f"n_fft >= 2 * hop, got {n_mels}, {iterations}, {momentum}, {n_fft}, {hop}")
    n = len(x)
    signal = torch.from_numpy(np.asarray(x, dtype=np.float64))
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def stft(y):
        return torch.stft(y, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)

    def istft(spec):
        return torch.istft(spec, n_fft, hop, window=window, center=True, length=n)

    bank = mel_filterbank(n_fft // 2 + 1, n_mels, rate).to(torch.float64).T  # (n_mels, freqs)
    magnitude = torch.clamp(torch.linalg.pinv(bank) @ (bank @ stft(signal).abs()), min=0.0)
    torch_generator = torch.Generator().manual_seed(derive(seed, "griffin-lim"))
    phase = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=torch_generator, dtype=torch.float64))
    spec, previous = magnitude * phase, None
    for _ in range(iterations):
        consistent = stft(istft(spec))
        accelerated = consistent if previous is None else consistent + momentum * (consistent - previous)
        previous = consistent
        spec = magnitude * accelerated / torch.clamp(accelerated.abs(), min=1e-12)
    return _finish(istft(spec).numpy(), n)


def lpc_coefficients(frame: np.ndarray, order: int) -> np.ndarray | None:
    """``[1, a_1 .. a_order]`` of the all-pole model of ``frame`` (autocorrelation method), or None if silent.

    Example (a sinusoid of 0.3 rad/sample: poles at exp(±0.3j), so ``a = [1, -2 cos 0.3, 1]``):
        >>> a = lpc_coefficients(np.sin(0.3 * np.arange(400)) * np.hanning(400), 2)
        >>> round(float(a[1]), 2), round(float(a[2]), 2)
        (-1.91, 1.0)
    """
    spectrum = np.fft.rfft(frame, 2 * len(frame))
    r = np.fft.irfft(np.abs(spectrum) ** 2)[: order + 1]
    if r[0] <= 1e-12:
        return None
    r[0] *= 1.0 + 1e-6  # a little white noise keeps the Toeplitz system well conditioned
    return np.r_[1.0, solve_toeplitz(r[:order], -r[1:order + 1])]


def lpc_resynthesis(x, rate: int, *, order: int = 20, cutoff_hz: float = 1000.0, frame_ms: float = 32.0,
                    seed: int = 0) -> np.ndarray:
    """Residual-excited LPC: keep the residual below ``cutoff_hz``, replace it above by noise of equal energy.

    Example:
        >>> x = (0.5 * np.sin(2 * np.pi * 300 * np.arange(8000) / 16000)).astype(np.float32)
        >>> float(np.abs(lpc_resynthesis(x, 16000, cutoff_hz=8000) - x).max()) < 1e-3
        True
    """
    if order < 1 or not 0 <= cutoff_hz <= rate / 2 or frame_ms <= 0:
        raise ConfigError(f"LPC needs order >= 1, 0 <= cutoff_hz <= {rate / 2} and frame_ms > 0, got "
                          f"{order}, {cutoff_hz}, {frame_ms}")
    n = len(x)
    size = max(2 * (order + 1), int(round(rate * frame_ms / 1000)) // 2 * 2)
    hop = size // 2
    window = np.hanning(size + 1)[:size]  # periodic Hann: its copies a half frame apart sum to one
    padded = np.pad(np.asarray(x, dtype=np.float64), (size, size + hop))
    out = np.zeros_like(padded)
    cut = int(math.floor(cutoff_hz * size / rate)) + 1 if cutoff_hz > 0 else 0  # first replaced bin
    rng = generator(seed, "lpc")
    for start in range(0, len(padded) - size + 1, hop):
        frame = padded[start:start + size] * window
        a = lpc_coefficients(frame, order)
        if a is None:
            continue  # silence stays silent
        residual = np.fft.rfft(lfilter(a, [1.0], frame))
        high = residual[cut:]
        if high.size:
            noise = rng.standard_normal(high.size) + 1j * rng.standard_normal(high.size)
            energy = float(np.sum(np.abs(high) ** 2))
            residual[cut:] = noise * math.sqrt(energy / max(float(np.sum(np.abs(noise) ** 2)), 1e-30))
        out[start:start + size] += lfilter([1.0], a, np.fft.irfft(residual, size))
    return _finish(out[size:], n)


#: Transformation name -> function(x, rate, **settings); the detector passes the settings it holds.
TRANSFORMS = {"mel": mel_inversion, "lpc": lpc_resynthesis, "resample": down_up, "quantize": quantize}

#: ``(low, high, step)``, inclusive, that :func:`random_settings` draws from, around the detector's
#: defaults: settings that change what the recogniser hears (band, resolution, step), not only phase or
#: noise. Down-sampling rates are multiples of 500 Hz, so the polyphase filters stay short.
RANDOM_RANGES = {"mel": {"n_mels": (56, 104, 8)}, "lpc": {"order": (14, 26, 2), "cutoff_hz": (500, 2000, 250)},
                 "resample": {"low_rate": (6000, 10000, 500)}, "quantize": {"bits": (7, 9, 1)}}


def random_settings(name: str, x, seed: int) -> dict:
    """Settings of transformation ``name`` for input ``x``, drawn uniformly from :data:`RANDOM_RANGES`.

    Each input gets its own draw: the generator is seeded by ``seed`` and a digest of ``x``'s samples,
    so the draw is reproducible given both and unknown without ``seed``.

    Example:
        >>> x = np.zeros(160, dtype=np.float32)
        >>> random_settings("resample", x, 3) == random_settings("resample", x, 3)
        True
        >>> 6000 <= random_settings("resample", x, 3)["low_rate"] <= 10000
        True
    """
    if name not in RANDOM_RANGES:
        raise ConfigError(f"unknown transform {name!r}; choose from {', '.join(RANDOM_RANGES)}")
    digest = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()[:15]
    rng = generator(seed, "settings", name, int(digest, 16))
    return {key: int(low + step * rng.integers(0, (high - low) // step, endpoint=True))
            for key, (low, high, step) in RANDOM_RANGES[name].items()}

__all__ = ["RANDOM_RANGES", "TRANSFORMS", "down_up", "down_up_torch", "lpc_coefficients", "lpc_resynthesis",
           "mel_inversion", "quantize", "random_settings"]
