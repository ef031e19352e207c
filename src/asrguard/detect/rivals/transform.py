"""Transformation consistency (WaveGuard-style; Hussain et al., USENIX Security 2021).

The input is transcribed as it is and after each transformation in ``transforms``
(:mod:`asrguard.detect.rivals.transforms`: ``mel`` extraction and inversion, ``lpc``
resynthesis, ``resample`` down and up, ``quantize``). Benign speech keeps its transcript
through a mild transformation; an adversarial perturbation, fitted to the exact samples, tends
not to. Each feature is the distance between the two transcripts
(:func:`~asrguard.detect.rivals.base.transcript_distance`, compared in the recogniser's
``normalize_text`` form); the score is their maximum (``reduce="max"``, default) or mean. All
copies are transcribed in one batch. Nothing is learned but the threshold.

With ``randomize=True`` each input also gets its own draw of the settings that change what the
recogniser hears (mel resolution, LPC order and cutoff, down-sampling rate, quantisation step;
:func:`~asrguard.detect.rivals.transforms.random_settings`), from the detector's seed: an attacker who
does not know the seed must survive the whole range.

Example:
    >>> det = TransformDetector(rec, transforms=("mel", "lpc")).fit(benign)   # doctest: +SKIP
    >>> det.explain("x.wav")["evidence"]["compared"][0]                       # doctest: +SKIP
    {'what': 'mel', 'transcript': 'open the door', 'distance': 0.0}
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

import torch

from ...asr.base import AudioBatch, require
from ...errors import ConfigError
from ...rng import derive
from ..detector import DEFAULT_TARGET_FPR
from .base import RivalDetector, max_with_tie_break, transcript_distance
from .transforms import TRANSFORMS, down_up, lpc_resynthesis, mel_inversion, quantize, random_settings

REDUCTIONS = ("max", "mean")
MEASURES = ("transcript", "likelihood")


def _names(value, what: str) -> tuple[str, ...]:
    # a CLI setting arrives as "mel,lpc"; Python callers pass a sequence
    names = tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else tuple(value)
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ConfigError(f"{what} must be a non-empty list of names, got {value!r}")
    return names


class TransformDetector(RivalDetector):
    """Distance between the transcript of the input and of transformed copies of it."""

    kind = "transform"

    def __init__(self, recognizer, *, transforms: Sequence[str] | str = ("mel", "lpc", "resample", "quantize"),
                 reduce: str = "max", n_mels: int = 80, griffin_lim_iterations: int = 32, lpc_order: int = 20,
                 lpc_cutoff_hz: float = 1000.0, low_rate: int = 8000, bits: int = 8, randomize: bool = False,
                 measure: str = "transcript", target_fpr: float = DEFAULT_TARGET_FPR, seed: int = 0):
        super().__init__(recognizer, target_fpr=target_fpr, seed=seed)
        self.transforms = _names(transforms, "transforms")
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown or len(set(self.transforms)) != len(self.transforms):
            raise ConfigError(f"transforms must be distinct names from {', '.join(TRANSFORMS)}; got "
                              f"{', '.join(self.transforms)}")
        if reduce not in REDUCTIONS:
            raise ConfigError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
        self.reduce = reduce
        if measure not in MEASURES:
            raise ConfigError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
        if measure == "likelihood":
            require(recognizer, "loss", user="the transform detector with measure=likelihood")
        self.measure = measure
        self.n_mels, self.griffin_lim_iterations = int(n_mels), int(griffin_lim_iterations)
        self.lpc_order, self.lpc_cutoff_hz = int(lpc_order), float(lpc_cutoff_hz)
        self.low_rate, self.bits = int(low_rate), int(bits)
        if not isinstance(randomize, (bool, np.bool_)):
            raise ConfigError(f"randomize must be true or false, got {randomize!r}")
        self.randomize = bool(randomize)
        prefix = "distance" if measure == "transcript" else "nll_gain"
        self.feature_names = [f"{prefix}_{t}" for t in self.transforms]
        # settings errors surface now, not at the first input
        probe = np.zeros(self.recognizer.sample_rate // 10, dtype=np.float32)
        for name in self.transforms:
            self.transform(name, probe)

    def settings(self) -> dict:
        return {"transforms": list(self.transforms), "reduce": self.reduce, "n_mels": self.n_mels,
                "griffin_lim_iterations": self.griffin_lim_iterations, "lpc_order": self.lpc_order,
                "lpc_cutoff_hz": self.lpc_cutoff_hz, "low_rate": self.low_rate, "bits": self.bits, "seed": self.seed,
                # only when set, so the caches and fingerprints of detectors made before the setting stay valid
                **({"randomize": True} if self.randomize else {}),
                **({"measure": self.measure} if self.measure != "transcript" else {})}

    @property
    def rule(self) -> str:
        return f"transform-{self.reduce}"

    @property
    def passes(self) -> int:
        return 1 + len(self.transforms)

    def settings_for(self, name: str, waveform: np.ndarray) -> dict:
        """The settings transformation ``name`` runs with on ``waveform``: this detector's, or with
        ``randomize`` this input's own draw."""
        if name not in TRANSFORMS:
            raise ConfigError(f"unknown transform {name!r}; choose from {', '.join(TRANSFORMS)}")
        if self.randomize:
            return random_settings(name, waveform, self.seed)
        return {"mel": {"n_mels": self.n_mels}, "lpc": {"order": self.lpc_order, "cutoff_hz": self.lpc_cutoff_hz},
                "resample": {"low_rate": self.low_rate}, "quantize": {"bits": self.bits}}[name]

    def transform(self, name: str, waveform: np.ndarray) -> np.ndarray:
        """``waveform`` after the transformation ``name``, with this detector's settings and seed."""
        rate, settings = self.recognizer.sample_rate, self.settings_for(name, waveform)
        if name == "mel":
            return mel_inversion(waveform, rate, iterations=self.griffin_lim_iterations, seed=derive(self.seed, "mel"),
                                 **settings)
        if name == "lpc":
            return lpc_resynthesis(waveform, rate, seed=derive(self.seed, "lpc"), **settings)
        if name == "resample":
            return down_up(waveform, rate, **settings)
        return quantize(waveform, rate, **settings)

    def copies_of(self, waveform: np.ndarray) -> list[np.ndarray]:
        """The transformed copies of ``waveform`` that are transcribed, in :attr:`feature_names` order."""
        return [self.transform(name, waveform) for name in self.transforms]

    def _measure(self, waveform: np.ndarray) -> tuple[np.ndarray, dict]:
        copies = self.copies_of(waveform)
        return self.compare_copies(waveform, copies, self.recognizer.transcribe([waveform] + copies))

    def compare_copies(self, waveform: np.ndarray, copies: Sequence[np.ndarray],
                       transcripts: list[str]) -> tuple[np.ndarray, dict]:
        """Features and evidence of ``waveform`` from its :meth:`copies_of` and the transcripts of both
        (the input's first), by this detector's ``measure``."""
        distances, evidence = self.compare_transcripts(transcripts)
        if self.measure == "transcript":
            return distances, evidence
        gains = self.likelihood_gains(waveform, copies, transcripts[0])
        for entry, gain in zip(evidence["compared"], gains):
            entry["nll_gain"] = float(gain)
        return gains, evidence

    def likelihood_gains(self, waveform: np.ndarray, copies: Sequence[np.ndarray], transcript: str) -> np.ndarray:
        """Per copy: the recogniser's loss of ``transcript`` on it minus on ``waveform``, per second.

        Example (skipped: needs a recogniser with ``loss``):
            >>> det = TransformDetector(rec, measure="likelihood")                           # doctest: +SKIP
            >>> det.likelihood_gains(x, det.copies_of(x), rec.transcribe([x])[0]).shape      # doctest: +SKIP
            (4,)
        """
        if not self.recognizer.normalize_text(transcript):
            return np.zeros(len(copies))  # nothing was heard: no transcript to lose
        rate = self.recognizer.sample_rate
        batch = AudioBatch.from_waveforms([waveform, *copies], rate, validate=False)
        with torch.no_grad():
            losses = self.recognizer.loss(batch, [transcript] * len(batch)).double().numpy()
        return (losses[1:] - losses[0]) / (len(waveform) / rate)

    def compare_transcripts(self, transcripts: list[str]) -> tuple[np.ndarray, dict]:
        """Features and evidence from the transcripts of the input and of :meth:`copies_of`, in that order."""
        normalize = self.recognizer.normalize_text
        reference = normalize(transcripts[0])
        distances = [transcript_distance(reference, normalize(t)) for t in transcripts[1:]]
        compared = [{"what": name, "transcript": t, "distance": d}
                    for name, t, d in zip(self.transforms, transcripts[1:], distances)]
        return np.asarray(distances, dtype=np.float64), {"transcript": transcripts[0], "compared": compared}

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return max_with_tie_break(rows) if self.reduce == "max" else rows.mean(axis=1)


__all__ = ["MEASURES", "REDUCTIONS", "TransformDetector"]
