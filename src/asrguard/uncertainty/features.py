"""Detector features from one pass of ``I`` dropout realisations.

:class:`FeatureExtractor` draws the realisations once (seeded) and computes everything the
classifiers use:

* ``char_moments`` (4): raw moments of ``P^char`` (edit distances to the medoid transcript);
* ``char_hist`` (C + 1): the full ``P^char`` histogram over distances ``0 .. C`` (C = 19);
* ``prob_moments`` (4): raw moments of ``P^prob`` (length-normalised distances of the
  posterior sequences to their mean);
* ``entropy``, ``mutual_information``, ``variance``, ``akld`` (the paper's consecutive-pair
  form) and ``akld_pairs`` (order-independent): measures of the CTC posteriors from
  :mod:`asrguard.uncertainty.measures`, each the maximum over frames (one value).

Many inputs are stacked into a :class:`FeatureTable` (name -> ``(N, D)`` array), the input
of :mod:`asrguard.detect.classifiers`.

Example:
    >>> extractor = FeatureExtractor(n=50, p=0.1, seed=0)          # doctest: +SKIP
    >>> f = extractor(recognizer, waveform)                        # doctest: +SKIP
    >>> f.char_hist.sum(), f.vector("char_moments").shape          # doctest: +SKIP
    (50, (4,))
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..asr.base import Realizations, Recognizer, require
from ..errors import ConfigError
from . import measures as _measures
from .distributions import DEFAULT_MAX_DISTANCE, N_MOMENTS, char_distances, char_histogram, moments, prob_distances
from .realizations import DEFAULT_N, DEFAULT_P, DEFAULT_SEED, check_settings, draw_realizations, draw_realizations_batch

#: Posterior measures computed for every input (scalars: maximum over frames).
POSTERIOR_MEASURES = ("entropy", "mutual_information", "variance", "akld", "akld_pairs")
VECTOR_GROUPS = ("char_moments", "char_hist", "prob_moments")
FEATURE_GROUPS = VECTOR_GROUPS + POSTERIOR_MEASURES


@dataclass
class UncertaintyFeatures:
    """Everything measured on one input's realisations."""

    transcripts: list[str]
    medoid: str
    char_distances: np.ndarray
    char_hist: np.ndarray
    char_moments: np.ndarray
    prob_distances: np.ndarray
    prob_moments: np.ndarray
    measures: dict[str, float] = field(default_factory=dict)

    def vector(self, group: str) -> np.ndarray:
        """One feature group as a 1-D float array."""
        if group in VECTOR_GROUPS:
            return np.asarray(getattr(self, group), dtype=np.float64)
        if group in self.measures:
            return np.array([self.measures[group]], dtype=np.float64)
        raise ConfigError(f"unknown feature group {group!r}; choose from {', '.join(FEATURE_GROUPS)}")

    def distinct(self) -> list[tuple[str, int]]:
        """Distinct transcripts with their counts, most frequent first."""
        return Counter(self.transcripts).most_common()

    def to_dict(self) -> dict:
        """JSON-ready (used to cache features per item)."""
        return {
            "transcripts": list(self.transcripts), "medoid": self.medoid,
            "char_distances": self.char_distances.tolist(), "char_hist": self.char_hist.tolist(),
            "char_moments": self.char_moments.tolist(), "prob_distances": self.prob_distances.tolist(),
            "prob_moments": self.prob_moments.tolist(), "measures": dict(self.measures),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "UncertaintyFeatures":
        try:
            return cls(
                transcripts=list(data["transcripts"]), medoid=str(data["medoid"]),
                char_distances=np.asarray(data["char_distances"], dtype=np.int64),
                char_hist=np.asarray(data["char_hist"], dtype=np.int64),
                char_moments=np.asarray(data["char_moments"], dtype=np.float64),
                prob_distances=np.asarray(data["prob_distances"], dtype=np.float64),
                prob_moments=np.asarray(data["prob_moments"], dtype=np.float64),
                measures={k: float(v) for k, v in data["measures"].items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a valid feature record ({exc})") from None


class FeatureTable:
    """Feature group name -> ``(N, D)`` float array, all with the same number of rows ``N``.

    Example:
        >>> t = FeatureTable({"entropy": np.zeros((3, 1)), "char_moments": np.ones((3, 4))})
        >>> t.n_rows, t.matrix(["char_moments", "entropy"]).shape
        (3, (3, 5))
    """

    def __init__(self, groups: Mapping[str, np.ndarray]):
        self.groups = {k: np.asarray(v, dtype=np.float64).reshape(len(v), -1) for k, v in groups.items()}
        rows = {v.shape[0] for v in self.groups.values()}
        if len(rows) > 1:
            raise ConfigError(f"feature groups have different numbers of rows: {sorted(rows)}")

    @property
    def n_rows(self) -> int:
        return next(iter(self.groups.values())).shape[0] if self.groups else 0

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, group: str) -> np.ndarray:
        if group not in self.groups:
            raise ConfigError(f"feature table lacks {group!r}; it has {sorted(self.groups)}")
        return self.groups[group]

    def __contains__(self, group: str) -> bool:
        return group in self.groups

    def keys(self):
        return self.groups.keys()

    @classmethod
    def stack(cls, items: Sequence[UncertaintyFeatures], groups: Iterable[str] = FEATURE_GROUPS) -> "FeatureTable":
        items = list(items)
        if not items:
            raise ConfigError("no feature records to stack")
        return cls({g: np.stack([f.vector(g) for f in items]) for g in groups})

    def take(self, index) -> "FeatureTable":
        return FeatureTable({k: v[index] for k, v in self.groups.items()})

    @classmethod
    def concat(cls, tables: Sequence["FeatureTable"]) -> "FeatureTable":
        keys = set(tables[0].groups)
        if any(set(t.groups) != keys for t in tables):
            raise ConfigError("feature tables have different groups")
        return cls({k: np.concatenate([t.groups[k] for t in tables]) for k in tables[0].groups})

    def matrix(self, groups: Sequence[str]) -> np.ndarray:
        """The named groups side by side, ``(N, sum of widths)``."""
        return np.concatenate([self[g] for g in groups], axis=1)


@dataclass
class FeatureConfig:
    n: int = DEFAULT_N
    p: float = DEFAULT_P
    seed: int = DEFAULT_SEED
    max_distance: int = DEFAULT_MAX_DISTANCE
    masks: str = "iid"  # "balanced": stratified masks, less seed noise at the same I (asrguard.asr.ctc.masks)

    def __post_init__(self):
        check_settings(self.n, self.p, self.masks)
        if self.max_distance < 1:
            raise ConfigError(f"max_distance must be >= 1, got {self.max_distance}")


class FeatureExtractor:
    """Compute all features of :mod:`asrguard.uncertainty.features` from one realisation pass."""

    def __init__(self, n: int = DEFAULT_N, p: float = DEFAULT_P, seed: int = DEFAULT_SEED,
                 max_distance: int = DEFAULT_MAX_DISTANCE, masks: str = "iid"):
        self.config = FeatureConfig(int(n), float(p), int(seed), int(max_distance), str(masks))

    @property
    def n(self) -> int:
        return self.config.n

    @property
    def p(self) -> float:
        return self.config.p

    def __repr__(self) -> str:
        c = self.config
        masks = "" if c.masks == "iid" else f", masks={c.masks!r}"
        return f"FeatureExtractor(n={c.n}, p={c.p}, seed={c.seed}, max_distance={c.max_distance}{masks})"

    def replace(self, **changes) -> "FeatureExtractor":
        """A new extractor with ``changes`` to the config (validated like any other).

        Example:
            >>> FeatureExtractor(n=20).replace(seed=3, masks="balanced")
            FeatureExtractor(n=20, p=0.1, seed=3, max_distance=19, masks='balanced')
        """
        return FeatureExtractor(**{**asdict(self.config), **changes})

    def to_dict(self) -> dict:
        # "iid" is left out, so configs (and the cache keys made from them) written before masks existed stay valid
        return {k: v for k, v in asdict(self.config).items() if k != "masks" or v != "iid"}

    @classmethod
    def from_dict(cls, data: Mapping) -> "FeatureExtractor":
        try:
            return cls(**{k: data[k] for k in ("n", "p", "seed", "max_distance")}, masks=data.get("masks", "iid"))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a valid feature-extractor config ({exc})") from None

    def realizations(self, recognizer: Recognizer, audio, *, name: str = "audio") -> Realizations:
        require(recognizer, "stochastic", user="uncertainty features (dropout realisations)")
        c = self.config
        return draw_realizations(recognizer, audio, c.n, p=c.p, seed=c.seed, name=name, masks=c.masks)

    def __call__(self, recognizer: Recognizer, audio, *, name: str = "audio") -> UncertaintyFeatures:
        return self._features(recognizer, self.realizations(recognizer, audio, name=name))

    def batch(self, recognizer: Recognizer, audios: Sequence, *, names: Sequence[str] | None = None
              ) -> list[UncertaintyFeatures]:
        """Features of several inputs from one realisation pass where the recogniser can batch
        (:func:`~asrguard.uncertainty.realizations.draw_realizations_batch`); each equals ``self(recognizer, audio)``.

        Example:
            >>> short, long = FeatureExtractor(n=50).batch(recognizer, [short_clip, long_clip])  # doctest: +SKIP
        """
        require(recognizer, "stochastic", user="uncertainty features (dropout realisations)")
        c = self.config
        drawn = draw_realizations_batch(recognizer, audios, c.n, p=c.p, seed=c.seed, names=names, masks=c.masks)
        return [self._features(recognizer, r) for r in drawn]

    def _features(self, recognizer: Recognizer, drawn: Realizations) -> UncertaintyFeatures:
        normalize = getattr(recognizer, "normalize_text", None)
        if normalize is not None:  # P^char compares what the recogniser counts as the same (Whisper: case, punctuation)
            drawn = dataclasses.replace(drawn, transcripts=[normalize(t) for t in drawn.transcripts])
        return self.from_realizations(drawn)

    def extract_many(self, recognizer: Recognizer, waveforms: Sequence, *, names: Sequence[str] | None = None
                     ) -> FeatureTable:
        """Features of several waveforms stacked into a :class:`FeatureTable`."""
        items = [self(recognizer, w, name=names[i] if names else f"audio[{i}]") for i, w in enumerate(waveforms)]
        return FeatureTable.stack(items)

    def from_realizations(self, r: Realizations) -> UncertaintyFeatures:
        """Features of realisations already drawn (``r.log_probs`` is ``(I, T, C)``)."""
        log_probs = r.log_probs
        if log_probs.ndim != 3 or log_probs.shape[0] != len(r.transcripts):
            raise ConfigError(f"realisations disagree: {len(r.transcripts)} transcripts but posteriors "
                              f"{tuple(log_probs.shape)}")
        length = int(r.length) if r.length else int(log_probs.shape[1])
        log_probs = log_probs[:, :length]
        distances, centre = char_distances(r.transcripts)
        prob = prob_distances(log_probs)
        scores = _measures.utterance_scores(log_probs=log_probs, measures=POSTERIOR_MEASURES)
        return UncertaintyFeatures(
            transcripts=list(r.transcripts), medoid=centre, char_distances=distances,
            char_hist=char_histogram(distances, self.config.max_distance),
            char_moments=moments(distances, N_MOMENTS), prob_distances=prob,
            prob_moments=moments(prob, N_MOMENTS),
            measures={m: float(v) for m, v in scores.items()},
        )


__all__ = ["FEATURE_GROUPS", "POSTERIOR_MEASURES", "FeatureConfig", "FeatureExtractor", "FeatureTable",
           "UncertaintyFeatures"]
