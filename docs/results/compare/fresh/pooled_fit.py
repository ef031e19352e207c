"""Would more training data close the gap? The combined detector fitted on both mixed runs' training sets.

Reads the features both comparisons cached (nothing is measured again): the first run
(runs/j_mixed, runs/compare) and the fresh one (runs/j_mixed_s1, runs/compare_s1). Fits one
CombinedDetector (default members, C = 0.03) on the benign and DR rows of both runs' training
sources, sets its threshold at 5 % on both calibration sets, and prints each run's test cells
(AUROC / TPR at 1 % FPR [%]) next to the single-run fit's, as JSON.

    python docs/results/compare/fresh/pooled_fit.py > docs/results/compare/fresh/pooled_fit.json
"""
import json
from pathlib import Path

import numpy as np

from asrguard.asr.registry import load_recognizer
from asrguard.detect.combined import CombinedDetector
from asrguard.experiments.comparison import cell_metrics
from asrguard.experiments.comparison.inputs import FeatureSource, comparison_sets

RUNS = {"first": (Path("runs/j_mixed"), Path("runs/compare")),
        "fresh": (Path("runs/j_mixed_s1"), Path("runs/compare_s1"))}


def combined_rows(recognizer, run: Path, out: Path):
    """The run's comparison sets and a reader of the combined detector's cached rows for them: with the run's
    own seed, as compare-detectors uses, so its cached rows are read, not measured."""
    sets = comparison_sets(run, recognizer, n_english=60, n_calibration=300)
    s = sets.settings
    reader = CombinedDetector(recognizer, n=s.n_realizations, p=s.p_main, seed=s.seed)
    return sets, FeatureSource(reader, run, out, s)


def main() -> None:
    recognizer = load_recognizer(None)
    runs = {}
    for name, (run, out) in RUNS.items():
        sets, source = combined_rows(recognizer, run, out)
        runs[name] = {"sets": sets, "table": source.table}

    def fitted(names):
        det = CombinedDetector(recognizer, seed=0)
        rows = {part: np.vstack([runs[n]["table"](getattr(runs[n]["sets"], part)) for n in names])
                for part in ("fit_benign", "fit_adversarial", "calibration")}
        return det.fit_features(rows["fit_benign"], rows["fit_adversarial"], rows["calibration"])

    result = {}
    for fit in (["first"], ["fresh"], ["first", "fresh"]):
        det = fitted(fit)
        key = "+".join(fit)
        result[key] = {"n_fit_benign": sum(len(runs[n]["sets"].fit_benign) for n in fit),
                       "n_fit_adversarial": sum(len(runs[n]["sets"].fit_adversarial) for n in fit), "cells": {}}
        for name, run in runs.items():
            sets, table = run["sets"], run["table"]
            cells = {}
            for attack, entries in sets.attacks.items():
                m = cell_metrics(det.score_features(table(sets.benign_for(attack))),
                                 det.score_features(table(entries)), det.threshold_)
                cells[attack] = {"auroc": round(m["auroc"], 4), "tpr_at_1pct_fpr": round(m["tpr_at_1pct_fpr"], 4)}
            alarms = {k: round(float(np.mean(det.score_features(table(v)) > det.threshold_)), 4)
                      for k, v in sets.held_out.items()}
            result[key]["cells"][name] = {"test": cells, "false_alarms": alarms}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
