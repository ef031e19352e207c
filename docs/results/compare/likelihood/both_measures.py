"""The combined detector with both transform measures: transcript distances and likelihood gains side by side.

    python docs/results/compare/likelihood/both_measures.py --run runs/j_mixed --transcripts runs/compare \
        --likelihood runs/compare_lik > docs/results/compare/likelihood/both_measures_mixed.json
    python docs/results/compare/likelihood/both_measures.py --run runs/j_mixed_s1 --transcripts runs/compare_s1 \
        --likelihood runs/compare_s1_lik > docs/results/compare/likelihood/both_measures_fresh.json

Reads cached rows only: the combined detector's (dropout uncertainty, transform distances, noise flooding) from
the transcript comparison, and the likelihood combined detector's transform member (its four likelihood gains)
from the likelihood one. Each of three feature sets is fitted as `CombinedDetector` fits (one linear SVM, C = 0.03,
distances and gains kept non-negative), its threshold set at 5 % false positives on the calibration set, and
scored on the comparison's test cells and held-out benign sets. Seconds.
"""
import argparse
import json

import numpy as np
from sklearn.svm import LinearSVC

from asrguard.asr.registry import load_recognizer
from asrguard.detect.combined import DEFAULT_C, CombinedDetector
from asrguard.detect.detector import threshold_for_fpr
from asrguard.detect.rivals.base import standardisation
from asrguard.experiments.comparison import TARGET_FPR, _fresh_detector, cell_metrics
from asrguard.experiments.comparison.inputs import FeatureSource, comparison_sets

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--run", required=True)
parser.add_argument("--transcripts", required=True, help="compare-detectors OUT with the transcript combined rows")
parser.add_argument("--likelihood", required=True, help="compare-detectors OUT with the likelihood combined rows")
args = parser.parse_args()
rec = load_recognizer(None)
sets = comparison_sets(args.run, rec, n_english=60, n_calibration=300)
s = sets.settings
combined = _fresh_detector("combined", rec, s, 0, "all-svm")
gains = CombinedDetector(rec, n=s.n_realizations, p=s.p_main, seed=s.seed,
                         transform_measure="likelihood").members["transform"]
sources = [FeatureSource(combined, args.run, args.transcripts, s), FeatureSource(gains, args.run, args.likelihood, s)]
names = combined.feature_names + [f"transform-likelihood:{f}" for f in gains.feature_names]


def rows(entries):
    return np.hstack([source.table(entries) for source in sources]) if entries else np.zeros((0, len(names)))


def fit(benign, adversarial, used):
    x = np.vstack([benign, adversarial])
    y = np.r_[np.zeros(len(benign)), np.ones(len(adversarial))]
    mean, scale = standardisation(x)
    z = (x - mean) / scale
    evidence = np.array([not n.startswith("uncertainty:") for n in names])
    while True:  # as CombinedDetector: refit without the evidence columns weighted below zero
        svm = LinearSVC(C=DEFAULT_C, class_weight="balanced", max_iter=20_000, random_state=0).fit(z[:, used], y)
        coef = np.zeros(len(names))
        coef[used] = svm.coef_[0]
        negative = evidence & used & (coef < 0)
        if not negative.any():
            return (lambda r: ((r - mean) / scale) @ coef + svm.intercept_[0]), int(used.sum())
        used = used & ~negative


fit_benign, fit_adversarial, calibration = rows(sets.fit_benign), rows(sets.fit_adversarial), rows(sets.calibration)
columns = {"transcripts": np.array([not n.startswith("transform-likelihood:") for n in names]),
           "likelihood": np.array([not n.startswith("transform:") for n in names]),
           "both": np.ones(len(names), dtype=bool)}
out = {"run": args.run, "features": names}
for label, used in columns.items():
    score, n_used = fit(fit_benign, fit_adversarial, used)
    threshold = threshold_for_fpr(score(calibration), TARGET_FPR)
    out[label] = {"features_used": n_used, "threshold": float(threshold),
                  "cells": {a: cell_metrics(score(rows(sets.benign_for(a))), score(rows(e)), threshold)
                            for a, e in sets.attacks.items()},
                  "false_alarms": {k: float(np.mean(score(rows(e)) > threshold)) for k, e in sets.held_out.items()}}
print(json.dumps(out, indent=1))
