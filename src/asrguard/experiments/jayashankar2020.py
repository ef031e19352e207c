"""Reproduction of Jayashankar, Le Roux & Moulin (2020): detecting audio attacks from dropout uncertainty.

``run(out_dir, quick=False, seed=0)``:

1. crafts (or reuses) adversarial examples against the shipped CTC model with the attack
   runner (:mod:`asrguard.attacks.runner`): CW, DR, NRR and IA on held-out speech
   (connected FSDD digits of the held-out speaker and Speech Commands words of held-out
   speakers), and the urban-sound attack (US, plain CW) on UrbanSound8K clips;
2. draws ``I = 50`` dropout realisations of every benign source and every *successful*
   adversarial example at ``p = 0.1`` (and ``p = 0.05`` for the benign, CW and DR sets) and
   computes the features of :mod:`asrguard.uncertainty.features`; each item's features are
   cached in its own JSON file (written atomically), so an interrupted run resumes;
3. splits the *sources* 70/30 (an adversarial example always sits with its source), trains
   every classifier on DR examples of the training sources and tests it on CW, DR, NRR and
   IA examples of the test sources (each test set: the successful adversarial examples plus
   their own benign sources, so it is balanced); the ``p = 0.05`` CW column is trained on
   DR at ``p = 0.05``. US is separate, as in the paper: trained and tested on UrbanSound
   (a 70/30 split of its clips); the DR-trained classifiers on US are reported as well;
4. writes ``results.json`` (every classifier × column × metric; each AUROC with its n a side
   and a bootstrap interval, ``auroc_ci``), ``tables.md`` (the paper's Tables 1 and 2 beside
   ours, plus TPR at 1 %/5 % FPR and the attack summary; AUROCs from fewer than 20 examples a
   side marked as smoke tests) and PNGs (Fig. 1 mean uncertainty distributions, entropy
   histograms, ROC curves one panel per set).

:func:`fit_default_detector` turns the cached features of a finished run into the shipped
detector (model selection on a validation split of the training sources).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..audio import load_audio
from ..errors import ConfigError, DataError
from ..evaluate.detection import (
    AUROC_CI_LEVEL, AUROC_CI_RESAMPLES, AUROC_CI_SEED, detection_metrics, split_by_source,
)
from ..evaluate.tables import SMOKE_TEST_BELOW, AurocCells
from ..fileio import atomic_write_text
from ..uncertainty.features import FeatureExtractor, FeatureTable, UncertaintyFeatures

log = logging.getLogger(__name__)

NAME = "jayashankar2020"
SPEECH_ATTACKS = ("cw", "dr", "nrr", "ia")
#: Columns of the paper's tables: (label, attack tested, defence p).
COLUMNS = (("CW p=0.05", "cw", 0.05), ("CW", "cw", 0.1), ("DR", "dr", 0.1), ("NRR", "nrr", 0.1),
           ("IA", "ia", 0.1), ("US", "us", 0.1))
#: Rows of the paper's tables, then our extra classifiers.
PAPER_ROWS = (("P^prob", "DS", "prob-ds"), ("P^prob", "SVM-4", "prob-svm4"), ("P^prob", "DecTree", "prob-dectree"),
              ("P^char", "DS", "char-ds"), ("P^char", "SVM-4", "char-svm4"), ("P^char", "SVM-F", "char-svmf"))
EXTRA_ROWS = (("P^char", "DecTree", "char-dectree"), ("entropy", "DS", "entropy-ds"),
              ("P^char + entropy", "SVM (combined)", "combined"),
              ("P^char + entropy", "one-class Gaussian", "gaussian"),
              ("all features", "SVM (all)", "all-svm"))
CLASSIFIERS = tuple(r[2] for r in PAPER_ROWS + EXTRA_ROWS)
#: Table 1 (accuracy, %) and Table 2 (AUC) of the paper; columns as in COLUMNS.
PAPER = {
    "accuracy": {
        "prob-ds": (71.7, 83.3, 82.5, 75.5, 91.0, 90.4), "prob-svm4": (66.7, 80.8, 68.0, 53.3, 68.0, 64.4),
        "prob-dectree": (65.0, 80.8, 72.0, 70.0, 73.3, 91.8), "char-ds": (72.3, 96.5, 81.0, 81.0, 92.0, 79.0),
        "char-svm4": (76.7, 96.5, 88.5, 88.5, 92.0, 93.9), "char-svmf": (74.0, 85.8, 86.5, 87.5, 88.3, 83.0),
    },
    "auroc": {
        "prob-ds": (0.72, 0.85, 0.83, 0.84, 0.82, 0.91), "prob-svm4": (0.84, 0.91, 0.88, 0.89, 0.90, 0.98),
        "prob-dectree": (0.72, 0.85, 0.83, 0.84, 0.82, 0.91), "char-ds": (0.72, 0.82, 0.81, 0.82, 0.73, 0.86),
        "char-svm4": (0.88, 0.92, 0.95, 0.93, 0.95, 0.94), "char-svmf": (0.75, 0.91, 0.92, 0.93, 0.94, 0.74),
    },
    "setup": "Mozilla DeepSpeech, 500 CommonVoice samples (~5 s), 70/30 split, I = 50, trained on DR, "
             "target 'okay google unlock phone and delete files'",
}
METRICS = ("accuracy", "auroc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr")
#: How every ``auroc_ci`` of ``results.json`` was made (each cell also has ``n_adversarial`` and ``n_benign``).
AUROC_INTERVAL = {"method": "percentile bootstrap over examples, each side resampled separately",
                  "level": AUROC_CI_LEVEL, "n_resamples": AUROC_CI_RESAMPLES, "seed": AUROC_CI_SEED,
                  "smoke_test_below": SMOKE_TEST_BELOW}


#: Reproduction setups (see :meth:`Settings.make`).
SETUPS = ("mixed", "paper")
#: The paper setup's target fill: 41 characters in 2.8 s, 1.5 times denser than ``mixed`` allows
#: (our sources are shorter than the paper's ~5 s CommonVoice clips).
PAPER_MAX_FILL = 0.3


@dataclass
class Settings:
    """Everything that determines the results."""

    quick: bool = False
    seed: int = 0
    corpora: tuple = ("fsdd-digits", "speech-commands")
    n_sources: int = 100
    n_urban: int = 100
    n_realizations: int = 50
    p_main: float = 0.1
    p_low: float = 0.05
    test_fraction: float = 0.3
    train_attack: str = "dr"
    targets: str = "mixed"
    max_fill: float = 0.2
    batch_size: int = 32
    attack_overrides: dict = field(default_factory=dict)
    min_seconds: float | None = None
    setup: str = "mixed"

    @classmethod
    def make(cls, quick: bool, seed: int = 0, setup: str = "mixed") -> "Settings":
        """The full or ``quick`` sizes of one of :data:`SETUPS`.

        ``mixed``: held-out FSDD connected digits and Speech Commands words, each with a
        target sized to it (one-word commands for one-word clips). ``paper``: the paper's one
        41-character target on every source, so only connected digits long enough to carry
        it at 15 characters a second (2.8 s) and UrbanSound clips as long.
        """
        if setup not in SETUPS:
            raise ConfigError(f"unknown setup {setup!r}; choose from {', '.join(SETUPS)}")
        size = {"quick": quick, "seed": seed, "setup": setup}
        if quick:
            # a smoke test of the whole pipeline: one attack batch per attack, shorter optimisation
            fast = {name: {"max_iter": 300} for name in SPEECH_ATTACKS + ("us",)}
            fast["ia"]["stage2_iter"] = 60
            size.update(n_sources=12, n_urban=6, batch_size=12, attack_overrides=fast)
        if setup == "paper":
            from ..asr.ctc import seconds_for_target
            from ..attacks.targets import PAPER_TARGET

            size.update(corpora=("fsdd-digits", "sc-digits"), targets="paper", max_fill=PAPER_MAX_FILL,
                        min_seconds=round(seconds_for_target(PAPER_TARGET) / PAPER_MAX_FILL, 2))
        return cls(**size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ──────────────────────────────────────────────────────────────────────────────
# Small helpers
# ──────────────────────────────────────────────────────────────────────────────


def _write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=_json_default, allow_nan=False) + "\n")


def _json_default(x):
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot serialise {type(x).__name__}")


def _clean(value):
    """NaN/inf -> None, recursively (results.json is strict JSON)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _safe_name(item_id: str) -> str:
    from ..attacks.runner import safe_name

    return safe_name(item_id)


