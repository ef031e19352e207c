"""The transform detector with randomised settings, against BPDA that knows the ranges but not the seed.

`TransformDetector(randomize=True)` draws, for each input, the settings that change what the recogniser
hears (mel resolution, LPC order and cutoff, down-sampling rate, quantisation step;
`asrguard.detect.rivals.transforms.RANDOM_RANGES`) from its seed and the input. This script

1. fits it (seed 0) as `compare-detectors` fits the plain one (threshold at 5 % false alarms on the 321
   calibration utterances) and scores every non-adaptive cell and held-out benign set;
2. with ``--attack``: crafts `bpda-transform` against it with the seed secret (fresh seeds every step, so
   fresh settings; success checked under its own seed) on the first N test sources CW succeeded on, with
   CW's budget, schedule and targets, and scores the examples with the deployed detector.

    python docs/results/compare/secret_transform/randomised.py --attack > docs/results/compare/secret_transform/randomised.txt

The summary goes to docs/results/compare/secret_transform/randomised.json.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from asrguard.asr.registry import load_recognizer
from asrguard.detect.registry import make_detector
from asrguard.experiments.comparison import TARGET_FPR, adaptive_summary, cell_metrics
from asrguard.experiments.comparison.adaptive import adaptive_attack, attack_toward_cw_targets, cw_schedule
from asrguard.experiments.comparison.inputs import FeatureSource, attack_entries, comparison_sets

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--attack", action="store_true", help="craft and score the secret-seed BPDA attacker")
parser.add_argument("--n", type=int, default=27, help="test sources (the first N CW succeeded on)")
parser.add_argument("--run", type=Path, default=Path("runs/j_mixed"))
parser.add_argument("--out", type=Path, default=Path("runs/compare"))
args = parser.parse_args()

rec = load_recognizer(None)
sets = comparison_sets(args.run, rec, n_english=60, n_calibration=300)
results = {}
for randomize in (False, True):
    det = make_detector("transform", rec, seed=0, target_fpr=TARGET_FPR, **({"randomize": True} if randomize else {}))
    src = FeatureSource(det, args.run, args.out, sets.settings)
    det.fit_features(src.table(sets.fit_benign), src.table(sets.fit_adversarial), src.table(sets.calibration))
    score = lambda entries: det.score_features(src.table(entries)) if entries else np.zeros(0)
    cells = {a: cell_metrics(score(sets.benign_for(a)), score(e), det.threshold) for a, e in sets.attacks.items()}
    alarms = {name: float(np.mean(score(v) > det.threshold)) for name, v in sets.held_out.items() if v}
    label = "randomised" if randomize else "plain"
    results[label] = {"threshold": float(det.threshold), "cells": cells, "false_alarms": alarms}
    print(f"{label}: threshold {det.threshold:.4f}")
    print("  " + " | ".join(f"{a} {c['auroc']:.3f} / {100 * c['tpr_at_1pct_fpr']:.1f} % / det {100 * c['detection_rate']:.1f} %"
                            for a, c in cells.items()) + "   (AUROC / TPR at 1 % FPR / detected at threshold)")
    print("  false alarms: " + ", ".join(f"{n} {100 * v:.1f} %" for n, v in alarms.items()))

if args.attack:
    secret = make_detector("transform", rec, seed=0, randomize=True).set_mask_seed("random")
    attack = adaptive_attack("transform", secret, rec, None, 0, schedule=cw_schedule(sets))
    assert attack.config.fresh_seeds and attack.config.randomize, attack.config
    cw = {e.source: e.record for e in sets.attacks["cw"]}
    sources = [e for e in sets.test_benign if e.source in cw][: args.n]
    folder = attack_toward_cw_targets(attack, sources, cw, args.out / "adaptive" / f"{attack.name}-{attack.config_hash}")
    entries = attack_entries(folder.name, {"folder": folder, "config_hash": ""}, sets.test_sources(), rec.sample_rate,
                             kind=f"adaptive-{folder.name}")
    own = score([e for e in sets.test_benign if e.source in {x.source for x in entries}])
    scores = score(entries)
    summary = adaptive_summary(scores, entries, len(sources), det.threshold, own, cw, held_out=score(sets.test_benign))
    results["attack"] = {"folder": folder.name, **summary,
                         "scores_minus_threshold": [round(float(v - det.threshold), 4) for v in scores]}
    d, x = summary["distortion_evading"], summary["extra_db_evading_paired"]
    print(f"bpda-transform, seed secret, settings randomised ({folder.name}): {summary['evaded']} of {len(sources)} evade "
          f"(reached the target {summary['reached_target']}) at {d['mean_db_x_delta']} dB, extra over CW paired "
          f"{x['mean']} (n={x['n']}); AUROC vs held-out benign {summary['vs_held_out_auroc']:.3f}")
Path(__file__).with_name("randomised.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
