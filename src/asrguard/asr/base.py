"""The Recognizer interface: everything attacks and detectors are allowed to use.

The interface is split by capability, so a recogniser implements only what it can:

* :class:`Transcriber`: deterministic transcripts, a ``fingerprint()`` of the weights and the
  text normalisation under which two transcripts count as the same;
* :class:`DifferentiableLoss`: a loss toward a target string with gradients reaching the
  samples, and whether a target fits an input;
* :class:`Posteriors`: log-probabilities per output step (CTC frames, HMM states or the
  tokens of a sequence-to-sequence decoder), their decoding and the vocabulary;
* :class:`Stochastic`: inference-time randomness (dropout at any rate, a Bayesian weight
  sample, an ensemble member) without touching the weights, and seeded realisations;
* :class:`BatchedRealizations` (optional): the seeded realisations of several utterances in one
  pass, each equal to what it gets alone (:func:`asrguard.uncertainty.realizations.draw_realizations_batch`
  loops over :meth:`Stochastic.realizations` for recognisers without it).

Attacks and uncertainty features declare what they need with :func:`require`, which refuses
a recogniser that lacks a capability when the attack or extractor is built. :class:`Recognizer`
is the abstract base of recognisers that have all four (the CTC and hybrid models).
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from ..audio import validate_waveform
from ..errors import ConfigError, InvalidAudioError, MissingCapabilityError


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
                if isinstance(w, np.ndarray) and not w.flags.writeable:
                    w = w.copy()  # e.g. zero-copy arrays from Ray's object store; torch wants writable memory
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


#: How the masks of a recogniser's ``n`` realisations relate (:mod:`asrguard.asr.ctc.masks` has both):
#: independent draws, or balanced blocks in which each unit is dropped equally often.
MASK_SCHEMES = ("iid", "balanced")


@dataclass
class Realizations:
    """``n`` stochastic passes over one input: transcripts and posteriors ``(n, T, C)``."""

    transcripts: list[str]
    log_probs: torch.Tensor
    length: int
    p: float | None
    seed: int
    masks: str = "iid"


@runtime_checkable
class Transcriber(Protocol):
    """Deterministic transcripts of waveforms at ``sample_rate``."""

    sample_rate: int

    def transcribe(self, batch: "AudioBatch | Sequence") -> list[str]: ...

    def fingerprint(self) -> str | None: ...

    def normalize_text(self, text: str) -> str: ...


@runtime_checkable
class DifferentiableLoss(Protocol):
    """A loss toward target transcripts, one value per utterance, differentiable in the samples."""

    def loss(self, batch: AudioBatch, targets: Sequence[str]) -> torch.Tensor: ...

    def target_fits(self, batch: AudioBatch, targets: Sequence[str]) -> list[bool]: ...


@runtime_checkable
class Posteriors(Protocol):
    """Per-step log-posteriors ``(B, T, C)`` with lengths, their decoding and the vocabulary."""

    def log_probs(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]: ...

    @property
    def vocabulary(self) -> Sequence[str]: ...


@runtime_checkable
class Stochastic(Protocol):
    """Inference-time randomness that leaves the weights alone, and seeded realisations."""

    def stochastic(self, p: float | None = None, *, seed: int) -> contextlib.AbstractContextManager: ...

    def realizations(self, audio, n: int, seed: int = 0, *, p: float | None = None) -> "Realizations": ...


@runtime_checkable
class Aligner(Protocol):
    """Forced alignment of transcripts onto frames (HMM state targets for PGD)."""

    def align(self, batch: AudioBatch, transcripts: Sequence[str]) -> list[np.ndarray]: ...


@runtime_checkable
class DifferentiableRealizations(Protocol):
    """The loss toward a target under exactly the masks :meth:`Stochastic.realizations` draws."""

    def realization_loss(self, waveform: torch.Tensor, target: str, n: int, seed: int, *, p: float,
                         indices: Sequence[int]) -> torch.Tensor: ...


@runtime_checkable
class BatchedRealizations(Protocol):
    """:meth:`Stochastic.realizations` of several waveforms in one pass, one result per waveform.

    Each result must equal the utterance's own ``realizations(audio, n, seed, p=p)``: the same
    masks and transcripts, posteriors within float rounding, padding cut off. A recogniser with
    it also transcribes a padded batch as it transcribes each utterance alone (the detector
    relies on both when it batches).
    """

    def realizations_batch(self, audios: Sequence, n: int, seed: int = 0, *,
                           p: float | None = None) -> list["Realizations"]: ...


#: Capability names accepted by :func:`require`, with the protocol each stands for.
CAPABILITIES = {"transcribe": Transcriber, "loss": DifferentiableLoss, "posteriors": Posteriors,
                "stochastic": Stochastic, "align": Aligner, "realization_loss": DifferentiableRealizations,
                "batched_realizations": BatchedRealizations}


def missing_capabilities(recognizer, *capabilities: str) -> list[str]:
    """The capabilities in ``capabilities`` that ``recognizer`` lacks.

    Example:
        >>> missing_capabilities(object(), "transcribe", "loss")
        ['transcribe', 'loss']
    """
    unknown = [c for c in capabilities if c not in CAPABILITIES]
    if unknown:
        raise ConfigError(f"unknown capability {unknown[0]!r}; choose from {', '.join(CAPABILITIES)}")
    return [c for c in capabilities if not isinstance(recognizer, CAPABILITIES[c])]


def require(recognizer, *capabilities: str, user: str) -> None:
    """Refuse ``recognizer`` unless it has every capability ``user`` (an attack or feature) needs.

    Example:
        >>> require(object(), "loss", user="cw attack")
        Traceback (most recent call last):
        ...
        asrguard.errors.MissingCapabilityError: cw attack needs a recogniser with loss (DifferentiableLoss); object lacks it
    """
    missing = missing_capabilities(recognizer, *capabilities)
    if missing:
        names = ", ".join(f"{c} ({CAPABILITIES[c].__name__})" for c in missing)
        raise MissingCapabilityError(
            f"{user} needs a recogniser with {names}; {type(recognizer).__name__} lacks "
            f"{'it' if len(missing) == 1 else 'them'}")


class Recognizer(abc.ABC):
    """Abstract recogniser. Subclasses set ``sample_rate`` and implement the abstract methods."""

    sample_rate: int
    #: The :data:`MASK_SCHEMES` that :meth:`realizations` takes as ``masks=``; "iid" alone means no
    #: ``masks`` argument at all (draw through :func:`asrguard.uncertainty.realizations.draw_realizations`).
    mask_schemes: tuple[str, ...] = ("iid",)

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
    def stochastic(self, p: float | None = None, *, seed: int) -> contextlib.AbstractContextManager:
        """Context manager that switches on inference-time randomness without changing weights.

        ``seed`` is required: the draws come from a generator seeded with it, never from a global
        RNG (:func:`asrguard.rng.require_seed` refuses None)."""

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

    @property
    @abc.abstractmethod
    def vocabulary(self) -> Sequence[str]:
        """The output symbols that :meth:`log_probs` scores, in index order."""

    def fingerprint(self) -> str | None:
        """SHA-256 of the weights (and config) when loaded from files, else None."""
        return getattr(self, "checksum", None)

    def normalize_text(self, text: str) -> str:
        """The form in which two transcripts are compared (attack success, P^char): as is."""
        return text

    def target_fits(self, batch: AudioBatch, targets: Sequence[str]) -> list[bool]:
        """Whether each target can be emitted for its input (by default: any non-empty target)."""
        return [bool(t.strip()) for t in targets]

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