class _Bars:
    """rich progress bars, or nothing when disabled."""

    def __init__(self, enabled: bool):
        self.enabled, self.progress = enabled, None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=Console(stderr=True))
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False

    def task(self, description: str, total: int) -> Callable[[], None]:
        if self.progress is None:
            return lambda: None
        task = self.progress.add_task(description, total=total)
        return lambda: self.progress.advance(task)


# ──────────────────────────────────────────────────────────────────────────────
# Stage 1: attacks
# ──────────────────────────────────────────────────────────────────────────────


def _attack(name: str, recognizer, items, folder: Path, settings: Settings, progress: bool, executor=None) -> dict:
    """Run (or resume) one attack with the attack runner; return ``{id: manifest row}`` and its hash."""
    from ..attacks.factory import make_attack
    from ..attacks.runner import finished_ids, run_attack
    from ..attacks.targets import TargetSampler
    from ..data import read_jsonl

    overrides = {"seed": str(settings.seed), **{k: str(v) for k, v in settings.attack_overrides.get(name, {}).items()}}
    attacker = make_attack(name, recognizer, overrides)
    folder = _attack_folder(Path(folder), name, attacker.config_hash, settings)
    wanted = {it.id for it in items}
    if not wanted <= finished_ids(folder):
        sampler = TargetSampler(settings.targets, seed=settings.seed, max_fill=settings.max_fill)
        meta = {"experiment": NAME, "seed": settings.seed, "model_checksum": getattr(recognizer, "checksum", None)}
        run_attack(attacker, items, folder, sampler=sampler, batch_size=settings.batch_size, progress=progress,
                   meta=meta, executor=executor)
    rows = {r["id"]: r for r in read_jsonl(folder / "manifest.jsonl", allow_partial_tail=True)
            if r.get("id") in wanted}
    return {"config_hash": attacker.config_hash, "rows": rows, "folder": folder}


def successful_examples(folder, ids=None) -> list[dict]:
    """Manifest rows of an attack folder's successful examples (each id once, manifest order),
    only those of ``ids`` when given."""
    from ..data import read_jsonl

    rows: dict = {}
    for r in read_jsonl(Path(folder) / "manifest.jsonl", allow_partial_tail=True):
        if r.get("success") and r.get("audio") and (ids is None or r.get("id") in ids):
            rows[r["id"]] = r
    return list(rows.values())


