"""The attack interface: ``Attack.generate(audio_batch, targets) -> list[AttackResult]``.

Attacks see the recogniser only through :mod:`asrguard.asr.base` (``loss``, ``log_probs``,
``decode``, ``stochastic``), so every attack works on any recogniser behind that interface.

Conventions shared by every attack:

* Amplitude is float on the [-1, 1] scale. The papers state bounds in int16 units; multiply
  a float value by 32768 to get them (a float bound of 0.061 is the classic 2000 int16).
* ``dB(x) = 20·log10(max|x|)`` and the distortion is ``dB_x(δ) = dB(δ) − dB(x)`` with
  ``δ = x_adv − x`` computed on the returned float32 waveform, after clipping to [-1, 1].
* Batches of different lengths are zero-padded; the padding never receives perturbation and
  never enters a loss (the recogniser zeroes it as well).
* The transcript "with dropout" is one draw at the defence rate ``defence_p`` (0.1, as in the
  paper's defence) from a seeded generator, computed one utterance at a time so that it does
  not depend on how items were batched.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..asr.base import AudioBatch, Recognizer, Stochastic, require
from ..audio import db, snr_db
from ..errors import ConfigError
from ..text import encode, normalize_transcript

#: Multiply a float amplitude by this to get the int16 value the papers quote.
INT16_SCALE = 32768.0


@dataclass
class AttackConfig:
    """Settings every attack shares.

    Attributes:
        seed: seeds every random draw the attack makes (initialisation, dropout masks).
        defence_p: dropout rate of the defence; each result carries one seeded transcript at
            this rate.
        defence_seed: seed of that dropout draw.
    """

    seed: int = 0
    defence_p: float = 0.1
    defence_seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.defence_p < 1.0:
            raise ConfigError(f"defence_p must be in [0, 1), got {self.defence_p}")


def config_hash(config: Any, name: str = "") -> str:
    """Stable 12-hex-digit hash of an attack name plus its config (dataclass or dict).

    Example:
        >>> config_hash({"a": 1}, "cw") == config_hash({"a": 1}, "cw")
        True
    """
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    text = json.dumps({"attack": name, "config": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass
class AttackResult:
    """One adversarial example and everything measured on it.

    Attributes:
        waveform: the adversarial audio, float32 in [-1, 1], same length as the input.
        original_transcript: the recogniser's transcript of the clean input.
        transcript: deterministic transcript of ``waveform`` (no dropout).
        transcript_dropout: transcript with dropout at ``config["defence_p"]`` (seeded).
        success: targeted attacks: ``transcript == target``; untargeted: the transcript changed.
        db_x_delta: ``dB(δ) − dB(x)``; ``-inf`` when nothing was changed.
        snr_db: ``10·log10(Σx² / Σδ²)``.
        iterations: optimisation steps spent on this utterance.
        wall_seconds: this utterance's share of the batch's wall time (batch time / batch size).
        config: the attack's full config as a dict (``attack`` and ``config_hash`` included).
        target: the target transcript, ``None`` for untargeted attacks.
        extra: attack-specific figures (masked-energy share, transcripts after denoising, ...).
    """

    waveform: np.ndarray
    original_transcript: str
    transcript: str
    transcript_dropout: str
    success: bool
    db_x_delta: float
    snr_db: float
    iterations: int
    wall_seconds: float
    config: dict
    target: str | None
    extra: dict = field(default_factory=dict)

    @property
    def success_with_dropout(self) -> bool:
        if self.target is None:
            return self.transcript_dropout != self.original_transcript
        return self.transcript_dropout == normalize_transcript(self.target)

    def to_record(self) -> dict:
        """JSON-ready summary without the waveform."""
        return {
            "target": self.target,
            "success": bool(self.success),
            "success_with_dropout": bool(self.success_with_dropout),
            "db_x_delta": _finite_or_none(self.db_x_delta),
            "snr_db": _finite_or_none(self.snr_db),
            "original_transcript": self.original_transcript,
            "transcript": self.transcript,
            "transcript_dropout": self.transcript_dropout,
            "iterations": int(self.iterations),
            "wall_seconds": float(self.wall_seconds),
            **{k: v for k, v in self.extra.items() if k != "success_history"},
        }


def _finite_or_none(value: float):
    return float(value) if value is not None and math.isfinite(value) else None


def as_batch(audio, sample_rate: int) -> AudioBatch:
    """Accept an :class:`AudioBatch`, one waveform or a list of waveforms."""
    if isinstance(audio, AudioBatch):
        return audio
    return AudioBatch.from_waveforms(audio, sample_rate)


def required_frames(target: str) -> int:
    """Output frames a CTC model needs to emit ``target``: its length plus one per doubled letter."""
    e = encode(target)
    return len(e) + sum(a == b for a, b in zip(e, e[1:]))


def peak_bound(x: torch.Tensor, lengths: torch.Tensor, tau_db: float) -> torch.Tensor:
    """Per-utterance L∞ bound ``max|x|·10^(−τ/20)`` so that ``dB(δ) ≤ dB(x) − τ``.

    Example: a peak of 0.5 with τ = 20 dB gives 0.05 (1638 in int16 units).
    """
    mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    peak = (x.abs() * mask).amax(dim=1)
    return peak * 10.0 ** (-tau_db / 20.0)


@dataclasses.dataclass
class StepReport:
    """Where an attack's optimisation stands, passed to ``Attack.on_step`` after each success check
    (PGD, which checks nothing while it runs, reports after every step with ``reached`` 0).

    ``transcripts`` maps batch rows checked at this step to their current transcript; ``phase``
    names a later stage of a multi-stage attack (IA's masking stage), empty for the first.
    """

    step: int
    max_steps: int
    active: int
    batch_size: int
    reached: int
    transcripts: dict
    phase: str = ""


class Attack(abc.ABC):
    """Base class. Subclasses set ``name`` and ``config_class`` and implement :meth:`generate`.

    Example:
        >>> attack = CWAttack(recognizer, CWConfig(tau_db=20))     # doctest: +SKIP
        >>> results = attack.generate([waveform], ["open the door"])  # doctest: +SKIP
        >>> results[0].success, results[0].db_x_delta                 # doctest: +SKIP
        (True, -34.2)
    """

    name: str = "attack"
    config_class: type = AttackConfig
    targeted: bool = True
    #: Recogniser capabilities the attack uses (see :mod:`asrguard.asr.base`); checked when built.
    requires: tuple[str, ...] = ("transcribe", "loss")
    #: Called with a :class:`StepReport` during long optimisations (progress bars, the demo).
    on_step = None

    def __init__(self, recognizer: Recognizer, config: AttackConfig | None = None):
        require(recognizer, *self.requires, user=f"the {self.name} attack")
        self.recognizer = recognizer
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ConfigError(f"{type(self).__name__} expects a {self.config_class.__name__}, "
                              f"got {type(self.config).__name__}")

    @property
    def config_hash(self) -> str:
        return config_hash(self.config, self.name)

    def config_dict(self) -> dict:
        return {"attack": self.name, "config_hash": self.config_hash, **dataclasses.asdict(self.config)}

    @abc.abstractmethod
    def generate(self, audio_batch, targets: Sequence[str] | None = None) -> list[AttackResult]:
        """Craft one adversarial example per utterance of ``audio_batch``."""

    # --- helpers shared by the attacks ------------------------------------------------
    def _check_targets(self, batch: AudioBatch, targets) -> list[str]:
        if targets is None or len(targets) != len(batch):
            raise ConfigError(f"{self.name}: need one target per utterance ({len(batch)}), "
                              f"got {None if targets is None else len(targets)}")
        targets = [normalize_transcript(t) for t in targets]
        if any(not t for t in targets):
            raise ConfigError(f"{self.name}: empty target after normalisation")
        return targets

    def _transcribe(self, batch: AudioBatch, p: float | None = None, seed: int = 0) -> list[str]:
        """Transcripts of a batch, under seeded inference randomness at rate ``p`` when given.

        A recogniser without randomness has no dropout transcript: ``""`` when ``p`` is given.
        """
        with torch.no_grad():
            if p is None:
                return self.recognizer.transcribe(batch)
            if not isinstance(self.recognizer, Stochastic):
                return [""] * len(batch)
            with self.recognizer.stochastic(p, seed=seed):
                return self.recognizer.transcribe(batch)

    def _transcribe_each(self, waveforms: Sequence[np.ndarray], *, p: float | None = None,
                         seed: int = 0) -> list[str]:
        """Transcribe one utterance at a time (optionally under seeded dropout at rate ``p``)."""
        rate = self.recognizer.sample_rate
        return [self._transcribe(AudioBatch.from_waveforms([w], rate, validate=False), p, seed)[0]
                for w in waveforms]

    def _defence_transcripts(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        """Each waveform's transcript under the defence: one seeded dropout draw at ``defence_p``."""
        return self._transcribe_each(waveforms, p=self.config.defence_p, seed=self.config.defence_seed)

    def _matches(self, transcripts: Sequence[str], targets: Sequence[str | None]) -> np.ndarray:
        """Boolean per pair: does the transcript say the target, compared as the recogniser
        normalises text (Whisper ignores case and punctuation; the CTC model compares as is)?"""
        norm = self.recognizer.normalize_text
        return np.array([t is not None and norm(h) == norm(t) for h, t in zip(transcripts, targets)], dtype=bool)

    def _finish(self, originals: Sequence[np.ndarray], adversarial: Sequence[np.ndarray],
                targets: Sequence[str | None], iterations: Sequence[int], wall_seconds: float,
                original_transcripts: Sequence[str] | None = None,
                extras: Sequence[dict] | None = None) -> list[AttackResult]:
        """Measure the final examples (unbatched, so nothing depends on batch composition)."""
        adversarial = [np.clip(np.asarray(a, dtype=np.float32), -1.0, 1.0) for a in adversarial]
        if original_transcripts is None:
            original_transcripts = self._transcribe_each(originals)
        transcripts = self._transcribe_each(adversarial)
        dropout = self._defence_transcripts(adversarial)
        config = self.config_dict()
        share = wall_seconds / max(len(adversarial), 1)
        results = []
        for i, (x, a) in enumerate(zip(originals, adversarial)):
            delta = a.astype(np.float64) - np.asarray(x, dtype=np.float64)
            target = targets[i]
            success = (self._matches([transcripts[i]], [target])[0] if target is not None
                       else not self._matches([transcripts[i]], [original_transcripts[i]])[0])
            results.append(AttackResult(
                waveform=a, original_transcript=original_transcripts[i], transcript=transcripts[i],
                transcript_dropout=dropout[i], success=bool(success), db_x_delta=db(delta) - db(x),
                snr_db=snr_db(x, delta), iterations=int(iterations[i]), wall_seconds=share,
                config=config, target=target, extra=dict(extras[i]) if extras is not None else {},
            ))
        return results


class Stopwatch:
    """Wall-clock seconds since creation."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


__all__ = ["StepReport", "Attack", "AttackConfig", "AttackResult", "INT16_SCALE", "as_batch", "config_hash",
           "peak_bound", "required_frames"]
