"""Stage 2 of the Jayashankar et al. (2020) reproduction: uncertainty features, cached per item.

Every item's features at one realisation setting live in their own JSON file (written
atomically), so an interrupted run resumes where it stopped.

Example:
    >>> s = FeatureSet(["a", "b"], ["a", "b"], FeatureTable({"entropy": np.arange(2.0)}), [None, None])
    >>> s.select({"a"}).ids
    ['a']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ...attacks.runner import safe_name
from ...audio import load_audio
from ...errors import ConfigError
from ...uncertainty.features import FeatureExtractor, FeatureTable, UncertaintyFeatures
from ..common import ProgressBars, write_json
from .config import Settings


def _safe_name(item_id: str) -> str:
    return safe_name(item_id)


class FeatureCache:
    """One JSON file per (set, item, realisation settings), written atomically.

    Example:
        >>> cache = FeatureCache("runs/j/features", recognizer, FeatureExtractor(n=50, p=0.1))  # doctest: +SKIP
        >>> features = cache.get("benign", item.id, lambda: item.waveform)                     # doctest: +SKIP
    """

    def __init__(self, root: Path, recognizer, extractor: FeatureExtractor):
        c = extractor.config
        checksum = (getattr(recognizer, "checksum", None) or "unsaved")[:12]
        settings = f"n{c.n}-p{c.p:g}-s{c.seed}-C{c.max_distance}"
        if c.masks != "iid":
            settings += f"-{c.masks}"
        scheme = recognizer.realization_scheme()
        if scheme is not None:  # features drawn another way are not reused
            settings += "-" + scheme.replace("/", "-")
        self.folder = Path(root) / checksum / settings
        self.recognizer, self.extractor = recognizer, extractor

    def path(self, kind: str, item_id: str) -> Path:
        return self.folder / kind / f"{_safe_name(item_id)}.json"

    def get(self, kind: str, item_id: str, waveform: Callable[[], np.ndarray]) -> UncertaintyFeatures:
        path = self.path(kind, item_id)
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("id") == item_id:
                    return UncertaintyFeatures.from_dict(data["features"])
            except (OSError, ValueError, KeyError, ConfigError):
                pass  # unreadable: recompute
        features = self.extractor(self.recognizer, waveform(), name=item_id)
        write_json(path, {"id": item_id, "kind": kind, "features": features.to_dict()})
        return features


@dataclass
class FeatureSet:
    """Features of one set (benign or one attack) at one p: ids, source ids, table, records.

    Example:
        >>> s = FeatureSet(["a", "b"], ["a", "b"], FeatureTable({"entropy": np.arange(2.0)}), [None, None])
        >>> s.select({"b"}).table["entropy"].ravel().tolist(), len(s.plus(s))
        ([1.0], 4)
    """

    ids: list
    sources: list
    table: FeatureTable | None
    records: list

    def __len__(self) -> int:
        return len(self.ids)

    def plus(self, other: "FeatureSet") -> "FeatureSet":
        """Both sets' examples in one (``self`` first)."""
        if not len(other):
            return self
        if not len(self):
            return other
        return FeatureSet(self.ids + other.ids, self.sources + other.sources,
                          FeatureTable.concat([self.table, other.table]), self.records + other.records)

    def select(self, sources: set) -> "FeatureSet":
        index = [i for i, s in enumerate(self.sources) if s in sources]
        return FeatureSet([self.ids[i] for i in index], [self.sources[i] for i in index],
                          self.table.take(np.array(index, dtype=int)) if index else None,
                          [self.records[i] for i in index])


def feature_set(cache: FeatureCache, kind: str, entries: Sequence[tuple[str, str, Callable]], tick) -> FeatureSet:
    """The features of ``entries`` (``(id, source id, waveform loader)``), from ``cache`` or computed into it.

    Example:
        >>> benign = feature_set(cache, "benign", [(i.id, i.id, lambda i=i: i.waveform) for i in items],
        ...                      lambda: None)  # doctest: +SKIP
    """
    ids, sources, records = [], [], []
    for item_id, source, loader in entries:
        records.append(cache.get(kind, item_id, loader))
        ids.append(item_id)
        sources.append(source)
        tick()
    return FeatureSet(ids, sources, FeatureTable.stack(records) if records else None, records)


def feature_stage(out_dir: Path, recognizer, settings: Settings, speech: list, urban: list, crafted: dict,
                  progress: bool) -> dict:
    """Every set's features: ``{(set name, p): FeatureSet}``, benign at both p, the training attack and CW too.

    Example:
        >>> sets = feature_stage(Path("runs/j"), recognizer, settings, speech, [], crafted, False)  # doctest: +SKIP
        >>> sorted(sets)[:2]  # doctest: +SKIP
        [('benign', 0.05), ('benign', 0.1)]
    """
    rate = recognizer.sample_rate
    sets: dict = {}
    plan = []  # (key, kind label for the cache, p, entries)
    for p in (settings.p_main, settings.p_low):
        plan.append((("benign", p), "benign", p, [(i.id, i.id, (lambda i=i: i.waveform)) for i in speech]))
    if urban:
        plan.append((("benign-us", settings.p_main), "benign-us", settings.p_main,
                     [(i.id, i.id, (lambda i=i: i.waveform)) for i in urban]))
    for name, info in crafted.items():
        folder = info["folder"]
        ok = [r for r in info["rows"].values() if r.get("success") and r.get("audio")]
        entries = [(r["id"], r["id"], (lambda r=r, folder=folder: load_audio(folder / r["audio"], rate)[0]))
                   for r in ok]
        ps = (settings.p_main, settings.p_low) if name in ("cw", settings.train_attack) else (settings.p_main,)
        for p in ps:
            plan.append(((name, p), f"{name}-{info['config_hash']}", p, entries))
    total = sum(len(entries) for *_, entries in plan)
    with ProgressBars(progress, stderr=True) as bars:
        tick = bars.task("uncertainty features", total)
        for key, kind, p, entries in plan:
            extractor = settings.extractor(p)
            cache = FeatureCache(out_dir / "features", recognizer, extractor)
            sets[key] = feature_set(cache, kind, entries, tick)
    return sets


__all__ = ["FeatureCache", "FeatureSet", "feature_set", "feature_stage"]
