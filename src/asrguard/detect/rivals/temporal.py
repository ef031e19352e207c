"""Temporal dependency (Yang, Li, Chen & Song, ICLR 2019).

Speech is consistent in time: transcribing the first part of an utterance gives (about) the
start of the whole utterance's transcript. An adversarial perturbation is optimised over the
whole input for the whole target, so its first part usually transcribes to something else.
For each fraction ``k`` in ``fractions`` the detector transcribes the first ``k`` of the audio
and compares that with the prefix of the whole transcript of the same number of characters (if
the part transcribes to nothing, with the first ``k`` of the whole transcript's characters), by
:func:`~asrguard.detect.rivals.base.transcript_distance` in the recogniser's ``normalize_text``
form. The score is the largest distance over the fractions. Nothing is learned but the threshold.

Example:
    >>> det = TemporalDetector(rec, fractions=(0.5,)).fit(benign)    # doctest: +SKIP
    >>> det.explain("x.wav")["evidence"]["compared"][0]["prefix"]      # doctest: +SKIP
    'open the'
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import ConfigError
from ..detector import DEFAULT_TARGET_FPR
from .base import RivalDetector, max_with_tie_break, transcript_distance


def matching_prefix(whole: str, part: str, fraction: float) -> str:
    """The prefix of ``whole`` that ``part`` (the transcript of the first ``fraction``) should match.

    Example:
        >>> matching_prefix("one two three four", "one tw", 0.5), matching_prefix("one two", "", 0.5)
        ('one tw', 'one ')
    """
    length = len(part) if part else int(round(fraction * len(whole)))
    return whole[:length]


def cut_samples(n_samples: int, fraction: float) -> int:
    """How many samples "the first ``fraction``" of an input of ``n_samples`` is (at least one).

    Example:
        >>> cut_samples(16000, 0.5), cut_samples(1, 0.3)
        (8000, 1)
    """
    return max(1, int(round(fraction * n_samples)))


def _fractions(value) -> tuple[float, ...]:
    # a CLI setting arrives as "0.5,0.7" or 0.5; Python callers pass a sequence
    if isinstance(value, str):
        value = value.split(",")
    elif isinstance(value, (int, float)):
        value = [value]
    try:
        fractions = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"fractions must be numbers in (0, 1), got {value!r}") from None
    if not fractions or any(not 0.0 < f < 1.0 for f in fractions):
        raise ConfigError(f"fractions must be numbers in (0, 1), got {value!r}")
    return fractions


class TemporalDetector(RivalDetector):
    """Distance between the transcript of the first part and the prefix of the whole transcript."""

    kind = "temporal"

    def __init__(self, recognizer, *, fractions: Sequence[float] | float | str = (0.5,),
                 target_fpr: float = DEFAULT_TARGET_FPR, seed: int = 0):
        super().__init__(recognizer, target_fpr=target_fpr, seed=seed)
        self.fractions = _fractions(fractions)
        self.feature_names = [f"distance_first_{f:g}" for f in self.fractions]

    def settings(self) -> dict:
        return {"fractions": list(self.fractions), "seed": self.seed}

    @property
    def rule(self) -> str:
        return "temporal-max"

    @property
    def passes(self) -> int:
        return 1 + len(self.fractions)

    def _measure(self, waveform: np.ndarray) -> tuple[np.ndarray, dict]:
        cuts = [cut_samples(len(waveform), f) for f in self.fractions]
        transcripts = self.recognizer.transcribe([waveform] + [waveform[:c] for c in cuts])
        normalize = self.recognizer.normalize_text
        whole = normalize(transcripts[0])
        compared = []
        for fraction, cut, part in zip(self.fractions, cuts, transcripts[1:]):
            prefix = matching_prefix(whole, normalize(part), fraction)
            compared.append({"what": f"first {fraction:g}", "fraction": fraction, "samples": cut,
                             "transcript": part, "prefix": prefix,
                             "distance": transcript_distance(prefix, normalize(part))})
        features = np.asarray([c["distance"] for c in compared], dtype=np.float64)
        return features, {"transcript": transcripts[0], "compared": compared}

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return max_with_tie_break(rows)


__all__ = ["TemporalDetector", "cut_samples", "matching_prefix"]
