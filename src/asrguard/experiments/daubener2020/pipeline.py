"""The Däubener et al. (2020) reproduction from end to end: :func:`run` and the results it writes.

Example:
    >>> results = run("runs/daubener2020-quick", quick=True)  # doctest: +SKIP
    >>> [bar["pass"] for bar in results["bars"]][:5]  # doctest: +SKIP
    [True, True, True, True, True]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...asr.hybrid.train import word_accuracy
from ...attacks.pgd import random_digit_targets
from ...errors import ConfigError, DataError
from ...fileio import atomic_write_text
from ..common import ProgressBars
from .config import (
    AUROC_INTERVAL, BAR_AUROC, BAR_EPS, DEFAULT_DATA_ROOT, LABELS, MODEL_ORDER, MODELS, NAME, PAPER, Settings,
)
from .report import level_label, tables_markdown, write_figures
from .scoring import attack_row, detection_by_measure
from .stages import attack_plan, attack_stage, benign_stage, held_out_sets, model_stage, write_stage


def run(out_dir, quick: bool = False, data_root=DEFAULT_DATA_ROOT, seed: int = 0, *,
        progress: bool = True, settings: Settings | None = None, threads: int = 1) -> dict:
    """Run (or resume) the whole reproduction; returns the results dict also written to ``results.json``.

    ``out_dir`` holds ``models/`` (checkpoints), ``stages/`` (cached per-stage JSON),
    ``results.json``, ``tables.md`` and the figures. ``data_root`` is the folder holding
    ``fsdd/`` and ``speech_commands_v0.02_test/``. ``threads`` is handed to
    ``torch.set_num_threads`` (1 by default: the models are tiny, and several threads on a
    shared 2-core machine spend their time waiting for each other).

    Example:
        >>> results = run("runs/daubener2020-quick", quick=True)  # doctest: +SKIP
        >>> results["headline"]["tables"]["0.02"]["fnn"]["auroc"]["entropy"]  # doctest: +SKIP
        0.99
    """
    torch.set_num_threads(max(1, int(threads)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_root = Path(data_root)
    if not (data_root / "fsdd").is_dir():
        raise DataError(f"{data_root}: no fsdd/ folder; pass --data-root (data_root= in Python) pointing at the shared data folder")
    settings = settings or Settings.make(quick, seed)
    if not set(settings.table_eps) <= set(settings.eps_grid):
        raise ConfigError("table_eps must be part of eps_grid")
    if settings.headline_level not in settings.levels:
        raise ConfigError("headline_level must be one of levels")
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    timing: dict = {}
    benign: dict = {}
    attacked: dict = {}
    with ProgressBars(progress) as bars:
        t0 = time.perf_counter()
        recognizers, model_info = model_stage(out_dir, settings, data_root, bars)
        timing["models_seconds"] = time.perf_counter() - t0
        fit, evaluation = held_out_sets(settings, data_root)
        targets = random_digit_targets(len(evaluation), seed=settings.seed, avoid=[u.transcript for u in evaluation])
        t0 = time.perf_counter()
        for name in MODEL_ORDER:
            benign[name] = benign_stage(out_dir, settings, name, recognizers[name], fit, evaluation, bars)
        timing["benign_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for name, eps, attack, level, ensemble, n in attack_plan(settings):
            attacked[(name, f"{eps:.2f}", attack.name, level, ensemble)] = attack_stage(
                out_dir, settings, name, recognizers[name], evaluation, targets, eps, n, bars, attack=attack,
                level=level, ensemble=ensemble)
        timing["attack_seconds"] = time.perf_counter() - t0

    stage = stage_lookup(attacked, settings)
    results, bars_out = collect_results(settings, data_root, model_info, recognizers, benign, stage, evaluation,
                                        targets)
    timing["total_seconds"] = time.perf_counter() - t_start
    # the compute every stage took when it ran (it may have run in an earlier, interrupted call)
    stage_seconds = [model_info[k].get("train_seconds", 0.0) for k in MODEL_ORDER]
    stage_seconds.append(max(model_info[k].get("data_seconds", 0.0) for k in MODEL_ORDER))
    stage_seconds += [benign[k].get("seconds", 0.0) for k in MODEL_ORDER]
    stage_seconds += [a.get("seconds", 0.0) for a in attacked.values()]
    timing["pipeline_seconds"] = float(sum(stage_seconds))
    timing["cpu_seconds"] = time.process_time() - cpu_start
    timing["load_average_start"] = load_start
    timing["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    timing["cpu_count"] = os.cpu_count()
    results["timing"] = timing
    limit = 5 * 60 if settings.quick else 90 * 60
    pipeline = max(timing["pipeline_seconds"], timing["total_seconds"])
    bars_out.append({"name": f"wall time <= {limit // 60} min (sum of all stages, including ones cached "
                             f"by an earlier call; this call alone: {timing['total_seconds'] / 60:.1f} min)",
                     "value": round(pipeline / 60, 2), "pass": pipeline <= limit})
    results["bars"] = bars_out
    headline_scores = {(k, f"{eps:.2f}"): stage(k, eps)["scores"]["entropy"]
                       for k in MODEL_ORDER for eps in settings.table_eps}
    results["figures"] = write_figures(out_dir, results, headline_scores)
    write_stage(out_dir / "results.json", results)
    with open(out_dir / "calls.jsonl", "a", encoding="utf-8") as fh:  # one line per call, for the record
        fh.write(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": settings.quick,
                             "wall_seconds": round(time.perf_counter() - t_start, 1),
                             "cpu_seconds": round(time.process_time() - cpu_start, 1),
                             "load_average_start": load_start}) + "\n")
    atomic_write_text(out_dir / "tables.md", tables_markdown(results))
    return results


def stage_lookup(attacked: dict, settings: Settings) -> Callable[..., dict]:
    """``stage(name, eps, attack=, level=, ensemble=)``: one attack stage's output from ``attacked``.

    The defaults are the headline's: the paper's attack, the headline level and, for the
    ensemble, the run's ensemble attack.

    Example:
        >>> stage = stage_lookup(attacked, settings)  # doctest: +SKIP
        >>> stage("ensemble", 0.02, ensemble="member")["accuracy_target"]  # doctest: +SKIP
        0.4
    """
    head = settings.headline_level

    def stage(name, eps, attack=settings.attack, level=head, ensemble="default"):
        if ensemble == "default":
            ensemble = settings.ensemble_attack if MODELS[name][0] == "ensemble" else None
        return attacked[(name, f"{eps:.2f}", attack.name, level, ensemble)]

    return stage


def collect_results(settings: Settings, data_root: Path, model_info: dict, recognizers: dict, benign: dict,
                    stage: Callable[..., dict], evaluation, targets: list[str]) -> tuple[dict, list[dict]]:
    """``results.json`` from the stages' outputs (all but timing, bars and figures), and the quality bars.

    Example:
        >>> results, bars = collect_results(settings, data_root, model_info, recognizers, benign,
        ...                                 stage_lookup(attacked, settings), evaluation, targets)  # doctest: +SKIP
        >>> list(results)[-2:]  # doctest: +SKIP
        ['fig1', 'fig1_summary']
    """
    head = settings.headline_level

    def table(attack, level):
        return {f"{eps:.2f}": {k: attack_row(benign[k], stage(k, eps, attack, level), k) for k in MODEL_ORDER}
                for eps in settings.table_eps}

    results: dict = {"experiment": NAME, "settings": settings.to_dict(), "data_root": str(data_root),
                     "models": model_info, "paper": PAPER, "auroc_interval": AUROC_INTERVAL}
    results["table1"] = {k: {"accuracy": benign[k]["accuracy"], "n_utterances": settings.n_eval,
                             "n_words": sum(len(u.transcript.split()) for u in evaluation),
                             "accuracy_fit_set": benign[k]["accuracy_fit_set"],
                             "insertion_penalty": recognizers[k].hmm.insertion_penalty}
                         for k in MODEL_ORDER}
    sweep_tables = {f"{lv:g}": table(settings.attack, lv) for lv in settings.levels}
    results["headline"] = {"level": head, "attack": dataclasses.asdict(settings.attack),
                           "ensemble_attack": settings.ensemble_attack, "tables": sweep_tables[f"{head:g}"]}
    results["detection"] = {f"{eps:.2f}": {k: detection_by_measure(benign[k], stage(k, eps), k)
                                           for k in MODEL_ORDER}
                            for eps in settings.table_eps}
    results["benign_entropy"] = {k: benign[k]["eval"]["scores"]["entropy"] for k in MODEL_ORDER}
    results["sweep"] = {"attack": dataclasses.asdict(settings.attack), "levels": list(settings.levels),
                        "tables": sweep_tables,
                        "levels_meeting_bar": [lv for lv in settings.levels if BAR_EPS in settings.table_eps and all(
                            row["auroc"]["entropy"] >= BAR_AUROC
                            for row in sweep_tables[f"{lv:g}"][f"{BAR_EPS:.2f}"].values())]}
    if settings.converged_attack:
        results["converged_attack"] = {"attack": dataclasses.asdict(settings.converged_attack), "level": head,
                                       "tables": table(settings.converged_attack, head)}
    results["ensemble_variants"] = {
        "level": head, "attack": dataclasses.asdict(settings.attack),
        "tables": {f"{eps:.2f}": {mode: attack_row(benign["ensemble"], stage("ensemble", eps, ensemble=mode),
                                                   "ensemble") for mode in ("average", "member")}
                   for eps in settings.table_eps}}
    fig1 = {}
    for name in MODEL_ORDER:
        points = [{"eps": 0.0, "n": settings.n_eval, "accuracy_original": benign[name]["accuracy"],
                   "accuracy_target": word_accuracy(targets, benign[name]["eval"]["transcripts"])}]
        for eps in settings.eps_grid:
            if eps == 0:
                continue
            a = stage(name, eps)
            points.append({"eps": eps, "n": a["n"], "accuracy_original": a["accuracy_original"],
                           "accuracy_target": a["accuracy_target"], "target_exact_match": a["target_exact_match"],
                           "snr_db_mean": float(np.mean(a["snr_db"])), "max_abs_delta": max(a["max_abs_delta"])})
        fig1[name] = points
    results["fig1"] = fig1
    results["fig1_summary"] = fig1_summary(fig1)
    bars_out = [{"name": f"Table 1 accuracy >= 0.95 ({LABELS[k]})", "value": round(results["table1"][k]["accuracy"], 4),
                 "pass": results["table1"][k]["accuracy"] >= 0.95} for k in MODEL_ORDER]
    for eps in sorted(settings.table_eps):
        for k in MODEL_ORDER:
            row = results["headline"]["tables"][f"{eps:.2f}"][k]
            v = row["auroc"]["entropy"]
            bar = abs(eps - BAR_EPS) < 1e-9
            bars_out.append({"name": f"entropy AUROC{f' >= {BAR_AUROC}' if bar else ''} at eps={eps:.2f}, the "
                                     f"paper's attack, audio level {level_label(head)} ({LABELS[k]})",
                             "value": round(v, 4), "pass": (v >= BAR_AUROC) if bar else None,
                             "auroc_ci": row["auroc_ci"]["entropy"], "n_adversarial": row["n_adversarial"],
                             "n_benign": row["n_benign"]})
    return results, bars_out


def fig1_summary(fig1: dict) -> dict:
    """Whether the uncertainty-aware models reach their target less often than the fNN at ε ≥ 0.05.

    Example:
        >>> points = {k: [{"eps": 0.05, "accuracy_target": a}] for k, a in (("fnn", 0.9), ("dropout", 0.6))}
        >>> summary = fig1_summary(points)
        >>> summary["lower_than_fnn"], round(summary["fnn_over_others"], 2)
        (['dropout'], 1.5)
    """
    summary = {k: {"target_accuracy_eps_ge_0.05": float(np.mean([p["accuracy_target"] for p in fig1[k]
                                                                   if p["eps"] >= 0.05 - 1e-9]))}
               for k in fig1}
    others = [k for k in MODEL_ORDER if k != "fnn" and k in fig1]
    lower = [k for k in others
             if summary[k]["target_accuracy_eps_ge_0.05"] < summary["fnn"]["target_accuracy_eps_ge_0.05"]]
    not_lower = [k for k in others if k not in lower]
    summary["lower_than_fnn"] = lower
    fnn = summary["fnn"]["target_accuracy_eps_ge_0.05"]
    rest = float(np.mean([summary[k]["target_accuracy_eps_ge_0.05"] for k in others])) if others else math.nan
    summary["fnn_over_others"] = fnn / rest if rest > 0 else math.nan
    summary["statement"] = (
        "Lower target accuracy than the fNN at ε ≥ 0.05 (the paper's attack): "
        + (", ".join(LABELS[k] for k in lower) or "none")
        + ("; not lower: " + ", ".join(LABELS[k] for k in not_lower) if not_lower else "")
        + f". The fNN's target accuracy is {summary['fnn_over_others']:.2f}× the mean of the others "
          "(the paper: about 1.5×).")
    return summary


__all__ = ["collect_results", "fig1_summary", "run", "stage_lookup"]
