"""Uncertainty features of many inputs, cached in a resumable JSONL, on any executor.

Each line is ``{"key": ..., "extractor": {n, p, seed, max_distance}, "features": {...}}``,
appended with fsync as each unit ends. A rerun computes only the keys not in the file (lines
written under another extractor config are ignored), so the feature stage of an experiment
can run on Ray workers (:mod:`asrguard.execute`) and resume after any interruption. A unit is
a pure function of its inputs: realisations are seeded, so any worker gives the same features.

Example:
    >>> table = extract_features(rec, FeatureExtractor(n=50), [("a", wave)], "features.jsonl")  # doctest: +SKIP
    >>> table["a"].char_moments                                                               # doctest: +SKIP
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data import read_jsonl
from ..errors import IncompleteRunError
from ..execute import LocalExecutor, RunLock, Unit, append_results, move_recognizer
from .features import FeatureExtractor, UncertaintyFeatures


class FeatureWorker:
    """Features of each ``(key, waveform)`` of a unit with one recogniser (shipped once per worker)."""

    def __init__(self, recognizer, extractor: FeatureExtractor, shard: str | None = None, device: str = "cpu"):
        move_recognizer(recognizer, device)
        self.recognizer, self.extractor = recognizer, extractor

    def __call__(self, unit: Unit) -> list[dict]:
        return [{"key": key, "extractor": self.extractor.to_dict(),
                 "features": self.extractor(self.recognizer, waveform, name=key).to_dict()}
                for key, waveform in unit.payload]


def read_features(path: str | Path, extractor: FeatureExtractor) -> dict[str, UncertaintyFeatures]:
    """The cached features of ``path`` computed under ``extractor``'s config, by key."""
    path = Path(path)
    if not path.exists():
        return {}
    config = extractor.to_dict()
    return {row["key"]: UncertaintyFeatures.from_dict(row["features"])
            for row in read_jsonl(path, allow_partial_tail=True) if row.get("extractor") == config}


def extract_features(recognizer, extractor: FeatureExtractor, inputs: Sequence[tuple[str, np.ndarray]],
                     out: str | Path, *, executor=None, per_unit: int = 1, on_row=None
                     ) -> dict[str, UncertaintyFeatures]:
    """Features for every ``(key, waveform)`` of ``inputs``, read from or added to the JSONL ``out``."""
    out = Path(out)
    executor = executor or LocalExecutor()
    with RunLock(out.parent, name=f".{out.name}.lock"):
        done = read_features(out, extractor)
        todo = [(key, waveform) for key, waveform in dict(inputs).items() if key not in done]
        units = [Unit(k, tuple(todo[s:s + per_unit]), tuple(key for key, _ in todo[s:s + per_unit]))
                 for k, s in enumerate(range(0, len(todo), per_unit))]

        lost = executor.run(functools.partial(FeatureWorker, recognizer, extractor), units,
                            append_results(out, on_row),
                            shard_prefix="features-")
    if lost:
        raise IncompleteRunError(f"{out}: features of {sum(len(u.ids) for u in lost)} inputs were in flight on a "
                                 "worker that died; run again to finish them")
    features = read_features(out, extractor)
    return {key: features[key] for key, _ in inputs}


__all__ = ["FeatureWorker", "extract_features", "read_features"]