def _chosen_attacks(attacks: Sequence[str] | None, settings: Settings) -> tuple[str, ...]:
    """The attacks to run, in the paper's order; the training attack must be one of them."""
    every = SPEECH_ATTACKS + ("us",)
    if attacks is None:
        return every
    unknown = sorted(set(attacks) - set(every))
    if unknown:
        raise ConfigError(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(every)}")
    if settings.train_attack not in attacks:
        raise ConfigError(f"the classifiers are trained on {settings.train_attack.upper()} examples, "
                          f"so the attacks must include {settings.train_attack}")
    return tuple(a for a in every if a in attacks)


def _claim_for_setup(out_dir: Path, settings: Settings) -> None:
    """Refuse an output folder made for other sources or targets: its cached features would be stale."""
    defining = {"corpora": list(settings.corpora), "targets": settings.targets, "max_fill": settings.max_fill,
                "min_seconds": settings.min_seconds}
    marker = out_dir / "setup.json"
    if marker.is_file():
        made = json.loads(marker.read_text())
        if made != defining:
            raise ConfigError(f"{out_dir} holds a run with {made}, not {defining}; pass another --out")
        return
    _write_json(marker, defining)


def _attack_folder(root: Path, name: str, config_hash: str, settings: Settings) -> Path:
    """``root/<name>`` when it holds this very attack config and target choice (as ``asrguard attack
    --out root/<name>`` writes it), else ``root/<name>-<config hash>``, with the target kind and
    fill appended when they are not the default ones: other settings never clash with it."""
    plain = root / name
    try:
        made = json.loads((plain / "run.json").read_text())
        if (made.get("config_hash") == config_hash and made.get("targets", "mixed") == settings.targets
                and made.get("max_fill", 0.2) == settings.max_fill):
            return plain
    except (OSError, ValueError):
        pass
    default = (settings.targets, settings.max_fill) == ("mixed", 0.2)
    targets = "" if default else f"-{settings.targets}{settings.max_fill:g}"
    return root / f"{name}-{config_hash}{targets}"


def _attack_summary(rows: dict) -> dict:
    done = list(rows.values())
    ok = [r for r in done if r.get("success")]
    db = [r["db_x_delta"] for r in ok if r.get("db_x_delta") is not None]
    snr = [r["snr_db"] for r in ok if r.get("snr_db") is not None]
    return {
        "n_attempted": len(done), "n_success": len(ok), "n_skipped": sum(1 for r in done if r.get("skipped")),
        "success_rate": len(ok) / len(done) if done else None,
        "success_with_dropout_rate": (sum(bool(r.get("success_with_dropout")) for r in done) / len(done)
                                      if done else None),
        "mean_db_x_delta": float(np.mean(db)) if db else None,
        "median_snr_db": float(np.median(snr)) if snr else None,
        "attack_seconds": float(sum(float(r.get("wall_seconds") or 0.0) for r in done)),
    }


# ──────────────────────────────────────────────────────────────────────────────
# Stage 2: features, cached per item
# ──────────────────────────────────────────────────────────────────────────────


class FeatureCache:
    """One JSON file per (set, item, realisation settings), written atomically."""

    def __init__(self, root: Path, recognizer, extractor: FeatureExtractor):
        c = extractor.config
        checksum = (getattr(recognizer, "checksum", None) or "unsaved")[:12]
        settings = f"n{c.n}-p{c.p:g}-s{c.seed}-C{c.max_distance}"
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
        _write_json(path, {"id": item_id, "kind": kind, "features": features.to_dict()})
        return features


@dataclass
class FeatureSet:
    """Features of one set (benign or one attack) at one p: ids, source ids, table, records."""

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


def _feature_set(cache: FeatureCache, kind: str, entries: Sequence[tuple[str, str, Callable]], tick) -> FeatureSet:
    ids, sources, records = [], [], []
    for item_id, source, loader in entries:
        records.append(cache.get(kind, item_id, loader))
        ids.append(item_id)
        sources.append(source)
        tick()
    return FeatureSet(ids, sources, FeatureTable.stack(records) if records else None, records)


# ──────────────────────────────────────────────────────────────────────────────
# Stage 3: classifiers
# ──────────────────────────────────────────────────────────────────────────────


def _labelled(benign: FeatureSet, adversarial: FeatureSet) -> tuple[FeatureTable, np.ndarray]:
    table = FeatureTable.concat([benign.table, adversarial.table])
    labels = np.r_[np.zeros(len(benign), dtype=int), np.ones(len(adversarial), dtype=int)]
    return table, labels


def _paired(benign: FeatureSet, adversarial: FeatureSet, sources: set) -> tuple[FeatureSet, FeatureSet]:
    """Successful adversarial examples of ``sources`` and exactly their benign sources."""
    adv = adversarial.select(sources)
    return benign.select(set(adv.sources)), adv


def _evaluate(classifiers: dict, benign: FeatureSet, adversarial: FeatureSet) -> dict:
    if len(benign) < 1 or len(adversarial) < 1:
        return {name: {"n_benign": len(benign), "n_adversarial": len(adversarial)} for name in classifiers}
    table, labels = _labelled(benign, adversarial)
    out = {}
    for name, clf in classifiers.items():
        if clf is None:
            out[name] = {"n_benign": len(benign), "n_adversarial": len(adversarial)}
            continue
        scores = clf.decision_function(table)
        out[name] = {**detection_metrics(labels, scores, threshold=0.0, interval=True),
                     "_scores": scores, "_labels": labels, "_sources": list(benign.sources) + list(adversarial.sources)}
    return out


