"""What the detector comparison scores: the sets of inputs of a finished reproduction, and their features.

The sets come from a finished ``asrguard reproduce jayashankar2020`` run, split exactly as its
shipped detector was (:func:`asrguard.experiments.jayashankar2020.fit_default_detector`):

* ``fit``: the run's training sources (benign) and their DR examples;
* ``calibration``: the validation sources (benign) plus held-out utterances that are no
  source of the run; each detector's threshold is set on these;
* ``test``: the run's test sources, benign and attacked by every attack of the run, and
  UrbanSound test clips with their US examples;
* ``english-speech``: real English sentences (2–8 s), a benign set no detector was fitted on;
* ``benign_pool``: more held-out utterances of the run's corpora, none of them a source or a
  calibration input. A test cell holds about 30 benign sources, too few to place a 1 % false-positive
  threshold; each speech cell is also scored against its sources plus this pool.

Every input's features are cached, one JSON file per (detector, set, input), so a rerun
resumes. The uncertainty detector reads and extends the run's own feature cache, which
already holds most of its features.

Example:
    >>> sets = comparison_sets("runs/jayashankar2020", recognizer)   # doctest: +SKIP
    >>> sorted(sets.attacks)                                          # doctest: +SKIP
    ['cw', 'dr', 'ia', 'nrr', 'us']
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np

from ...attacks.runner import safe_name
from ...attacks.sources import load_items
from ...audio import load_audio
from ...errors import AsrguardError
from ...evaluate.detection import split_by_source
from ...rng import derive
from ...text import lower_single_spaced
from ...uncertainty.features import FeatureTable
from ..common import write_json
from ..jayashankar2020.attacks import successful_examples
from ..jayashankar2020.config import Settings
from ..jayashankar2020.detector import calibration_items, finished_run, fit_validation_split
from ..jayashankar2020.features import FeatureCache

#: Held-out benign English sentences scored for false alarms (none is used for fitting).
ENGLISH_SECONDS = (2.0, 8.0)


@dataclass
class Entry:
    """One input: the cache kind it is stored under, its id, its source utterance and how to load it."""

    kind: str
    id: str
    source: str
    load: Callable[[], np.ndarray]
    record: dict = field(default_factory=dict)  # the attack's manifest row, for adversarial inputs


@dataclass
class ComparisonSets:
    """The inputs of one comparison (see the module docstring); ``attacks`` maps a name to its test examples."""

    settings: Settings
    run: dict
    fit_benign: list[Entry]
    fit_adversarial: list[Entry]
    calibration: list[Entry]
    test_benign: list[Entry]
    urban_test: list[Entry]
    attacks: dict[str, list[Entry]]
    held_out: dict[str, list[Entry]]
    benign_pool: list[Entry] = field(default_factory=list)

    def test_sources(self) -> set:
        """Ids of every test source: speech and UrbanSound (what an adaptive attack may have attacked)."""
        return {e.source for e in self.test_benign + self.urban_test}

    def benign_for(self, attack: str) -> list[Entry]:
        """The benign inputs an attack's test examples are compared with: their own sources (US: the clips)."""
        pool = self.urban_test if attack == "us" else self.test_benign
        attacked = {e.source for e in self.attacks[attack]}
        return [e for e in pool if e.source in attacked]


def _utterances(kind: str, items) -> list[Entry]:
    return [Entry(kind, it.id, it.id, (lambda it=it: it.waveform), {"transcript": it.transcript}) for it in items]


def misrecognised(recognizer, entries: Sequence[Entry], batch_size: int = 16) -> list[str]:
    """Ids of the benign ``entries`` the recogniser transcribes wrongly: its normalised text (lower case,
    single spaces) unlike the reference's.

    A detector of uncertainty or inconsistency sees such an input as uncertain as it is, so these
    benign inputs tend to score like adversarial ones; the comparison reports its cells without them too.

    Example:
        >>> misrecognised(recognizer, sets.test_benign)   # doctest: +SKIP
        ['speech-commands:speech_commands:up/fdb5155e_nohash_3']
    """
    def normalize(text: str) -> str:  # the recogniser's own comparison form, case and spacing aside
        return lower_single_spaced(recognizer.normalize_text(text))

    wrong = []
    for start in range(0, len(entries), batch_size):
        group = entries[start:start + batch_size]
        for entry, hypothesis in zip(group, recognizer.transcribe([e.load() for e in group])):
            if normalize(hypothesis) != normalize(entry.record.get("transcript", "")):
                wrong.append(entry.id)
    return wrong


