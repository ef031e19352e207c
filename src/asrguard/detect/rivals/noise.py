"""Noise flooding (Rajaratnam & Kalita, IEEE ISSPIT 2018).

Adversarial perturbations are brittle: random noise that leaves a benign transcript alone
often changes an adversarial one. The detector adds band-limited Gaussian noise (between
``band_hz``) at each signal-to-noise ratio in ``snr_db`` (relative to the input's RMS),
``draws`` times per level, transcribes every noisy copy (one batch) and measures how far each
transcript moved from the input's own
(:func:`~asrguard.detect.rivals.base.transcript_distance`, ``normalize_text`` form). The score
is the mean change (``reduce="mean"``, default) or the smallest (``"min"``: every copy must
move). Noise is drawn from seeds derived with :func:`asrguard.rng.derive` from ``seed``, the
level and the draw, so a score reproduces exactly; :meth:`set_mask_seed` with ``"random"`` makes
the noise secret. Nothing is learned but the threshold.

Example:
    >>> det = NoiseFloodDetector(rec, snr_db=(30, 20)).fit(benign)     # doctest: +SKIP
    >>> det.explain("x.wav")["features"]                               # doctest: +SKIP
    {'distance_snr30_draw0': 0.0, ...}
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...errors import ConfigError
from ...rng import generator
from ..detector import DEFAULT_TARGET_FPR
from .base import RivalDetector, transcript_distance

REDUCTIONS = ("mean", "min")


def band_noise(n: int, rate: int, band_hz: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-RMS Gaussian noise with its spectrum zeroed outside ``band_hz``.

    Example:
        >>> x = band_noise(16000, 16000, (500, 4000), np.random.default_rng(0))
        >>> round(float(np.sqrt(np.mean(x ** 2))), 3)
        1.0
    """
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    spectrum[(freqs < band_hz[0]) | (freqs > band_hz[1])] = 0.0
    noise = np.fft.irfft(spectrum, n)
    rms = math.sqrt(float(np.mean(noise ** 2)))
    return noise / rms if rms > 0 else noise


def _numbers(value, what: str) -> tuple[float, ...]:
    # a CLI setting arrives as "30,20" or 30; Python callers pass a sequence
    if isinstance(value, str):
        value = value.split(",")
    elif isinstance(value, (int, float)):
        value = [value]
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers, got {value!r}") from None


class NoiseFloodDetector(RivalDetector):
    """How much the transcript changes under band-limited noise at a few levels."""

    kind = "noise-flood"

    def __init__(self, recognizer, *, snr_db: Sequence[float] | float | str = (30.0, 20.0),
                 band_hz: Sequence[float] | str = (300.0, 4000.0), draws: int = 2, reduce: str = "mean",
                 target_fpr: float = DEFAULT_TARGET_FPR, seed: int = 0):
        super().__init__(recognizer, target_fpr=target_fpr, seed=seed)
        self.snr_db = _numbers(snr_db, "snr_db")
        band = _numbers(band_hz, "band_hz")
        nyquist = recognizer.sample_rate / 2
        if not self.snr_db or any(not math.isfinite(s) for s in self.snr_db):
            raise ConfigError(f"snr_db must be one or more finite numbers, got {snr_db!r}")
        if len(band) != 2 or not 0 <= band[0] < band[1] <= nyquist:
            raise ConfigError(f"band_hz must be (low, high) with 0 <= low < high <= {nyquist:g}, got {band_hz!r}")
        if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
            raise ConfigError(f"draws must be a positive integer, got {draws!r}")
        if reduce not in REDUCTIONS:
            raise ConfigError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
        self.band_hz, self.draws, self.reduce = (band[0], band[1]), int(draws), reduce
        self.copies = [(snr, d) for snr in self.snr_db for d in range(self.draws)]
        self.feature_names = [f"distance_snr{snr:g}_draw{d}" for snr, d in self.copies]

    def settings(self) -> dict:
        return {"snr_db": list(self.snr_db), "band_hz": list(self.band_hz), "draws": self.draws,
                "reduce": self.reduce, "seed": self.seed}

    @property
    def rule(self) -> str:
        return f"noise-flood-{self.reduce}"

    @property
    def passes(self) -> int:
        return 1 + len(self.copies)

    def noisy_copies(self, waveform: np.ndarray) -> list[np.ndarray]:
        """The flooded copies of ``waveform``, in :attr:`feature_names` order (deterministic given the seed)."""
        x = np.asarray(waveform, dtype=np.float64)
        rms = math.sqrt(float(np.mean(x ** 2)))
        out = []
        for index, (snr, draw) in enumerate(self.copies):
            rng = generator(self.seed, "noise-flood", index)
            noise = band_noise(len(x), self.recognizer.sample_rate, self.band_hz, rng) * rms / 10 ** (snr / 20)
            out.append(np.clip(x + noise, -1.0, 1.0).astype(np.float32))
        return out

    copies_of = noisy_copies

    def _measure(self, waveform: np.ndarray) -> tuple[np.ndarray, dict]:
        return self.compare_transcripts(self.recognizer.transcribe([waveform] + self.noisy_copies(waveform)))

    def compare_copies(self, waveform: np.ndarray, copies, transcripts: list[str]) -> tuple[np.ndarray, dict]:
        """As :meth:`compare_transcripts`; the waveform and copies are not needed (the combined detector's call)."""
        return self.compare_transcripts(transcripts)

    def compare_transcripts(self, transcripts: list[str]) -> tuple[np.ndarray, dict]:
        """Features and evidence from the transcripts of the input and of :meth:`noisy_copies`, in that order."""
        normalize = self.recognizer.normalize_text
        reference = normalize(transcripts[0])
        compared = [{"what": f"snr {snr:g} dB, draw {d}", "snr_db": snr, "transcript": t,
                     "distance": transcript_distance(reference, normalize(t))}
                    for (snr, d), t in zip(self.copies, transcripts[1:])]
        features = np.asarray([c["distance"] for c in compared], dtype=np.float64)
        return features, {"transcript": transcripts[0], "band_hz": list(self.band_hz), "compared": compared}

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return rows.mean(axis=1) if self.reduce == "mean" else rows.min(axis=1)


__all__ = ["NoiseFloodDetector", "REDUCTIONS", "band_noise"]
