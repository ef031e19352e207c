"""Honest small samples: every AUROC in a report carries its n and a bootstrap interval,
and AUROCs from fewer than 20 examples a side are marked as smoke tests."""

from __future__ import annotations

import math

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from asrguard.errors import ConfigError
from asrguard.evaluate import detection
from asrguard.evaluate.detection import auroc, auroc_interval, detection_metrics
from asrguard.evaluate.tables import SMOKE_MARK, AurocCells
from _report_checks import auroc_cells, auroc_cells_lacking_n_and_interval

# ──────────────────────────────────────────────────────────────────────────────
# The bootstrap
# ──────────────────────────────────────────────────────────────────────────────


def _two_gaussians(n_adversarial: int, n_benign: int, seed: int = 0, shift: float = 1.0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n_adversarial, dtype=int), np.zeros(n_benign, dtype=int)]
    return labels, np.r_[rng.normal(shift, 1.0, n_adversarial), rng.normal(0.0, 1.0, n_benign)]


def test_each_resampled_auroc_is_sklearns_on_the_resampled_examples(monkeypatch):
    labels, scores = _two_gaussians(15, 11, seed=3)
    scores = np.round(scores, 1)  # ties between the sides count one half, as in roc_auc_score
    in_memory = auroc_interval(labels, scores, n_resamples=300, seed=5)
    monkeypatch.setattr(detection, "_MAX_PAIRS_IN_MEMORY", 0)  # the path that calls roc_auc_score per resample
    looped = auroc_interval(labels, scores, n_resamples=300, seed=5)
    assert in_memory == pytest.approx(looped, abs=1e-12)
    # a single resample of the whole set with every example once is the plain AUROC
    counts = detection._resample_counts(np.random.default_rng(0), 4, 2)
    assert counts.shape == (2, 4) and counts.sum(axis=1).tolist() == [4, 4]
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_interval_is_seeded_covers_the_auroc_and_narrows_with_more_examples():
    small_labels, small_scores = _two_gaussians(8, 8, seed=2, shift=0.5)
    large_labels, large_scores = _two_gaussians(300, 300, seed=2, shift=0.5)
    small = auroc_interval(small_labels, small_scores, seed=1)
    assert small == auroc_interval(small_labels, small_scores, seed=1)
    large = auroc_interval(large_labels, large_scores)
    assert large != auroc_interval(large_labels, large_scores, seed=1)  # the seed picks the resamples
    for (low, high), (y, s) in ((small, (small_labels, small_scores)), (large, (large_labels, large_scores))):
        assert 0.0 <= low <= auroc(y, s) <= high <= 1.0
    assert large[1] - large[0] < 0.5 * (small[1] - small[0])
    # a wider confidence level gives a wider interval
    low90, high90 = auroc_interval(large_labels, large_scores, level=0.9)
    assert large[0] <= low90 and high90 <= large[1]


