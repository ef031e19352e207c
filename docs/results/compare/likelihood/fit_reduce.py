"""Which reduction suits the likelihood measure: AUROC of max and mean on the comparison's fitting rows only.

    python docs/results/compare/likelihood/fit_reduce.py --run runs/j_mixed --out runs/compare_lik

Reads the transform detector's cached rows (measured by `compare-detectors --setting transform.measure=likelihood
--setting transform.reduce=mean`); the 49 benign training sources against their 47 DR examples, no test input.
"""
import argparse
import json

import numpy as np
from sklearn.metrics import roc_auc_score

from asrguard.asr.registry import load_recognizer
from asrguard.detect.registry import make_detector
from asrguard.experiments.comparison.inputs import FeatureSource, comparison_sets

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--run", default="runs/j_mixed")
parser.add_argument("--out", default="runs/compare_lik")
args = parser.parse_args()
rec = load_recognizer(None)
sets = comparison_sets(args.run, rec, n_english=60, n_calibration=300)
det = make_detector("transform", rec, measure="likelihood", reduce="mean", seed=0, target_fpr=0.05)
source = FeatureSource(det, args.run, args.out, sets.settings)
benign, dr = source.table(sets.fit_benign), source.table(sets.fit_adversarial)
labels = np.r_[np.zeros(len(benign)), np.ones(len(dr))]
print(json.dumps({"n_benign": len(benign), "n_dr": len(dr),
                  **{f"auroc_{name}": round(float(roc_auc_score(labels, np.r_[reduce(benign), reduce(dr)])), 4)
                     for name, reduce in (("max", lambda r: r.max(1)), ("mean", lambda r: r.mean(1)))}}))