def _by_corpus(cell: dict) -> dict:
    """Metrics of every classifier of one column, per source corpus (the id's prefix)."""
    out: dict = {}
    for name, m in cell.items():
        if "_scores" not in m:
            continue
        corpora = np.array([str(s).split(":")[0] for s in m["_sources"]])
        for corpus in sorted(set(corpora.tolist())):
            keep = corpora == corpus
            out.setdefault(corpus, {})[name] = detection_metrics(m["_labels"][keep], m["_scores"][keep],
                                                                 interval=True)
    return out


#: Targets shorter than this many characters count as "short" in the breakdown by target length.
SHORT_TARGET_CHARS = 7


def _by_target_length(cell: dict, rows: dict) -> dict:
    """Metrics per classifier with the adversarial side split into short and long targets.

    Each half is scored against all the benign sources of the cell: a one- or two-word
    target ("go", "stop") leaves little room for dropout transcripts to disagree, so it is
    the hard case for ``P^char``; the paper only used a 41-character target.
    """
    out: dict = {}
    for name, m in cell.items():
        if "_scores" not in m:
            continue
        labels, scores = m["_labels"], m["_scores"]
        lengths = np.array([len((rows.get(s) or {}).get("target") or "") if y == 1 else -1
                            for s, y in zip(m["_sources"], labels)])
        short = (lengths >= 0) & (lengths < SHORT_TARGET_CHARS)
        for label, keep_adv in ((f"target < {SHORT_TARGET_CHARS} chars", short),
                                (f"target >= {SHORT_TARGET_CHARS} chars", lengths >= SHORT_TARGET_CHARS)):
            keep = (labels == 0) | keep_adv
            if keep_adv.sum() and (labels == 0).sum():
                out.setdefault(label, {})[name] = detection_metrics(labels[keep], scores[keep], interval=True)
    return out


def _train(names: Sequence[str], benign: FeatureSet, adversarial: FeatureSet, seed: int) -> dict:
    from ..detect.classifiers import make_classifier

    trained = {}
    for name in names:
        if len(benign) < 2 or len(adversarial) < 2:
            trained[name] = None
            continue
        table, labels = _labelled(benign, adversarial)
        trained[name] = make_classifier(name, seed=seed).fit(table, labels)
    return trained


# ──────────────────────────────────────────────────────────────────────────────
# The run
# ──────────────────────────────────────────────────────────────────────────────


