"""The Jayashankar et al. (2020) reproduction from end to end: :func:`run`.

Example:
    >>> results = run("runs/jayashankar2020-quick", quick=True)  # doctest: +SKIP
    >>> results["cells"]["DR"]["char-svm4"]["auroc"]  # doctest: +SKIP
    0.9
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import torch

from ...asr.recipes import default_data_root
from ...asr.registry import load_recognizer
from ...attacks.sources import load_items
from ...errors import DataError
from ...fileio import atomic_write_text
from ..common import without_nan, write_json
from .attacks import attack_summary, chosen_attacks, claim_for_setup, craft_attack
from .classifiers import by_corpus, by_target_length, classifier_stage, paired, split_sources
from .config import AUROC_INTERVAL, COLUMNS, NAME, PAPER, Settings
from .features import feature_stage
from .report import tables_markdown, write_figures

log = logging.getLogger(__name__)


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
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    settings = settings or Settings.make(quick, seed, setup)
    chosen = chosen_attacks(attacks, settings)
    out_dir = Path(out_dir)
    root = Path(data_root) if data_root is not None else default_data_root()
    if not (root / "fsdd").is_dir():  # checked before the output folder is claimed, so a failure leaves nothing
        raise DataError(f"{root}: no fsdd/ folder; pass --data-root (data_root= in Python) or set ASRGUARD_DATA "
                        "to the shared data folder")
    recognizer = load_recognizer(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    claim_for_setup(out_dir, settings)
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
        crafted[name] = craft_attack(name, recognizer, urban if name == "us" else speech, attacks_dir, settings,
                                     progress, executor)
        timing[f"attack_{name}_seconds"] = time.perf_counter() - t0
        log.info("%s: %d/%d successful", name, sum(bool(r.get("success")) for r in crafted[name]["rows"].values()),
                 len(crafted[name]["rows"]))

    # 2. features
    t0 = time.perf_counter()
    sets = feature_stage(out_dir, recognizer, settings, speech, urban, crafted, progress)
    timing["features_seconds"] = time.perf_counter() - t0

    # 3. split by source, train on DR, test on every attack
    t0 = time.perf_counter()
    split = split_sources(speech, urban, settings)
    cells = classifier_stage(sets, split, settings, chosen)
    timing["classifiers_seconds"] = time.perf_counter() - t0

    # 4. outputs
    t0 = time.perf_counter()
    written = write_figures(out_dir, sets, cells, settings)
    timing["figures_seconds"] = time.perf_counter() - t0
    timing["total_seconds"] = time.perf_counter() - t_start

    results = {
        "experiment": NAME, "settings": settings.to_dict(), "data_root": str(root),
        "model_checksum": recognizer.checksum, "model": str(model) if model is not None else "shipped",
        "attacks_dir": str(attacks_dir),
        "split": {"n_sources": len(speech), "n_train_sources": len(split.train),
                  "n_test_sources": len(split.test), "n_urban": len(urban), "n_urban_train": len(split.urban_train),
                  "n_urban_test": len(split.urban_test), "test_fraction": settings.test_fraction,
                  "train_attack": settings.train_attack},
        "attacks": {name: {"config_hash": info["config_hash"], "folder": str(info["folder"]),
                           **attack_summary(info["rows"])}
                    for name, info in crafted.items()},
        "training_sets": {
            f"p={p:g}": {"n_benign": len(paired(sets[("benign", p)], sets[(settings.train_attack, p)],
                                                split.train)[0]),
                         "n_adversarial": len(sets[(settings.train_attack, p)].select(split.train))}
            for p in (settings.p_main, settings.p_low)},
        "cells": {col: {clf: {k: v for k, v in m.items() if not k.startswith("_")} for clf, m in per.items()}
                  for col, per in cells.items()},
        "cells_by_corpus": {col: by_corpus(per) for col, per in cells.items()},
        "cells_by_target_length": {col: by_target_length(cells[col], crafted[attack]["rows"])
                                   for col, attack, _ in COLUMNS if attack in chosen},
        "paper": PAPER, "figures": written, "timing": timing, "auroc_interval": AUROC_INTERVAL,
        "columns": [c[0] for c in COLUMNS if c[1] in chosen] + (["US (DR-trained)"] if urban else []),
    }
    results = without_nan(results)
    write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "tables.md", tables_markdown(results))
    return results


__all__ = ["run"]