def test_interval_edge_cases():
    assert auroc_interval([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == (1.0, 1.0)  # perfect separation stays perfect
    assert all(math.isnan(v) for v in auroc_interval([0, 0, 0], [0.1, 0.2, 0.3]))  # one side only
    with pytest.raises(ConfigError, match="level"):
        auroc_interval([0, 1], [0.0, 1.0], level=95)
    with pytest.raises(ConfigError, match="n_resamples"):
        auroc_interval([0, 1], [0.0, 1.0], n_resamples=0)


def test_metrics_with_interval_only_add_the_interval():
    labels, scores = _two_gaussians(12, 9)
    plain = detection_metrics(labels, scores, threshold=0.5)
    with_interval = detection_metrics(labels, scores, threshold=0.5, interval=True)
    assert {k: v for k, v in with_interval.items() if k != "auroc_ci"} == plain
    assert with_interval["auroc_ci"] == list(auroc_interval(labels, scores))
    assert (with_interval["n_adversarial"], with_interval["n_benign"]) == (12, 9)


# ──────────────────────────────────────────────────────────────────────────────
# Cells and the smoke-test banner
# ──────────────────────────────────────────────────────────────────────────────


def test_cells_carry_n_and_interval_and_mark_small_samples():
    cells = AurocCells()
    big = cells.format({"auroc": 0.8123, "auroc_ci": [0.7, 0.9], "n_adversarial": 40, "n_benign": 20})
    small = cells.format({"auroc": 0.5, "auroc_ci": [0.0, 1.0], "n_adversarial": 2, "n_benign": 30}, bold=True)
    assert big == "0.812 (0.70–0.90, n=40/20)"
    assert small == f"**0.500**{SMOKE_MARK} (0.00–1.00, n=2/30)"
    assert cells.format({"n_adversarial": 0, "n_benign": 3}) == "–"  # no AUROC, nothing to qualify
    assert (cells.small, cells.total) == (1, 2)
    assert cells.banner(quick=False)[0].startswith("> **Small samples:** 1 of 2 AUROCs")
    assert cells.banner(quick=True)[0].startswith("> **Smoke test, not a reproduction.**")
    large_only = AurocCells()
    large_only.format({"auroc": 0.9, "auroc_ci": [0.8, 1.0], "n_adversarial": 20, "n_benign": 20})
    assert not large_only.banner(quick=False)[0].startswith(">")  # a full-size table gets only the legend


# ──────────────────────────────────────────────────────────────────────────────
# Jayashankar et al.: tables from a results dict shaped like a quick and a full run
# ──────────────────────────────────────────────────────────────────────────────


def _jayashankar_results(n_adversarial: int, n_benign: int, quick: bool) -> dict:
    from asrguard.experiments.jayashankar2020 import CLASSIFIERS, COLUMNS

    columns = [c[0] for c in COLUMNS] + ["US (DR-trained)"]
    labels, scores = _two_gaussians(n_adversarial, n_benign, seed=1)
    metrics = detection_metrics(labels, scores, interval=True)
    cells = {col: {name: dict(metrics) for name in CLASSIFIERS} for col in columns}
    cells["IA"]["prob-ds"] = {"n_benign": n_benign, "n_adversarial": 0}  # an empty cell stays empty
    by_group = {col: {"fsdd-digits": {"char-svm4": dict(metrics)}} for col in columns}
    attack = {"n_attempted": 12, "n_success": 10, "success_rate": 10 / 12, "success_with_dropout_rate": 0.5,
              "mean_db_x_delta": -30.0, "median_snr_db": 25.0, "attack_seconds": 60.0}
    return {"settings": {"quick": quick, "corpora": ["fsdd-digits", "speech-commands"], "n_realizations": 50},
            "model_checksum": "0123456789abcdef", "columns": columns,
            "split": {"n_sources": 12, "n_urban": 6, "n_train_sources": 8, "n_test_sources": 4, "train_attack": "dr"},
            "cells": cells, "cells_by_corpus": by_group, "cells_by_target_length": by_group,
            "attacks": {name: dict(attack) for name in ("cw", "dr", "nrr", "ia", "us")},
            "timing": {"total_seconds": 300.0, "features_seconds": 100.0}}


def test_jayashankar_quick_tables_show_n_and_interval_and_say_smoke_test():
    from asrguard.experiments.jayashankar2020 import PAPER, tables_markdown

    results = _jayashankar_results(3, 2, quick=True)
    md = tables_markdown(results)
    cells = auroc_cells(md)
    assert len(cells) >= 7 * 11 and not auroc_cells_lacking_n_and_interval(md)
    assert all(SMOKE_MARK in c for c in cells)
    assert "Smoke test, not a reproduction" in "\n".join(md.splitlines()[:4])  # at the top
    m = results["cells"]["CW"]["char-svm4"]
    low, high = m["auroc_ci"]
    # ours with its interval and n, then the paper's figure
    assert (f"| **{m['auroc']:.3f}**{SMOKE_MARK} ({low:.2f}–{high:.2f}, n=3/2) / "
            f"{PAPER['auroc']['char-svm4'][1]:.2f} |") in md


def test_jayashankar_full_size_tables_have_no_smoke_marks():
    from asrguard.experiments.jayashankar2020 import tables_markdown

    md = tables_markdown(_jayashankar_results(25, 30, quick=False))
    assert auroc_cells(md) and not auroc_cells_lacking_n_and_interval(md)
    assert SMOKE_MARK not in md.split("## Table 1")[1] and "Smoke test" not in md


def test_the_check_catches_a_cell_without_interval():
    from asrguard.experiments.jayashankar2020 import tables_markdown

    results = _jayashankar_results(25, 30, quick=False)
    del results["cells"]["DR"]["char-svm4"]["auroc_ci"]  # as in results.json written before intervals existed
    bad = auroc_cells_lacking_n_and_interval(tables_markdown(results))
    assert len(bad) == 1 and "no interval" in bad[0]
    assert auroc_cells_lacking_n_and_interval("## Table 2: AUROC\n\n| model | CW |\n|---|---|\n| x | 0.900 |\n")


# ──────────────────────────────────────────────────────────────────────────────
# Däubener et al.: tables from a results dict built with the experiment's own detection step
# ──────────────────────────────────────────────────────────────────────────────


def _daubener_results(n: int, quick: bool) -> dict:
    from asrguard.experiments.daubener2020 import (
        CONVERGED_ATTACK, MODEL_ORDER, PAPER_ATTACK, attack_row, detection_by_measure, fig1_summary, measure_names,
    )

    rng = np.random.default_rng(0)

    def stage(kind, shift, size):
        return {name: list(rng.normal(shift, 1.0, size)) for name in measure_names(kind)}

    def attacked(kind, size, level):
        return {"n": size, "level": level, "scores": stage(kind, 2.0, size), "snr_db": list(rng.normal(20, 2, size)),
                "peak": [0.5 * level] * size, "accuracy_original": 0.1, "accuracy_target": 0.8,
                "target_exact_match": 0.5}

    benign = {k: {"fit": {"scores": stage(k, 0.0, 30)}, "eval": {"scores": stage(k, 0.0, n)}} for k in MODEL_ORDER}
    levels = (1.0, 0.25)
    sweep = {f"{lv:g}": {f"{eps:.2f}": {k: attack_row(benign[k], attacked(k, n if lv == 0.25 else 10, lv), k)
                                        for k in MODEL_ORDER} for eps in (0.05, 0.02)} for lv in levels}
    head = sweep["0.25"]
    detection = {eps: {k: detection_by_measure(benign[k], attacked(k, n, 0.25), k) for k in MODEL_ORDER}
                 for eps in head}
    converged = {eps: {k: attack_row(benign[k], attacked(k, n, 0.25), k) for k in MODEL_ORDER} for eps in head}
    variants = {eps: {mode: attack_row(benign["ensemble"], attacked("ensemble", n, 0.25), "ensemble")
                      for mode in ("average", "member")} for eps in head}
    bars = [{"name": f"entropy AUROC >= 0.97 at eps={eps} ({k})", "value": round(c[k]["auroc"]["entropy"], 4),
             "pass": True if eps == "0.02" else None, "auroc_ci": c[k]["auroc_ci"]["entropy"],
             "n_adversarial": c[k]["n_adversarial"], "n_benign": c[k]["n_benign"]}
            for eps, c in head.items() for k in MODEL_ORDER]
    bars.append({"name": "wall time <= 5 min", "value": 3.2, "pass": True})
    fig1 = {k: [{"eps": 0.0, "n": n, "accuracy_original": 0.9, "accuracy_target": 0.1},
                {"eps": 0.05, "n": n, "accuracy_original": 0.2, "accuracy_target": 0.3 if k == "fnn" else 0.5}]
            for k in MODEL_ORDER}
    return {"settings": {"quick": quick, "n_fit": 30, "n_eval": n, "n_level": 10, "n_mixed": 20,
                         "n_speech_commands": 5, "augment_copies": 1},
            "timing": {"pipeline_seconds": 120.0, "total_seconds": 60.0, "cpu_seconds": 50.0,
                       "load_average_start": [1.0], "load_average_end": [1.0]},
            "table1": {k: {"accuracy": 0.95} for k in MODEL_ORDER},
            "headline": {"level": 0.25, "attack": dataclasses.asdict(PAPER_ATTACK), "ensemble_attack": "average",
                         "tables": head},
            "detection": detection, "sweep": {"levels": list(levels), "tables": sweep},
            "converged_attack": {"attack": dataclasses.asdict(CONVERGED_ATTACK), "level": 0.25, "tables": converged},
            "ensemble_variants": {"level": 0.25, "tables": variants},
            "fig1": fig1, "fig1_summary": fig1_summary(fig1), "bars": bars}


def test_daubener_tables_show_n_and_interval_everywhere():
    from asrguard.experiments.daubener2020 import tables_markdown

    results = _daubener_results(40, quick=True)
    md = tables_markdown(results)
    cells = auroc_cells(md)
    # Tables 2-3 (fNN: entropy only; 4 models x 5 measures), the sweep (2 levels), the converged attack,
    # the ensemble's two variants (2 x 5 each) and 10 bars
    per_table = 1 + 4 * 5
    assert len(cells) == 2 * per_table + 2 * 2 * per_table + 2 * per_table + 2 * 2 * 5 + 10
    assert not auroc_cells_lacking_n_and_interval(md)
    assert sum(SMOKE_MARK in c for c in cells) == 2 * per_table  # the sweep's 10-example level
    assert md.splitlines()[2].startswith("> **Smoke test, not a reproduction.**")  # a quick run, whatever its n
    assert "reported, not a bar" in md and "SNR (dB)" in md and "| 1/4 |" in md
    # the uncertainty-aware models reach the target more often than the fNN in this made-up Fig. 1
    assert results["fig1_summary"]["lower_than_fnn"] == []
    entropy = results["detection"]["0.05"]["fnn"]["entropy"]
    low, high = entropy["auroc_ci"]
    assert low <= entropy["auroc"] <= high and (entropy["n_adversarial"], entropy["n_benign"]) == (40, 40)
    full = tables_markdown(_daubener_results(40, quick=False))
    assert full.splitlines()[2].startswith(f"> **Small samples:** {2 * per_table} of")


# ──────────────────────────────────────────────────────────────────────────────
# ROC figures
# ──────────────────────────────────────────────────────────────────────────────


def test_roc_figure_gives_every_curve_its_own_panel(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from asrguard.evaluate import plots

    # identical tiny score sets: drawn in one panel they would hide each other
    curves = {name: ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) for name in ("CW", "DR", "NRR", "IA", "US")}
    curves["one class only"] = ([0, 0], [0.1, 0.2])
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.plot_roc_curves(curves, tmp_path / "roc.png", title="test")
    panels = [ax for ax in figures[0].axes if ax.axison]
    assert [ax.get_title().split("\n")[0] for ax in panels] == ["CW", "DR", "NRR", "IA", "US"]
    assert "n=2/2" in panels[0].get_title() and "[1.00, 1.00]" in panels[0].get_title()
    plt.close(figures[0])
    styles = plots.distinct_styles(5)
    assert len({(s["linestyle"], s["marker"]) for s in styles}) == 5
