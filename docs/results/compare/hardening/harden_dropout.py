"""Hardening the dropout-uncertainty detector on its verdict-asking attacker's examples.

Session 18's `dropout-evasion` (docs/results/compare/verdict/) gets examples past the shipped family's
detector. Does refitting the detector on such examples make it hold? On the mixed run (runs/j_mixed,
features cached in runs/compare), nothing chosen on the test cells:

1. fit the uncertainty detector as compare-detectors does (49 benign + 47 DR fitting rows, threshold at
   5 % on 321 calibration utterances);
2. craft dropout-evasion with score margin M against it on N *fitting* sources, toward their CW targets
   (runs/compare/hardening/fit-dropout-evasion-*; about 20 min for 27 with the machine to itself);
3. refit with those examples repeated K times in the adversarial class, for each K; score every
   non-adaptive cell, every held-out benign set, and the three dropout-evasion folders that
   compare-detectors and verdict/margin_attack.py made against the first detector on *test* sources
   (transfer);
4. with ``--attack K``: craft dropout-evasion with margin M against the K refit on the same 27 test
   sources (about 20 min) and score it against that refit.

    python docs/results/compare/hardening/harden_dropout.py --n-fit 16 > docs/results/compare/hardening/dropout.txt

``--n-fit 16`` attacks only the 16 shortest of the 27 fitting sources: the first two units (of 8) that
the runner crafts when given all 27, so a run cut short after them is reused as it stands.

Folders are resumable; the summary goes to docs/results/compare/hardening/dropout.json.
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from asrguard.attacks.dropout_evasion import DropoutEvasionAttack
from asrguard.experiments.comparison import _fresh_detector, adaptive_summary, cell_metrics
from asrguard.experiments.comparison.adaptive import adaptive_attack, attack_toward_cw_targets, cw_schedule
from asrguard.experiments.comparison.inputs import attack_entries

sys.path.insert(0, str(Path(__file__).parents[1] / "verdict"))
from _fitted import fitted_uncertainty  # noqa: E402  (the comparison's detector, as verdict/ fits it)

REPEATS = (0, 1, 3)
TEST_FOLDERS = ("dropout-evasion-1d51861aa457", "dropout-evasion-670d395387f0", "dropout-evasion-d7963d8ad774")
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--margin", type=float, default=0.5, help="the attackers' score_margin")
parser.add_argument("--n", type=int, default=27, help="sources to attack, on each side")
parser.add_argument("--n-fit", type=int, default=None,
                    help="attack only the N shortest of those fitting sources (the first N/8 units of the full run)")
parser.add_argument("--attack", type=int, choices=REPEATS, help="craft a fresh attacker against the refit with K repeats")
parser.add_argument("--run", type=Path, default=Path("runs/j_mixed"))
parser.add_argument("--features", type=Path, default=Path("runs/compare"))
args = parser.parse_args()

rec, sets, first, src, benign_rows = fitted_uncertainty(args.run, args.features)
rate, calibration = rec.sample_rate, src.table(sets.calibration)


def fresh():
    return _fresh_detector("uncertainty", rec, sets.settings, 0, "all-svm")



def scores_of(det, entries):
    return det.score_features(src.table(entries)) if entries else np.zeros(0)


fit_ids, test_ids = {e.source for e in sets.fit_benign}, sets.test_sources()
cw_fit = {e.source: e.record for e in attack_entries("cw", sets.run["attacks"]["cw"], fit_ids, rate)}
cw_test = {e.source: e.record for e in sets.attacks["cw"]}


def margin_attack(detector):
    attack = adaptive_attack("uncertainty", detector, rec, benign_rows, 0, schedule=cw_schedule(sets))
    return DropoutEvasionAttack(rec, dataclasses.replace(attack.config, score_margin=args.margin), detector=detector)


def entries_of(folder, ids):
    return attack_entries(folder.name, {"folder": folder, "config_hash": ""}, ids, rate, kind=f"adaptive-{folder.name}")


def summary(det, folder, ids, cw_rows):
    entries = entries_of(folder, ids)
    attempted = sum(1 for _ in open(folder / "manifest.jsonl"))
    scores = scores_of(det, entries)
    own = scores_of(det, [e for e in sets.test_benign + sets.fit_benign if e.source in {x.source for x in entries}])
    held_out = scores_of(det, sets.test_benign)
    return {**adaptive_summary(scores, entries, attempted, det.threshold, own, cw_rows, held_out=held_out),
            "scores_minus_threshold": [round(float(v - det.threshold), 3) for v in scores]}


def line(name, r):
    d, x = r["distortion_evading"], r["extra_db_evading_paired"]
    extra = "–" if x["mean"] is None else f"{x['mean']:+.1f} dB"
    return (f"  {name}: {r['evaded']} of {r['attempted']} evade (reached {r['reached_target']}) at "
            f"{d['mean_db_x_delta']} dB, extra over CW {extra}; AUROC vs held-out {r['vs_held_out_auroc']:.3f}")


# 2. the attacker against the first detector, on fitting sources
fit_sources = [e for e in sets.fit_benign if e.source in cw_fit][: args.n]
if args.n_fit is not None:  # the runner attacks the shortest first, so these are a cut-short run's sources
    fit_sources = sorted(fit_sources, key=lambda e: len(e.load()))[: args.n_fit]
attack = margin_attack(first)
on_fit = attack_toward_cw_targets(attack, fit_sources, cw_fit,
                                  args.features / "hardening" / f"fit-{attack.name}-{attack.config_hash}")
fit_adaptive = entries_of(on_fit, fit_ids)
results = {"margin": args.margin, "fit_folder": on_fit.name, "n_fit_sources": len(fit_sources),
           "n_fit_adaptive": len(fit_adaptive), "on_fitting_sources": summary(first, on_fit, fit_ids, cw_fit), "rows": {}}
print(f"dropout-evasion (margin {args.margin}) on {len(fit_sources)} fitting sources, against the first detector:")
print(line(on_fit.name, results["on_fitting_sources"]))

# 3. refits
refits = {}
for k in REPEATS:
    det = fresh().fit_features(benign_rows, src.table(sets.fit_adversarial + fit_adaptive * k), calibration)
    refits[k] = det
    score = lambda entries: scores_of(det, entries)
    cells = {a: cell_metrics(score(sets.benign_for(a)), score(e), det.threshold) for a, e in sets.attacks.items()}
    alarms = {name: float(np.mean(score(v) > det.threshold)) for name, v in sets.held_out.items() if v}
    transfer = {name: summary(det, args.features / "adaptive" / name, test_ids, cw_test)
                for name in TEST_FOLDERS if (args.features / "adaptive" / name).exists()}
    results["rows"][k] = {"threshold": float(det.threshold), "cells": cells, "false_alarms": alarms, "transfer": transfer}
    print(f"K = {k} ({k * len(fit_adaptive)} adaptive rows beside {len(sets.fit_adversarial)} DR), threshold {det.threshold:.3f}:")
    print("  " + " | ".join(f"{a} {c['auroc']:.3f} / {100 * c['tpr_at_1pct_fpr']:.1f} %" for a, c in cells.items())
          + "   (AUROC / TPR at 1 % FPR)")
    print("  false alarms: " + ", ".join(f"{n} {100 * v:.1f} %" for n, v in alarms.items()))
    for name, r in transfer.items():
        print(line(name, r))

# 4. a fresh attacker against a refit, on test sources
if args.attack is not None:
    target = refits[args.attack]
    attack = margin_attack(target)
    sources = [e for e in sets.test_benign if e.source in cw_test][: args.n]
    folder = attack_toward_cw_targets(attack, sources, cw_test, args.features / "hardening"
                                      / f"refit{args.attack}-{attack.name}-{attack.config_hash}")
    results["fresh_attack"] = {"repeats": args.attack, "folder": folder.name, **summary(target, folder, test_ids, cw_test)}
    print(f"fresh dropout-evasion (margin {args.margin}) against K = {args.attack}:")
    print(line(folder.name, results["fresh_attack"]))
Path(__file__).with_name("dropout.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