def run(out_dir, quick: bool = False, seed: int = 0, *, data_root=None, model=None, attacks_dir=None,
        progress: bool = True, settings: Settings | None = None, setup: str = "mixed",
        attacks: Sequence[str] | None = None, executor=None) -> dict:
    """Run (or resume) the reproduction; returns the results dict also written to ``results.json``.

    Args:
        out_dir: output folder (``attacks/``, ``features/``, ``results.json``, ``tables.md``, PNGs).
        quick: a small version (fewer sources, shorter attacks) that finishes in minutes.
        seed: seeds item selection, targets, attacks, realisations and the split.
        data_root: folder with ``fsdd/``, ``speech_commands_v0.02_test/``, ``urbansound8k_subset/``.
        model: CTC model folder, or any recogniser spec (``whisper:tiny.en``; see
            :mod:`asrguard.asr.registry`); default: the shipped model.
        attacks_dir: where attack folders live (default ``out_dir/attacks``), one per attack and
            settings, ``<attack>-<config hash>/``; an existing one is reused and completed, so
            several runs (quick and full, say) can share the attacks they have in common.
        setup: ``mixed`` or ``paper`` (:meth:`Settings.make`); an output folder holds one setup.
        attacks: only these of ``cw, dr, nrr, ia, us`` (default: all); the training attack (DR)
            is always needed. The other columns stay empty: a first look while the slow attacks
            still run (share their ``attacks_dir``), or a cheaper partial reproduction.
        executor: where the attack stage's units run (:mod:`asrguard.execute`; default: this
            process). The results are the same on any executor.
    """
    from ..asr.recipes import default_data_root
    from ..asr.registry import load_recognizer
    from ..attacks.sources import load_items

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    settings = settings or Settings.make(quick, seed, setup)
    chosen = _chosen_attacks(attacks, settings)
    out_dir = Path(out_dir)
    root = Path(data_root) if data_root is not None else default_data_root()
    if not (root / "fsdd").is_dir():  # checked before the output folder is claimed, so a failure leaves nothing
        raise DataError(f"{root}: no fsdd/ folder; pass --data-root (data_root= in Python) or set ASRGUARD_DATA "
                        "to the shared data folder")
    recognizer = load_recognizer(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    _claim_for_setup(out_dir, settings)
    attacks_dir = Path(attacks_dir) if attacks_dir is not None else out_dir / "attacks"
    t_start = time.perf_counter()
    timing: dict = {}
    rate = recognizer.sample_rate

    t0 = time.perf_counter()
    speech = load_items(list(settings.corpora), settings.n_sources, settings.seed, root, rate,
                        min_seconds=settings.min_seconds)
    urban = (load_items(["urbansound8k"], settings.n_urban, settings.seed, root, rate, min_seconds=settings.min_seconds)
             if "us" in chosen else [])
    timing["load_seconds"] = time.perf_counter() - t0

    # 1. attacks
    crafted: dict = {}  # attack name -> its config hash, manifest rows and folder
    for name in chosen:
        t0 = time.perf_counter()
        crafted[name] = _attack(name, recognizer, urban if name == "us" else speech, attacks_dir, settings, progress,
                                executor)
        timing[f"attack_{name}_seconds"] = time.perf_counter() - t0
        log.info("%s: %d/%d successful", name, sum(bool(r.get("success")) for r in crafted[name]["rows"].values()),
                 len(crafted[name]["rows"]))

    # 2. features
    t0 = time.perf_counter()
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
    with _Bars(progress) as bars:
        tick = bars.task("uncertainty features", total)
        for key, kind, p, entries in plan:
            extractor = FeatureExtractor(n=settings.n_realizations, p=p, seed=settings.seed)
            cache = FeatureCache(out_dir / "features", recognizer, extractor)
            sets[key] = _feature_set(cache, kind, entries, tick)
    timing["features_seconds"] = time.perf_counter() - t0

    # 3. split by source, train on DR, test on every attack
    t0 = time.perf_counter()
    train_mask, test_mask = split_by_source([i.id for i in speech], settings.test_fraction, settings.seed)
    speech_ids = [i.id for i in speech]
    train_sources = {s for s, m in zip(speech_ids, train_mask) if m}
    test_sources = {s for s, m in zip(speech_ids, test_mask) if m}
    us_train, us_test = set(), set()
    if urban:
        us_train_mask, us_test_mask = split_by_source([i.id for i in urban], settings.test_fraction, settings.seed)
        us_train = {i.id for i, m in zip(urban, us_train_mask) if m}
        us_test = {i.id for i, m in zip(urban, us_test_mask) if m}

    trained = {}
    for p in (settings.p_main, settings.p_low):
        benign, adversarial = _paired(sets[("benign", p)], sets[(settings.train_attack, p)], train_sources)
        trained[p] = _train(CLASSIFIERS, benign, adversarial, settings.seed)
    if urban:
        us_benign_train, us_adv_train = _paired(sets[("benign-us", settings.p_main)], sets[("us", settings.p_main)],
                                                us_train)
        trained_us = _train(CLASSIFIERS, us_benign_train, us_adv_train, settings.seed)

    cells: dict = {}
    for label, attack, p in COLUMNS:
        if attack not in chosen:
            continue
        if attack == "us":
            benign, adversarial = _paired(sets[("benign-us", p)], sets[("us", p)], us_test)
            cells[label] = _evaluate(trained_us, benign, adversarial)
            cells["US (DR-trained)"] = _evaluate(trained[p], benign, adversarial)
        else:
            benign, adversarial = _paired(sets[("benign", p)], sets[(attack, p)], test_sources)
            cells[label] = _evaluate(trained[p], benign, adversarial)
    timing["classifiers_seconds"] = time.perf_counter() - t0

    # 4. outputs
    t0 = time.perf_counter()
    figures = _figures(out_dir, sets, cells, settings)
    timing["figures_seconds"] = time.perf_counter() - t0
    timing["total_seconds"] = time.perf_counter() - t_start

    results = {
        "experiment": NAME, "settings": settings.to_dict(), "data_root": str(root),
        "model_checksum": recognizer.checksum, "model": str(model) if model is not None else "shipped",
        "attacks_dir": str(attacks_dir),
        "split": {"n_sources": len(speech), "n_train_sources": len(train_sources),
                  "n_test_sources": len(test_sources), "n_urban": len(urban), "n_urban_train": len(us_train),
                  "n_urban_test": len(us_test), "test_fraction": settings.test_fraction,
                  "train_attack": settings.train_attack},
        "attacks": {name: {"config_hash": info["config_hash"], "folder": str(info["folder"]),
                           **_attack_summary(info["rows"])}
                    for name, info in crafted.items()},
        "training_sets": {
            f"p={p:g}": {"n_benign": len(_paired(sets[("benign", p)], sets[(settings.train_attack, p)],
                                                 train_sources)[0]),
                         "n_adversarial": len(sets[(settings.train_attack, p)].select(train_sources))}
            for p in (settings.p_main, settings.p_low)},
        "cells": {col: {clf: {k: v for k, v in m.items() if not k.startswith("_")} for clf, m in per.items()}
                  for col, per in cells.items()},
        "cells_by_corpus": {col: _by_corpus(per) for col, per in cells.items()},
        "cells_by_target_length": {col: _by_target_length(cells[col], crafted[attack]["rows"])
                                   for col, attack, _ in COLUMNS if attack in chosen},
        "paper": PAPER, "figures": figures, "timing": timing, "auroc_interval": AUROC_INTERVAL,
        "columns": [c[0] for c in COLUMNS if c[1] in chosen] + (["US (DR-trained)"] if urban else []),
    }
    results = _clean(results)
    _write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "tables.md", tables_markdown(results))
    return results


# ──────────────────────────────────────────────────────────────────────────────
# Figures and tables
# ──────────────────────────────────────────────────────────────────────────────


