"""Hardening the combined detector by fitting it on its own adaptive attacker's examples, then attacking it again.

Issue 17 asks whether training on adaptive examples makes a detector hold. On the mixed run
(runs/j_mixed, features cached in runs/compare), with nothing chosen on the test cells:

1. fit the combined detector as compare-detectors does (benign + DR on the fitting sources);
2. craft combined-evasion against it on N *fitting* sources (CW's targets for them);
3. refit (the hardened detector) on benign + DR + those adaptive examples; same calibration set;
4. score the hardened detector on every non-adaptive cell and held-out benign set, and on the
   combined-evasion examples made against the first detector on test sources (transfer);
5. craft combined-evasion against the hardened detector on the first N test sources, and score it.

    python docs/results/compare/hardening/harden_combined.py --n 8 > docs/results/compare/hardening/results.txt
    python docs/results/compare/hardening/harden_combined.py --n 8 --margin 0.3 \
        > docs/results/compare/hardening/results_margin0.3.txt

``--margin`` gives both attackers a ``score_margin`` (success needs their copy of the detector
that far below its threshold; see margin_attack.py), so the hardened detector also learns from
examples that sit well inside its benign side. Those attackers run with CW's budget and schedule
(``cw_schedule``), as compare-detectors' do since session 14; the plain run keeps the short one.

Crafted folders go to runs/compare/hardening/ (resumable); the summary is printed and written
to docs/results/compare/hardening/results.json (results_margin<M>.json with --margin M).
"""
import argparse
import json
from pathlib import Path

import numpy as np

from asrguard.asr.registry import load_recognizer
from asrguard.attacks.combined_evasion import CombinedEvasionAttack, CombinedEvasionConfig
from asrguard.detect.combined import CombinedDetector
from asrguard.experiments.comparison import adaptive_summary, cell_metrics
from asrguard.experiments.comparison.adaptive import (EOT_GAMMA, adaptive_attack, attack_toward_cw_targets,
                                                     cw_schedule)
from asrguard.experiments.comparison.inputs import FeatureSource, attack_entries, comparison_sets

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n", type=int, default=8, help="sources to attack, on each side")
parser.add_argument("--run", type=Path, default=Path("runs/j_mixed"))
parser.add_argument("--features", type=Path, default=Path("runs/compare"))
parser.add_argument("--transfer", type=Path, action="append",
                    help="combined-evasion examples made against the first detector on test sources (repeatable; "
                         "default: runs/compare/adaptive/combined-evasion-f326042ca101)")
parser.add_argument("--margin", type=float, default=0.0, help="both attackers' score_margin (0: the plain attacker)")
args = parser.parse_args()
out = args.features / "hardening"

rec = load_recognizer(None)
sets = comparison_sets(args.run, rec, n_english=60, n_calibration=300)
s, rate = sets.settings, rec.sample_rate


def fitted(extra_adversarial=None):
    det = CombinedDetector(rec, n=s.n_realizations, p=s.p_main, seed=s.seed)
    src = FeatureSource(det, args.run, args.features, s)
    adversarial = src.table(sets.fit_adversarial)
    if extra_adversarial:
        adversarial = np.vstack([adversarial, src.table(extra_adversarial)])
    det.fit_features(src.table(sets.fit_benign), adversarial, src.table(sets.calibration))
    return det, src


def craft(det, sources, cw_by_source, name):
    if args.margin:
        config = CombinedEvasionConfig(masks_per_step=4, gamma=EOT_GAMMA, seed=s.seed, score_margin=args.margin,
                                       **cw_schedule(sets))
        attack = CombinedEvasionAttack(rec, config, detector=det)
    else:
        attack = adaptive_attack("combined", det, rec, None, s.seed, 600)
    return attack_toward_cw_targets(attack, sources, cw_by_source, out / f"{name}-{attack.name}-{attack.config_hash}")


def report(det, src, label):
    scores = lambda entries: det.score_features(src.table(entries)) if entries else np.zeros(0)
    cells = {a: cell_metrics(scores(sets.benign_for(a)), scores(e), det.threshold) for a, e in sets.attacks.items()}
    alarms = {k: float(np.mean(scores(v) > det.threshold)) for k, v in sets.held_out.items() if v}
    print(f"{label}: distances dropped {det.metadata.get('distances_dropped')}")
    print("  " + " | ".join(f"{a} {c['auroc']:.3f} / {100 * c['tpr_at_1pct_fpr']:.0f} % / det {100 * c['detection_rate']:.0f} %"
                            for a, c in cells.items()) + "   (AUROC / TPR at 1 % FPR / detected at threshold)")
    print("  false alarms: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in alarms.items()))
    return {"cells": cells, "false_alarms": alarms, "distances_dropped": det.metadata.get("distances_dropped")}


def adaptive(det, src, folder, label):
    entries = attack_entries(folder.name, {"folder": folder, "config_hash": ""}, sets.test_sources() | fit_ids, rate,
                             kind=f"adaptive-{folder.name}")
    attempted = sum(1 for _ in open(folder / "manifest.jsonl"))
    benign = det.score_features(src.table([e for e in sets.test_benign + sets.fit_benign
                                           if e.source in {x.source for x in entries}]))
    summary = adaptive_summary(det.score_features(src.table(entries)), entries, attempted, det.threshold, benign,
                               cw_all)
    d, c = summary["distortion_evading"], summary["distortion_cw_same_sources"]
    print(f"  {label}: {summary['evaded']} of {attempted} evade (reached target {summary['reached_target']}); "
          f"AUROC against their sources {summary['vs_benign_auroc']:.3f}; evading at {d['mean_db_x_delta']} dB "
          f"(n={d['n']}), CW on the same sources {c['mean_db_x_delta']} dB")
    return summary


cw_info = sets.run["attacks"]["cw"]
fit_ids = {e.source for e in sets.fit_benign}
cw_fit = {e.source: e.record for e in attack_entries("cw", cw_info, fit_ids, rate)}
cw_test = {e.source: e.record for e in sets.attacks["cw"]}
cw_all = {**cw_fit, **cw_test}

first, src = fitted()
results = {"n": args.n, "margin": args.margin, "first": report(first, src, "first detector (benign + DR)")}
fit_sources = [e for e in sets.fit_benign if e.source in cw_fit][:args.n]
on_fit = craft(first, fit_sources, cw_fit, "fit")
results["adaptive_on_fitting_sources"] = adaptive(first, src, on_fit, "combined-evasion on fitting sources vs first")

fit_entries = attack_entries(on_fit.name, {"folder": on_fit, "config_hash": ""}, fit_ids, rate,
                             kind=f"adaptive-{on_fit.name}")
hardened, hsrc = fitted(fit_entries)
results["hardened"] = report(hardened, hsrc, f"hardened (benign + DR + {len(fit_entries)} adaptive)")
for folder in args.transfer or [Path("runs/compare/adaptive/combined-evasion-f326042ca101")]:
    if folder.exists():
        results.setdefault("transfer", {})[folder.name] = adaptive(hardened, hsrc, folder,
                                                                   f"{folder.name} (made against the first) vs hardened")
test_sources = [e for e in sets.test_benign if e.source in cw_test][:args.n]
again = craft(hardened, test_sources, cw_test, "test")
results["adaptive_against_hardened"] = adaptive(hardened, hsrc, again, "combined-evasion against hardened")
Path(__file__).with_name(f"results_margin{args.margin:g}.json" if args.margin else "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