def attack_entries(name: str, info: dict, sources: set, rate: int, kind: str | None = None) -> list[Entry]:
    """The successful examples of an attack folder whose source is in ``sources``."""
    folder = Path(info["folder"])
    kind = kind or f"{name}-{info['config_hash']}"
    return [Entry(kind, r["id"], r["id"], (lambda r=r: load_audio(folder / r["audio"], rate)[0]), r)
            for r in successful_examples(folder, sources)]


def held_out_pool(settings: Settings, root: Path, sample_rate: int, exclude: set, n: int,
                  purpose: str = "benign-pool") -> list:
    """``n`` benign held-out utterances of the run's corpora, none in ``exclude``, evenly over the corpora;
    drawn like :func:`calibration_items`, from a seed derived from the run's and ``purpose``.

    Example:
        >>> pool = held_out_pool(Settings(), Path("../shared/data"), 16000, set(), 4)  # doctest: +SKIP
        >>> len(pool)  # doctest: +SKIP
        4
    """
    if n <= 0:
        return []
    per_corpus, chosen = -(-n // len(settings.corpora)), []
    for corpus in settings.corpora:
        pool = load_items([corpus], per_corpus + len(exclude), derive(settings.seed, purpose), root, sample_rate)
        chosen += [item for item in pool if item.id not in exclude][:per_corpus]
    return chosen[:n]


def comparison_sets(run_dir, recognizer, *, n_english: int = 60, n_calibration: int = 300,
                    validation_fraction: float = 0.3, n_benign_pool: int = 0) -> ComparisonSets:
    """The sets of a finished reproduction in ``run_dir`` (see the module docstring)."""
    results, settings, speech, train_ids, test_sources = finished_run(run_dir, recognizer)
    rate, root = recognizer.sample_rate, Path(results["data_root"])
    fit_sources, val_sources = fit_validation_split(train_ids, validation_fraction, settings)
    source_ids = {it.id for it in speech}
    benign = _utterances("benign", speech)
    attacks = {name: attack_entries(name, info, test_sources, rate) for name, info in results["attacks"].items()
               if name != "us"}
    urban_test: list[Entry] = []
    if "us" in results["attacks"]:
        urban = load_items(["urbansound8k"], settings.n_urban, settings.seed, root, rate,
                           min_seconds=settings.min_seconds)
        _, test_mask = split_by_source([it.id for it in urban], settings.test_fraction, settings.seed)
        urban_test = _utterances("benign-us", [it for it, m in zip(urban, test_mask) if m])
        attacks["us"] = attack_entries("us", results["attacks"]["us"], {e.id for e in urban_test}, rate)
    extra = calibration_items(settings, root, rate, source_ids, n_calibration)
    held_out = {corpus: [e for e in benign if e.source in test_sources and e.id.startswith(corpus + ":")]
                for corpus in settings.corpora}
    if urban_test:
        held_out["urbansound8k"] = urban_test
    try:
        english = load_items(["english-speech"], n_english, settings.seed, root, rate,
                             min_seconds=ENGLISH_SECONDS[0], max_seconds=ENGLISH_SECONDS[1]) if n_english else []
    except (AsrguardError, OSError):  # the corpus is optional: the other sets still compare
        english = []
    if english:
        held_out["english-speech"] = _utterances("benign-english", english)
    train = settings.train_attack
    calibration = [e for e in benign if e.source in val_sources] + _utterances("benign-calibration", extra)
    pool = held_out_pool(settings, root, rate, source_ids | {e.id for e in calibration}, n_benign_pool)
    return ComparisonSets(
        settings=settings, run=results,
        fit_benign=[e for e in benign if e.source in fit_sources],
        fit_adversarial=attack_entries(train, results["attacks"][train], fit_sources, rate),
        calibration=calibration, test_benign=[e for e in benign if e.source in test_sources], urban_test=urban_test,
        attacks=attacks, held_out=held_out, benign_pool=_utterances("benign-pool", pool))


class RowCache:
    """A rival detector's feature rows, one JSON file per (set kind, input), written atomically.

    The folder is named after the detector's kind and a hash of its settings and of the
    recogniser, so rows measured another way are never reused.

    Example:
        >>> cache = RowCache("runs/compare/features", detector)      # doctest: +SKIP
        >>> cache.get(entry).shape                                   # doctest: +SKIP
        (6,)
    """

    def __init__(self, root, detector):
        key = json.dumps({"kind": detector.kind, "settings": detector.settings(),
                          "recognizer": getattr(detector.recognizer, "checksum", None) or "unsaved"}, sort_keys=True)
        self.folder = Path(root) / f"{detector.kind}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        self.detector = detector

    def get(self, entry: Entry) -> np.ndarray:
        path = self.folder / entry.kind / f"{safe_name(entry.id)}.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("id") == entry.id:
                    return np.asarray(data["row"], dtype=np.float64)
            except (OSError, ValueError, KeyError):
                pass  # unreadable: measure again
        row = np.asarray(self.detector.features(entry.load(), name=entry.id), dtype=np.float64)
        write_json(path, {"id": entry.id, "row": row.tolist()})
        return row


class FeatureSource:
    """Features of entries for one detector, as the detector's ``fit_features`` / ``score_features`` take them.

    Uncertainty features come from (and go to) the run's own cache; rival rows from a
    :class:`RowCache` under the comparison's folder. The combined detector's rows are joined
    from those of its parts (the run's uncertainty features and each member's rows), so they
    share the separate detectors' caches.
    """

    def __init__(self, detector, run_dir, out_dir, settings: Settings, tick: Callable[[], None] = lambda: None):
        """``tick`` is called once per input measured (or read from the cache); reassign it between stages."""
        self.detector, self.tick = detector, tick
        self._seen: dict = {}  # (kind, id) -> features, so an input is read once per detector
        self._parts: dict[str, FeatureSource] = {}
        if detector.kind == "combined":
            uncertainty = SimpleNamespace(kind="uncertainty", recognizer=detector.recognizer)
            self._parts = {"uncertainty": FeatureSource(uncertainty, run_dir, out_dir, settings),
                           **{name: FeatureSource(member, run_dir, out_dir, settings)
                              for name, member in detector.members.items()}}
            self._cache = None
        elif detector.kind == "uncertainty":
            extractor = settings.extractor()
            self._cache = FeatureCache(Path(run_dir) / "features", detector.recognizer, extractor)
        else:
            self._cache = RowCache(Path(out_dir) / "features", detector)

    def one(self, entry: Entry):
        key = (entry.kind, entry.id)
        if key not in self._seen:
            if self._parts:
                rows = {name: part.one(entry) for name, part in self._parts.items()}
                self._seen[key] = self.detector.join(rows.pop("uncertainty"), rows)[0]
            elif isinstance(self._cache, FeatureCache):
                self._seen[key] = self._cache.get(entry.kind, entry.id, entry.load)
            else:
                self._seen[key] = self._cache.get(entry)
            self.tick()
        return self._seen[key]

    def table(self, entries: Sequence[Entry]):
        """A :class:`FeatureTable` (uncertainty) or an ``(N, D)`` array of rows (rivals)."""
        got = [self.one(e) for e in entries]
        if isinstance(self._cache, FeatureCache):
            return FeatureTable.stack(got)
        return np.vstack(got) if got else np.zeros((0, len(self.detector.feature_names)))


__all__ = ["ComparisonSets", "Entry", "FeatureSource", "RowCache", "attack_entries", "comparison_sets",
           "held_out_pool", "misrecognised"]