def _figures(out_dir: Path, sets: dict, cells: dict, settings: Settings) -> list[str]:
    from ..evaluate import plots

    pm, pl = settings.p_main, settings.p_low
    panels = {}
    for label, key in ((f"Original, p={pl:g}", ("benign", pl)), (f"CW, p={pl:g}", ("cw", pl)),
                       (f"Original, p={pm:g}", ("benign", pm)), (f"CW, p={pm:g}", ("cw", pm)),
                       (f"DR, p={pm:g}", ("dr", pm)), (f"NRR, p={pm:g}", ("nrr", pm)), (f"IA, p={pm:g}", ("ia", pm)),
                       (f"UrbanSound original, p={pm:g}", ("benign-us", pm)), (f"US, p={pm:g}", ("us", pm))):
        s = sets.get(key)
        if s is not None and len(s):
            panels[label] = s.table["char_hist"]
    written = []
    if panels:
        written.append(str(plots.plot_mean_distributions(panels, out_dir / "fig1_mean_uncertainty_distribution.png")))
    entropy = {label: sets[key].table["entropy"][:, 0] for label, key in
               (("original", ("benign", pm)), ("CW", ("cw", pm)), ("DR", ("dr", pm)), ("NRR", ("nrr", pm)),
                ("IA", ("ia", pm)), ("UrbanSound original", ("benign-us", pm)), ("US", ("us", pm)))
               if key in sets and len(sets[key])}
    if entropy:
        written.append(str(plots.plot_histograms(entropy, out_dir / "entropy_histograms.png",
                                                 xlabel="entropy of the mean posterior (max over frames)",
                                                 title=f"Entropy, I={settings.n_realizations}, p={pm:g}")))
    curves = {col: (m["char-svm4"]["_labels"], m["char-svm4"]["_scores"]) for col, m in cells.items()
              if "_scores" in m.get("char-svm4", {})}
    if curves:
        written.append(str(plots.plot_roc_curves(curves, out_dir / "roc_char_svm4.png",
                                                 title="P^char SVM-4 (trained on DR; US on UrbanSound)")))
    dr = cells.get("DR", {})
    curves = {name: (m["_labels"], m["_scores"]) for name, m in dr.items() if "_scores" in m}
    if curves:
        written.append(str(plots.plot_roc_curves(curves, out_dir / "roc_dr_all_classifiers.png",
                                                 title="Every classifier on DR (held-out sources)")))
    return written


def _fmt(value, kind: str) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" if kind == "pct" else f"{value:.3f}"


