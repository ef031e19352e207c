"""Whisper's log-mel front end in torch, so attack gradients reach the samples.

Equal to Hugging Face's ``WhisperFeatureExtractor`` (the tests compare them): a 400-point Hann
STFT every 160 samples, power, the extractor's 80 Slaney mel filters, log10 clamped 8 decades
below the utterance's peak, then ``(x + 4) / 4``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
N_FFT, HOP = 400, 160
WINDOW_SAMPLES = 30 * SAMPLE_RATE


def log_mel(waveforms: torch.Tensor, mel_filters: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
    """Whisper's log-mel spectrogram ``(B, 80, T)`` of ``(B, N)`` waveforms at 16 kHz; differentiable.

    ``n_samples`` zero-pads (or cuts) every waveform to that many samples first (480000 for
    Whisper's 30 s window). The spectrogram has ``n_samples // 160`` frames.

    Example:
        >>> filters = torch.rand(201, 80)
        >>> log_mel(torch.zeros(1, 16000), filters).shape
        torch.Size([1, 80, 100])
    """
    if n_samples is not None:
        waveforms = F.pad(waveforms, (0, max(0, n_samples - waveforms.shape[-1])))[..., :n_samples]
    window = torch.hann_window(N_FFT, device=waveforms.device, dtype=waveforms.dtype)
    spectrum = torch.stft(waveforms, N_FFT, HOP, window=window, return_complex=True)
    power = spectrum[..., :-1].abs() ** 2  # Whisper drops the last frame
    mel = mel_filters.T.to(power.dtype) @ power
    logs = mel.clamp_min(1e-10).log10()
    logs = torch.maximum(logs, logs.amax(dim=(-2, -1), keepdim=True) - 8.0)
    return (logs + 4.0) / 4.0
