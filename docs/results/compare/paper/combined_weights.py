"""Why the combined detector fails IA on the paper setup: each feature's SVM weight and its mean contribution.

For the mixed run (runs/j_mixed, features in runs/compare) and the paper-setup run (runs/j_paper,
features in runs/compare_paper): the combined detector fitted as compare-detectors fits it, then per
feature its weight and the mean of weight x standardised value over the IA test examples, their own
benign sources and the DR fitting examples.

    python docs/results/compare/paper/combined_weights.py > docs/results/compare/paper/combined_weights.txt

combined_weights_unconstrained.txt is its output before the distances were constrained to weights
>= 0 (commit c498336): the 30 dB noise distances weighted below zero, and IA scored as benign.
combined_weights.txt is its output with the rule (a weight of 0: a distance dropped).
"""
import numpy as np
from pathlib import Path
from asrguard.asr.registry import load_recognizer
from asrguard.detect.combined import CombinedDetector
from asrguard.experiments.comparison.inputs import FeatureSource, comparison_sets
for run, out in (("runs/j_mixed", "runs/compare"), ("runs/j_paper", "runs/compare_paper")):
    rec = load_recognizer(None); sets = comparison_sets(Path(run), rec, n_english=60, n_calibration=300); s = sets.settings
    det = CombinedDetector(rec, n=s.n_realizations, p=s.p_main, seed=s.seed)
    src = FeatureSource(det, Path(run), Path(out), s)
    det.fit_features(src.table(sets.fit_benign), src.table(sets.fit_adversarial), src.table(sets.calibration))
    ia = src.table(sets.attacks["ia"]); dr = src.table(sets.fit_adversarial); ben = src.table(sets.benign_for("ia"))
    z = lambda r: ((r - det.mean_) / det.scale_)
    contrib = lambda r: (z(r) * det.coef_).mean(0)
    print(run)
    for name, c, a, b, d in zip(det.feature_names, det.coef_, contrib(ia), contrib(ben), contrib(dr)):
        print(f"  {name:42s} w={c:+.3f}  IA {a:+.3f}  benign {b:+.3f}  DR(fit) {d:+.3f}")