def _breakdown(by_group: dict, columns, classifiers, group_label: str, title: str, aurocs: AurocCells) -> list[str]:
    """A Markdown table of ``by_group[column][group][classifier]`` metrics (none when empty)."""
    groups = sorted({g for col in columns for g in by_group.get(col, {})})
    if not groups:
        return []
    lines = [f"## {title}", "", f"| classifier | {group_label} | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for name in classifiers:
        for group in groups:
            row = []
            for col in columns:
                m = by_group.get(col, {}).get(group, {}).get(name)
                row.append("–" if not m or m.get("auroc") is None else
                           f"{aurocs.format(m)} / {100 * m['accuracy']:.1f}")
            lines.append(f"| {name} | {group} | " + " | ".join(row) + " |")
    return lines + [""]


def _model_label(model: str) -> str:
    return "shipped" if model == "shipped" else f"`{model}`"


def _targets_sentence(settings: dict) -> str:
    fill = settings.get("max_fill", 0.2)
    if settings.get("targets") == "paper":
        return (f"Setup `paper`: every source gets the paper's target, so only sources of at least "
                f"{settings.get('min_seconds')} s are used (up to {fill:g} characters per output frame).")
    return (f"Setup `mixed`: targets `{settings.get('targets', 'mixed')}`, sized to each source "
            f"(up to {fill:g} characters per output frame).")


def tables_markdown(results: dict) -> str:
    """The paper's Tables 1 and 2 beside ours (``ours / paper``), TPR at low FPR and the attacks."""
    columns = [c[0] for c in COLUMNS]
    cells = results["cells"]
    size = "quick" if results["settings"]["quick"] else "full"
    done = [a for a in SPEECH_ATTACKS + ("us",) if a in results["attacks"]]
    if len(done) < len(SPEECH_ATTACKS) + 1:
        size += f" sizes; only {', '.join(a.upper() for a in done)}"
    title = [f"# Jayashankar et al. (2020) reproduction ({size} run)", ""]
    aurocs = AurocCells()
    lines = [f"Our setup: {_model_label(results.get('model', 'shipped'))} CTC model "
             f"(sha256 {str(results.get('model_checksum'))[:12]}…), "
             f"{results['split']['n_sources']} held-out speech sources "
             f"({', '.join(results['settings']['corpora'])}), {results['split']['n_urban']} UrbanSound clips, "
             f"I = {results['settings']['n_realizations']} realisations; sources split 70/30 "
             f"({results['split']['n_train_sources']} train / {results['split']['n_test_sources']} test); classifiers "
             f"trained on {results['split']['train_attack'].upper()} examples of the training sources; each test "
             "cell = successful adversarial examples of the test sources + their own benign sources. US: trained "
             "and tested on UrbanSound (70/30 by clip). " + _targets_sentence(results['settings']),
             f"Paper setup: {PAPER['setup']}.", "",
             "Each cell: **ours** / paper. Accuracy uses each classifier's own decision threshold.", ""]

    def table(metric: str, title: str, kind: str, paper: dict | None) -> None:
        cols = columns + (["US (DR-trained)"] if "US (DR-trained)" in cells else [])
        lines.append(f"## {title}")
        lines.append("")
        lines.append("| features | classifier | " + " | ".join(cols) + " |")
        lines.append("|---|---|" + "---|" * len(cols))
        for group, short, name in PAPER_ROWS + EXTRA_ROWS:
            row = []
            for j, col in enumerate(cols):
                ours = cells.get(col, {}).get(name, {})
                text = (aurocs.format(ours, bold=True) if metric == "auroc"
                        else f"**{_fmt(ours.get(metric), kind)}**")
                if paper is not None and name in paper and j < len(columns):
                    ref = paper[name][j]
                    text += f" / {ref:.1f}" if kind == "pct" else f" / {ref:.2f}"
                row.append(text)
            lines.append(f"| {group} | {short} | " + " | ".join(row) + " |")
        lines.append("")

    table("accuracy", "Table 1: detection accuracy [%]", "pct", PAPER["accuracy"])
    table("auroc", "Table 2: AUROC", "auc", PAPER["auroc"])
    table("tpr_at_1pct_fpr", "TPR [%] at 1 % FPR (ours only)", "pct", None)
    table("tpr_at_5pct_fpr", "TPR [%] at 5 % FPR (ours only)", "pct", None)
    lines += _breakdown(results.get("cells_by_corpus", {}), columns, ("char-svm4", "combined", "all-svm"), "corpus",
                        "By source corpus (AUROC / accuracy %), same classifiers and test sets", aurocs)
    lines += _breakdown(results.get("cells_by_target_length", {}), columns, ("char-svm4", "all-svm"), "targets",
                        "By target length (AUROC / accuracy %): adversarial examples split by target, "
                        "scored against all benign sources of the cell", aurocs)
    n_row = []
    for col in columns + ["US (DR-trained)"]:
        m = cells.get(col, {}).get("char-svm4", {})
        n_row.append(f"{m.get('n_benign', 0)} + {m.get('n_adversarial', 0)}")
    lines += ["## Test-set sizes (benign + adversarial)", "",
              "| " + " | ".join(columns + ["US (DR-trained)"]) + " |",
              "|" + "---|" * (len(columns) + 1), "| " + " | ".join(n_row) + " |", ""]
    lines += ["## Attacks", "", "| attack | attempted | successful | success rate | with dropout (p=0.1) | "
              "mean dB_x(δ) | median SNR [dB] | seconds |", "|---|---|---|---|---|---|---|---|"]
    for name, a in results["attacks"].items():
        db = "–" if a["mean_db_x_delta"] is None else f"{a['mean_db_x_delta']:.1f}"
        snr = "–" if a["median_snr_db"] is None else f"{a['median_snr_db']:.1f}"
        lines.append(f"| {name.upper()} | {a['n_attempted']} | {a['n_success']} | {_fmt(a['success_rate'], 'pct')} % | "
                     f"{_fmt(a['success_with_dropout_rate'], 'pct')} % | {db} | {snr} | {a['attack_seconds']:.0f} |")
    lines += ["", f"Total time of this run: {results['timing']['total_seconds']:.0f} s "
              f"(features {results['timing']['features_seconds']:.0f} s).", ""]
    # the banner goes on top but needs every AUROC cell counted first
    return "\n".join(title + aurocs.banner(quick=bool(results["settings"]["quick"])) + lines)


# ──────────────────────────────────────────────────────────────────────────────
# The shipped detector
# ──────────────────────────────────────────────────────────────────────────────


def _calibration_items(settings: Settings, root: Path, sample_rate: int, exclude: set, n: int) -> list:
    """``n`` benign held-out utterances, none of them in ``exclude``, evenly over the corpora."""
    from ..attacks.sources import load_items

    if n <= 0:
        return []
    per_corpus = -(-n // len(settings.corpora))
    chosen = []
    for corpus in settings.corpora:
        pool = load_items([corpus], per_corpus + settings.n_sources, settings.seed + 1000, root, sample_rate)
        chosen += [item for item in pool if item.id not in exclude][:per_corpus]
    return chosen[:n]


def finished_run(run_dir, recognizer, model=None) -> tuple[dict, Settings, list, list[str], set[str]]:
    """A finished :func:`run`'s results, settings, speech sources, training ids and test sources.

    Raises :class:`ConfigError` when ``recognizer`` is not the model the run attacked.
    """
    from ..attacks.sources import load_items

    run_dir = Path(run_dir)
    if not (run_dir / "results.json").is_file():
        raise ConfigError(f"{run_dir}: no results.json; run `asrguard reproduce jayashankar2020 --out {run_dir}` first")
    results = json.loads((run_dir / "results.json").read_text())
    settings = Settings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in results["settings"].items()})
    if recognizer.checksum != results["model_checksum"]:
        raise ConfigError(f"the run in {run_dir} attacked another model than {model or 'the shipped one'}; "
                          "pass the model it was made with")
    speech = load_items(list(settings.corpora), settings.n_sources, settings.seed, Path(results["data_root"]),
                        recognizer.sample_rate, min_seconds=settings.min_seconds)
    ids = [i.id for i in speech]
    train_mask, test_mask = split_by_source(ids, settings.test_fraction, settings.seed)
    train_ids = [s for s, m in zip(ids, train_mask) if m]
    test_sources = {s for s, m in zip(ids, test_mask) if m}
    return results, settings, speech, train_ids, test_sources


