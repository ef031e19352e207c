"""Every detector against every attack on one recogniser: ``asrguard compare-detectors``.

Stages (each resumable in ``--out``):

1. a finished Jayashankar reproduction: the one in ``--run``, or one made in ``OUT/run``;
2. the sets (:mod:`.inputs`): fit, calibration, test and held-out benign sets, split by source
   exactly as the shipped detector's fit split them;
3. features of every input for every detector, cached;
4. each detector fitted on the fit sets (benign and DR; the rules that learn nothing ignore
   the adversarial rows), its threshold set at 5 % false positives on the calibration set;
5. per detector × attack: AUROC with its bootstrap interval and n, TPR at 1 % FPR, the
   detection rate at the calibrated threshold, and AUROC and TPR against only the benign sources
   the recogniser transcribes correctly (a misrecognised benign input is uncertain too); per
   detector: the false-alarm rate on every held-out benign set and the recogniser passes per
   input; per adaptive attack folder given
   (``--adaptive KIND=FOLDER``): how many of its examples reach the target, how many of those
   the detector misses, and the distortion they needed against CW's on the same sources (also
   paired: each evading example over CW's example of its own source);
6. ``results.json`` and ``tables.md``.

Example:
    >>> results = compare("runs/compare", run_dir="runs/jayashankar2020")   # doctest: +SKIP
    >>> results["cells"]["transform"]["cw"]["auroc"]                         # doctest: +SKIP
    0.99
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ...asr.registry import load_recognizer
from ...data import read_jsonl
from ...detect.registry import KINDS, make_detector
from ...errors import ConfigError
from ...evaluate.detection import auroc_interval, detection_metrics
from ...evaluate.tables import AUROC_INTERVAL
from ...fileio import atomic_write_text
from ..common import ProgressBars, without_nan, write_json
from ..jayashankar2020 import run as reproduce_jayashankar2020
from ..jayashankar2020.attacks import distortion as rows_distortion
from .adaptive import ADAPTIVE_ATTACKS, craft_adaptive as craft_adaptive_examples
from .inputs import ComparisonSets, Entry, FeatureSource, attack_entries, comparison_sets, misrecognised
from .report import tables_markdown

log = logging.getLogger(__name__)

#: The detectors compared by default: the paper's (dropout uncertainty), the four rivals and the combined one.
DEFAULT_KINDS = ("uncertainty", "distribution", "transform", "temporal", "noise-flood", "combined")
TARGET_FPR = 0.05


#: What a cell keeps of :func:`cell_metrics` when it compares the same examples with another benign set.
SUMMARY_KEYS = ("auroc", "auroc_ci", "tpr_at_1pct_fpr", "n_adversarial", "n_benign")


def cell_metrics(benign: np.ndarray, adversarial: np.ndarray, threshold: float) -> dict:
    """AUROC (interval, n), TPR at 1 % and 5 % FPR and the detection rate at ``threshold``.

    Example:
        >>> m = cell_metrics(np.array([0.1, 0.2, 0.3]), np.array([0.9, 0.25]), threshold=0.5)
        >>> round(m["auroc"], 3), m["detection_rate"], m["n_adversarial"]
        (0.833, 0.5, 2)
    """
    labels = np.r_[np.zeros(len(benign), dtype=int), np.ones(len(adversarial), dtype=int)]
    scores = np.r_[benign, adversarial]
    metrics = detection_metrics(labels, scores, threshold=threshold)
    low, high = auroc_interval(labels, scores)
    return {"auroc": metrics["auroc"], "auroc_ci": [low, high], "tpr_at_1pct_fpr": metrics["tpr_at_1pct_fpr"],
            "tpr_at_5pct_fpr": metrics["tpr_at_5pct_fpr"],
            "detection_rate": float(np.mean(adversarial > threshold)) if len(adversarial) else float("nan"),
            "n_adversarial": int(len(adversarial)), "n_benign": int(len(benign))}


def distortion(rows: Sequence[Mapping]) -> dict:
    """Mean dB_x(δ), median SNR and the number of manifest rows."""
    return {**rows_distortion(rows), "n": len(rows)}


def adaptive_summary(scores: np.ndarray, entries: list[Entry], attempted: int, threshold: float,
                     benign: np.ndarray, cw_rows: Mapping[str, Mapping], held_out: np.ndarray | None = None) -> dict:
    """How an adaptive attack folder fared against one detector at its calibrated threshold.

    ``extra_db_evading_paired``: each evading example's dB_x(δ) minus CW's on the same source, the
    distortion evading cost. ``benign``: the scores of the examples' own sources (``vs_benign_*``). ``held_out``: of every
    held-out benign test utterance (``vs_held_out_*``), the fairer AUROC when an attacker pushes
    scores into the benign range: the sources themselves are often easy inputs.
    """
    evading = [e for e, s in zip(entries, scores) if s <= threshold]
    same_sources = [cw_rows[e.source] for e in entries if e.source in cw_rows]
    # what evading cost: each evading example's dB_x(δ) over CW's on its own source
    extra = [e.record["db_x_delta"] - cw_rows[e.source]["db_x_delta"] for e in evading
             if e.source in cw_rows and e.record.get("db_x_delta") is not None
             and cw_rows[e.source].get("db_x_delta") is not None]
    against = {} if held_out is None else {f"vs_held_out_{k}": v
                                           for k, v in cell_metrics(held_out, scores, threshold).items()}
    return {"attempted": attempted, "reached_target": len(entries), "evaded": len(evading),
            "evasion_rate": len(evading) / attempted if attempted else float("nan"),
            **{f"vs_benign_{k}": v for k, v in cell_metrics(benign, scores, threshold).items()}, **against,
            "distortion_evading": distortion([e.record for e in evading]),
            "distortion_all": distortion([e.record for e in entries]),
            "distortion_cw_same_sources": distortion(same_sources),
            "extra_db_evading_paired": {"mean": float(np.mean(extra)) if extra else None,
                                        "median": float(np.median(extra)) if extra else None, "n": len(extra)}}


def _ensure_run(run_dir: Path | None, out_dir: Path, quick: bool, seed: int, progress: bool) -> Path:
    if run_dir is not None:
        if not (Path(run_dir) / "results.json").is_file():
            raise ConfigError(f"{run_dir}: no results.json; finish `asrguard reproduce jayashankar2020 --out "
                              f"{run_dir}` first, or leave out --run to make one in OUT/run")
        return Path(run_dir)
    run_dir = out_dir / "run"
    if not (run_dir / "results.json").is_file():
        log.info("no --run given: reproducing jayashankar2020 in %s first", run_dir)
        reproduce_jayashankar2020(run_dir, quick=quick, seed=seed, progress=progress)
    return run_dir


def _adaptive_folders(adaptive: Mapping[str, Sequence[str | Path]] | None, kinds: Sequence[str]) -> dict:
    chosen = {kind: [Path(f) for f in folders] for kind, folders in (adaptive or {}).items()}
    unknown = sorted(set(chosen) - set(kinds))
    if unknown:
        raise ConfigError(f"--adaptive names a detector that is not compared: {', '.join(unknown)}")
    for folders in chosen.values():
        for folder in folders:
            if not (folder / "manifest.jsonl").is_file():
                raise ConfigError(f"{folder}: no manifest.jsonl; give an attack folder made by `asrguard attack`")
    return chosen


def compare(out_dir, *, run_dir=None, kinds: Sequence[str] = DEFAULT_KINDS, adaptive=None, craft_adaptive: int = 0,
            adaptive_max_iter: int | None = None, quick: bool = False, seed: int = 0, n_english: int = 60,
            n_calibration: int = 300, n_benign_pool: int = 1000, uncertainty_classifier: str = "all-svm",
            mask_seed: int | None = None, settings: Mapping[str, Mapping] | None = None,
            progress: bool = True) -> dict:
    """Run (or resume) the comparison; returns the results also written to ``OUT/results.json``.

    Args:
        out_dir: output folder (``features/``, ``results.json``, ``tables.md``; ``run/`` without ``run_dir``).
        run_dir: a finished ``asrguard reproduce jayashankar2020`` folder (default: make one in ``OUT/run``).
        kinds: the detector kinds to compare (:data:`asrguard.detect.registry.KINDS`).
        adaptive: ``{kind: [attack folders]}``: adaptive examples made against that detector.
        craft_adaptive: run each detector's own adaptive attacker (:mod:`.adaptive`) on this many
            test sources CW succeeded on (0: none), with CW's budget and schedule (``adaptive_max_iter``
            overrides its steps).
        quick: when a run has to be made here, make the ``--quick`` one.
        n_english, n_calibration: sizes of the held-out English set and the extra calibration set.
        n_benign_pool: held-out benign utterances of the run's corpora that each speech cell is scored
            against too, beside its own sources (``cells[kind][attack]["benign_pool"]``): about 30 sources
            cannot place a 1 % false-positive threshold (0: none).
        uncertainty_classifier: the dropout-uncertainty detector's classifier (the shipped one's).
        mask_seed: draw the dropout realisations (of the uncertainty detector and the combined
            detector's uncertainty part) from this seed instead of the run's; nothing else moves (the
            split, the data, the transforms' and noise's seeds). A fixed-I detector's cells are one draw
            of its masks: other seeds show their spread. Features go to the run's cache under this seed.
        settings: ``{kind: {setting: value}}`` for the rival and combined detectors (e.g.
            ``{"transform": {"measure": "likelihood"}}``); the detector's row keeps its kind's name, and
            ``results["detectors"][kind]["settings"]`` records every setting.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ConfigError(f"unknown detector kind(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(KINDS)}")
    chosen_adaptive = _adaptive_folders(adaptive, kinds)
    settings = {kind: dict(given) for kind, given in (settings or {}).items()}
    if set(settings) - set(kinds) or "uncertainty" in settings:
        raise ConfigError(f"settings are for the compared rival and combined detectors ({', '.join(kinds)}); "
                          f"got settings for {', '.join(sorted(settings))}")
    for kind, given in settings.items():
        # the comparison fixes these: the threshold's false-positive rate, and the run's realisations (cached)
        fixed = sorted(set(given) & ({"target_fpr"} | ({"n", "p", "seed", "masks"} if kind == "combined" else set())))
        if fixed:
            raise ConfigError(f"{kind}: the comparison sets {', '.join(fixed)} itself; leave it out of the settings")
    if mask_seed is not None and craft_adaptive > 0 and {"uncertainty", "combined"} & set(kinds):
        raise ConfigError("mask_seed moves the dropout masks the cells are scored with; craft adaptive examples "
                          "against the run's own masks (craft_adaptive=0 with a mask seed)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dir = _ensure_run(None if run_dir is None else Path(run_dir), out_dir, quick, seed, progress)
    t_start = time.perf_counter()
    model = json.loads((run_dir / "results.json").read_text()).get("model")
    recognizer = load_recognizer(None if model in (None, "shipped") else model)
    sets = comparison_sets(run_dir, recognizer, n_english=n_english, n_calibration=n_calibration,
                           n_benign_pool=n_benign_pool)
    if sets.settings.masks != "iid" and craft_adaptive > 0 and {"uncertainty", "combined"} & set(kinds):
        raise ConfigError(f"the run draws {sets.settings.masks} dropout masks, and the dropout attackers know only "
                          "iid ones; score it with craft_adaptive=0 (--adaptive-n 0)")
    rate = recognizer.sample_rate
    masks = sets.settings if mask_seed is None else dataclasses.replace(sets.settings, seed=int(mask_seed))
    results: dict = {"run": str(run_dir), "recognizer": recognizer.fingerprint(), "seed": seed,
                     "mask_seed": masks.seed, **({"masks": masks.masks} if masks.masks != "iid" else {}),
                     "target_fpr": TARGET_FPR, "sizes": _sizes(sets), "detectors": {}, "cells": {},
                     "false_alarms": {}, "flagged_test_benign": {}, "adaptive": {}, "auroc_interval": AUROC_INTERVAL,
                     "attacks": list(sets.attacks)}
    wrong = set(misrecognised(recognizer, sets.test_benign))
    results["misrecognised_test_benign"] = {"n": len(wrong), "of": len(sets.test_benign), "ids": sorted(wrong)}
    if sets.benign_pool:
        wrong_pool = set(misrecognised(recognizer, sets.benign_pool))
        results["misrecognised_benign_pool"] = {"n": len(wrong_pool), "of": len(sets.benign_pool)}
        wrong |= wrong_pool
    cw_rows = {e.source: e.record for e in sets.attacks.get("cw", [])}
    # inputs a detector measures (some sets overlap: a held-out corpus set is part of the test sources)
    n_inputs = len({(e.kind, e.id) for group in (sets.fit_benign, sets.fit_adversarial, sets.calibration,
                                                 sets.test_benign, sets.urban_test, sets.benign_pool,
                                                 *sets.attacks.values(), *sets.held_out.values()) for e in group})
    for kind in kinds:
        detector = _fresh_detector(kind, recognizer, sets.settings, seed, uncertainty_classifier,
                                   **settings.get(kind, {}))
        if kind == "uncertainty":
            detector.set_mask_seed(masks.seed)
        source = FeatureSource(detector, run_dir, out_dir, masks)  # its seed only draws the uncertainty features
        t0 = time.perf_counter()
        with ProgressBars(progress, stderr=True) as bars:
            source.tick = bars.task(f"{kind}: features", n_inputs)
            fit_benign = source.table(sets.fit_benign)
            detector.fit_features(fit_benign, source.table(sets.fit_adversarial), source.table(sets.calibration))
            threshold = float(detector.threshold)

            def scores_of(entries: list[Entry]) -> np.ndarray:
                return detector.score_features(source.table(entries)) if entries else np.zeros(0)

            results["cells"][kind] = {attack: _attack_cell(sets, attack, scores_of, threshold, wrong)
                                      for attack in sets.attacks}
            results["false_alarms"][kind] = {name: {"rate": float(np.mean(scores_of(entries) > threshold)),
                                                    "n": len(entries)}
                                             for name, entries in sets.held_out.items()}
            # are the benign test sources it flags the ones the recogniser gets wrong?
            results["flagged_test_benign"][kind] = flagged_shares(sets.test_benign, wrong, scores_of, threshold)
            if sets.benign_pool:
                results.setdefault("flagged_benign_pool", {})[kind] = flagged_shares(sets.benign_pool, wrong,
                                                                                     scores_of, threshold)
        results["detectors"][kind] = {"name": detector.classifier.name,
                                      "passes": int(detector.feature_extractor.config.n), "threshold": threshold,
                                      "settings": _settings(detector), "seconds": time.perf_counter() - t0}
        folders = list(chosen_adaptive.get(kind, []))
        if craft_adaptive > 0:
            log.info("%s: crafting its adaptive attack on %d test sources", kind, craft_adaptive)
            crafted = craft_adaptive_examples(kind, detector, recognizer, sets, out_dir, n=craft_adaptive,
                                              benign_rows=fit_benign, seed=seed, max_iter=adaptive_max_iter,
                                              progress=progress)
            folders += [crafted] if crafted is not None else []
        held_out = None  # every held-out benign test utterance, scored once for all folders
        for folder in folders:
            entries = attack_entries(folder.name, {"folder": folder, "config_hash": ""}, sets.test_sources(), rate,
                                     kind=f"adaptive-{folder.name}")
            with ProgressBars(progress, stderr=True) as bars:
                source.tick = bars.task(f"{kind}: features of {folder.name}", len(entries))
                benign = scores_of([e for e in sets.test_benign + sets.urban_test
                                    if e.source in {x.source for x in entries}])
                held_out = scores_of(sets.test_benign) if held_out is None else held_out
                results["adaptive"].setdefault(kind, {})[folder.name] = adaptive_summary(
                    scores_of(entries), entries, _attempted(folder, sets.test_sources()), threshold, benign, cw_rows,
                    held_out=held_out)
    results["seconds"] = time.perf_counter() - t_start
    results = without_nan(results)
    write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "tables.md", tables_markdown(results))
    return results


def _attack_cell(sets: ComparisonSets, attack: str, scores_of, threshold: float, wrong: set) -> dict:
    """One detector × attack cell. For speech also: against only the benign sources the recogniser gets right
    (``recognised_benign``), and against the sources plus the benign pool, all of it (``benign_pool``) and the
    part it gets right (``benign_pool_recognised``)."""
    benign, adversarial = sets.benign_for(attack), scores_of(sets.attacks[attack])
    cell = cell_metrics(scores_of(benign), adversarial, threshold)
    if attack == "us":  # UrbanSound clips have no transcript to get right
        return cell

    def against(entries: list[Entry]) -> dict:
        got = cell_metrics(scores_of(entries), adversarial, threshold)
        return {k: got[k] for k in SUMMARY_KEYS}

    cell["recognised_benign"] = against([e for e in benign if e.id not in wrong])
    if sets.benign_pool:
        cell["benign_pool"] = against(benign + sets.benign_pool)
        cell["benign_pool_recognised"] = against([e for e in benign + sets.benign_pool if e.id not in wrong])
    return cell


def flagged_shares(entries: list[Entry], wrong: set, scores_of, threshold: float) -> dict:
    """How many of ``entries`` score above ``threshold``, among those the recogniser transcribes right and (ids
    in ``wrong``) wrongly: ``{"recognised": {"rate", "n"}, "misrecognised": {...}}`` (rate None when n is 0).

    Example:
        >>> entries = [Entry("benign", i, i, lambda: None) for i in ("a", "b", "c")]
        >>> flagged_shares(entries, {"c"}, lambda es: np.array([{"a": 0.0, "b": 1.0, "c": 1.0}[e.id] for e in es]), 0.5)
        {'recognised': {'rate': 0.5, 'n': 2}, 'misrecognised': {'rate': 1.0, 'n': 1}}
    """
    groups = (("recognised", [e for e in entries if e.id not in wrong]),
              ("misrecognised", [e for e in entries if e.id in wrong]))
    return {group: {"rate": float(np.mean(scores_of(chosen) > threshold)) if chosen else None, "n": len(chosen)}
            for group, chosen in groups}


def _fresh_detector(kind: str, recognizer, run, seed: int, uncertainty_classifier: str, **settings):
    """An unfitted detector of ``kind`` with ``settings`` beside the comparison's own; the ones reading dropout
    draw the run's realisations, so the run's cached features are their own."""
    if kind in ("uncertainty", "combined"):
        extra = {"classifier": uncertainty_classifier} if kind == "uncertainty" else {}
        return make_detector(kind, recognizer, n=run.n_realizations, p=run.p_main, seed=run.seed, masks=run.masks,
                             target_fpr=TARGET_FPR, **extra, **settings)
    return make_detector(kind, recognizer, **{"seed": seed, **settings}, target_fpr=TARGET_FPR)


def _attempted(folder: Path, sources: set) -> int:
    return len({r["id"] for r in read_jsonl(folder / "manifest.jsonl", allow_partial_tail=True)
                if r.get("id") in sources})


def _settings(detector) -> dict:
    if detector.kind == "uncertainty":
        c = detector.feature_extractor.config
        return {"n": c.n, "p": c.p, "seed": c.seed, "classifier": detector.classifier.name,
                **({"masks": c.masks} if c.masks != "iid" else {})}
    return detector.settings()


def _sizes(sets: ComparisonSets) -> dict:
    return {"fit_benign": len(sets.fit_benign), "fit_adversarial": len(sets.fit_adversarial),
            "calibration": len(sets.calibration), "test_benign": len(sets.test_benign),
            "urban_test": len(sets.urban_test), "benign_pool": len(sets.benign_pool),
            "attacks": {k: len(v) for k, v in sets.attacks.items()},
            "held_out": {k: len(v) for k, v in sets.held_out.items()}}


__all__ = ["ADAPTIVE_ATTACKS", "DEFAULT_KINDS", "SUMMARY_KEYS", "adaptive_summary", "cell_metrics", "compare",
           "distortion", "flagged_shares"]
