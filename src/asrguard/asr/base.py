"""The Recognizer interface: everything attacks and detectors are allowed to use.

A recogniser maps a batch of waveforms to per-frame log-probabilities, a differentiable
attacker's loss and transcripts, and can switch on inference-time randomness (dropout at
any rate, a Bayesian weight sample, an ensemble member) without touching its weights.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..audio import validate_waveform
from ..errors import ConfigError, InvalidAudioError


@dataclass
class AudioBatch:
    """Zero-padded waveforms ``(B, N)`` with their true lengths ``(B,)`` and one sample rate.

    Example:
        >>> batch = AudioBatch.from_waveforms([np.zeros(800), np.zeros(1600)], 16000)
        >>> batch.waveforms.shape, batch.lengths.tolist()
        (torch.Size([2, 1600]), [800, 1600])
    """

    waveforms: torch.Tensor
    lengths: torch.Tensor
    sample_rate: int

    def __post_init__(self):
        if self.waveforms.ndim != 2:
            raise InvalidAudioError(f"batch waveforms must be (B, N), got {tuple(self.waveforms.shape)}")
        if self.lengths.shape != (self.waveforms.shape[0],):
            raise InvalidAudioError("batch lengths must have one entry per waveform")

    @classmethod
    def from_waveforms(cls, waveforms: Sequence, sample_rate: int, *, validate: bool = True,
                       names: Sequence[str] | None = None) -> "AudioBatch":
        if isinstance(waveforms, (np.ndarray, torch.Tensor)) and waveforms.ndim == 1:
            waveforms = [waveforms]
        if len(waveforms) == 0:
            raise InvalidAudioError("empty batch: no waveforms given")
        arrays = []
        for i, w in enumerate(waveforms):
            name = names[i] if names is not None else f"audio[{i}]"
            if validate:
                arrays.append(torch.from_numpy(validate_waveform(w, sample_rate, name=name)))
            else:
                arrays.append(torch.as_tensor(w, dtype=torch.float32))
        lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
        padded = torch.zeros(len(arrays), int(lengths.max()))
        for i, a in enumerate(arrays):
            padded[i, : len(a)] = a
        return cls(padded, lengths, int(sample_rate))

    def __len__(self) -> int:
        return self.waveforms.shape[0]

    def with_waveforms(self, waveforms: torch.Tensor) -> "AudioBatch":
        """Same lengths and rate, new samples (for example, audio plus a perturbation)."""
        return AudioBatch(waveforms, self.lengths, self.sample_rate)

    def mask(self) -> torch.Tensor:
        """``(B, N)`` float mask, 1 on real samples and 0 on padding."""
        positions = torch.arange(self.waveforms.shape[1], device=self.waveforms.device)
        return (positions[None, :] < self.lengths[:, None].to(positions.device)).to(self.waveforms.dtype)

    def unbatch(self) -> list[np.ndarray]:
        return [self.waveforms[i, : int(n)].detach().cpu().numpy() for i, n in enumerate(self.lengths)]


@dataclass
class Realizations:
    """``n`` stochastic passes over one input: transcripts and posteriors ``(n, T, C)``."""

    transcripts: list[str]
    log_probs: torch.Tensor
    length: int
    p: float | None
    seed: int


class Recognizer(abc.ABC):
    """Abstract recogniser. Subclasses set ``sample_rate`` and implement the abstract methods."""

    sample_rate: int

    @abc.abstractmethod
    def log_probs(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame log-posteriors ``(B, T, C)`` and frame lengths ``(B,)``; differentiable."""

    @abc.abstractmethod
    def loss(self, batch: AudioBatch, targets: Sequence[str]) -> torch.Tensor:
        """The attacker's objective toward ``targets``, one value per utterance ``(B,)``."""

    @abc.abstractmethod
    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Turn log-posteriors into transcripts."""

    @abc.abstractmethod
    def stochastic(self, p: float | None = None, *, seed: int | None = None) -> contextlib.AbstractContextManager:
        """Context manager that switches on inference-time randomness without changing weights."""

    @abc.abstractmethod
    def realizations(self, audio, n: int, seed: int = 0, *, p: float | None = None) -> Realizations:
        """``n`` stochastic transcripts and posteriors of one waveform, reproducible from ``seed``."""

    def realization_log_probs(self, waveform: torch.Tensor, n: int, seed: int = 0, *, p: float = 0.1,
                              indices: Sequence[int] | None = None) -> tuple[torch.Tensor, int]:
        """Differentiable log-posteriors ``(n, T, C)`` (and the frame count) of exactly the
        realisations :meth:`realizations` draws; ``indices`` keeps a subset. Optional: adaptive
        attacks that know a detector's seed need it."""
        raise ConfigError(f"{type(self).__name__} cannot differentiate through its seeded realisations")

    def realization_scheme(self, precision: str = "auto") -> str | None:
        """How :meth:`realizations` draws, recorded by feature caches and saved detectors; None if unnamed."""
        return None

    def transcribe(self, batch: AudioBatch | Sequence) -> list[str]:
        """Deterministic transcripts (no inference-time randomness)."""
        if not isinstance(batch, AudioBatch):
            batch = AudioBatch.from_waveforms(batch, self.sample_rate)
        self._check_rate(batch)
        with torch.no_grad():
            log_probs, lengths = self.log_probs(batch)
        return self.decode(log_probs, lengths)

    def _check_rate(self, batch: AudioBatch) -> None:
        if batch.sample_rate != self.sample_rate:
            raise InvalidAudioError(
                f"batch is at {batch.sample_rate} Hz but the recogniser expects {self.sample_rate} Hz; "
                "resample with asrguard.audio.resample"
            )

    @staticmethod
    @contextlib.contextmanager
    def _nothing() -> Iterator[None]:
        yield