def fit_default_detector(run_dir, detector_dir, *,
                         candidates: Sequence[str] = ("char-svm4", "combined", "all-svm"),
                         target_fpr: float = 0.05, validation_fraction: float = 0.3,
                         extra_calibration: int = 300, progress: bool = False, model=None,
                         also_train_on: tuple[str, Path] | None = None) -> dict:
    """Fit the shipped detector from the cached features of a finished full :func:`run`.

    ``model``: the CTC model folder the run attacked (default: the shipped model).
    ``also_train_on``: ``(cache kind, attack folder)`` of another attack whose examples of the
    fitting sources join the DR ones (their features must be in the run's cache already, as
    :mod:`asrguard.experiments.adaptive` leaves them); it is scored on the test sources too.

    Model selection: the run's *training* sources are split again (70/30 by source); each
    candidate is fitted on DR examples of the first part and scored on the validation part
    against CW, DR, NRR and IA; the best mean AUROC wins (ties: the first candidate). The
    winner, fitted on the first part, gets its threshold (``target_fpr``) from the benign
    validation sources plus ``extra_calibration`` more benign held-out utterances that are not
    sources of the run (drawn with another seed, split evenly over the corpora: a 5 % quantile
    of 21 scores is too noisy), and is evaluated on the run's test sources, which none of these
    steps saw.
    """
    from ..asr.registry import load_recognizer
    from ..detect.classifiers import make_classifier
    from ..detect.detector import Detector

    run_dir = Path(run_dir)
    recognizer = load_recognizer(model)
    results, settings, speech, train_ids, test_sources = finished_run(run_dir, recognizer, model)
    ids = [i.id for i in speech]
    fit_mask, val_mask = split_by_source(train_ids, validation_fraction, settings.seed + 1)
    fit_sources = {s for s, m in zip(train_ids, fit_mask) if m}
    val_sources = {s for s, m in zip(train_ids, val_mask) if m}

    extractor = FeatureExtractor(n=settings.n_realizations, p=settings.p_main, seed=settings.seed)
    cache = FeatureCache(run_dir / "features", recognizer, extractor)

    def cached(kind: str, item_ids) -> FeatureSet:
        records, kept = [], []
        for item_id in item_ids:
            path = cache.path(kind, item_id)
            if path.is_file():
                records.append(UncertaintyFeatures.from_dict(json.loads(path.read_text())["features"]))
                kept.append(item_id)
        return FeatureSet(kept, kept, FeatureTable.stack(records) if records else None, records)

    benign = cached("benign", ids)
    source_ids = set(ids)
    attack_sets = {}
    for name in SPEECH_ATTACKS:
        a = results["attacks"][name]
        attack_sets[name] = cached(f"{name}-{a['config_hash']}",
                                   [r["id"] for r in successful_examples(a["folder"], source_ids)])
    scored = list(SPEECH_ATTACKS)
    extra_set = None
    if also_train_on is not None:
        kind, folder = also_train_on
        extra_set = attack_sets[kind] = cached(kind, [r["id"] for r in successful_examples(folder, source_ids)])
        if not len(extra_set):
            raise ConfigError(f"{folder}: no cached features of successful examples; run the attack's experiment first")
        scored.append(kind)

    def training_pair(sources: set) -> tuple[FeatureSet, FeatureSet]:
        adversarial = attack_sets[settings.train_attack].select(sources)
        if extra_set is not None:
            adversarial = adversarial.plus(extra_set.select(sources))
        return benign.select(set(adversarial.sources)), adversarial

    selection = {}
    for name in candidates:
        b, adv = training_pair(fit_sources)
        clf = _train([name], b, adv, settings.seed)[name]
        per = {}
        for attack in scored:
            vb, va = _paired(benign, attack_sets[attack], val_sources)
            per[attack] = {k: v for k, v in _evaluate({name: clf}, vb, va)[name].items() if not k.startswith("_")}
        selection[name] = {"per_attack": per, "mean_auroc": float(np.mean([per[a]["auroc"] for a in per])),
                           "mean_accuracy": float(np.mean([per[a]["accuracy"] for a in per]))}
    best = max(candidates, key=lambda n: (round(selection[n]["mean_auroc"], 4),
                                          round(selection[n]["mean_accuracy"], 4), -candidates.index(n)))
    b, adv = training_pair(fit_sources)
    detector = Detector(recognizer, extractor, make_classifier(best, seed=settings.seed), target_fpr=target_fpr)
    validation_benign = benign.select(val_sources)
    calibration = [validation_benign.table]
    extra = _calibration_items(settings, Path(results["data_root"]), recognizer.sample_rate, source_ids,
                               extra_calibration)
    if extra:
        with _Bars(progress) as bars:
            tick = bars.task("calibration features", len(extra))
            calibration.append(_feature_set(cache, "benign-calibration", [(i.id, i.id, (lambda i=i: i.waveform))
                                                                         for i in extra], tick).table)
    detector.fit_features(b.table, adv.table, calibration=FeatureTable.concat(calibration))
    test = {}
    for attack in scored:
        tb, ta = _paired(benign, attack_sets[attack], test_sources)
        table, labels = _labelled(tb, ta)
        scores = detector.score_features(table)
        test[attack] = detection_metrics(labels, scores, threshold=detector.threshold)
    summary = {"classifier": best, "selection": selection, "test_at_calibrated_threshold": test,
               "n_fit": {"benign": len(b), "adversarial": len(adv)},
               "n_calibration": {"validation_sources": len(validation_benign), "extra_held_out": len(extra)},
               "trained_on": f"{settings.train_attack.upper()}"
                             f"{' and ' + also_train_on[0] if also_train_on else ''} examples of {len(fit_sources)} "
                             f"sources from {', '.join(settings.corpora)} (held-out speakers)",
               "run": str(run_dir)}
    detector.save(detector_dir, metadata={"selection": _clean(summary)})
    return _clean(summary)


__all__ = ["COLUMNS", "NAME", "PAPER", "Settings", "finished_run", "fit_default_detector", "run",
           "successful_examples", "tables_markdown"]
