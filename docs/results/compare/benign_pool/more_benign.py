"""Does the combined detector separate better when it is fitted on more benign speech? And how much does the
benign pool's own draw move the pooled cells?

    B=docs/results/compare/benign_pool
    python $B/more_benign.py --run runs/j_mixed_s1 --out runs/misrec_s1 > $B/more_benign_fresh.json
    python $B/more_benign.py --run runs/j_mixed --out runs/misrec_mixed > $B/more_benign_mixed.json
    python $B/more_benign.py --run runs/j_mixed_s1 --out runs/misrec_s1 --pool-draw second > $B/more_benign_fresh_second_pool.json
    python $B/more_benign.py --run runs/j_mixed --out runs/misrec_mixed --pool-draw second > $B/more_benign_mixed_second_pool.json

`compare-detectors` fits on 49 benign sources and their DR examples. On fresh sources the benign inputs that
score like adversarial ones are those the recogniser gets wrong (`../misrecognised/`). Here the benign side of
the fit also gets ``--n-extra`` held-out utterances of the run's corpora that are none of its sources, none of
the calibration set and none of the benign pool (drawn as that pool is, from another derived seed), so the
classifier sees more of the recogniser's own mistakes. Everything else is as `compare-detectors` does it, so
with the default ``--pool-draw`` the "as compared" rows reproduce its cells: the same detectors and settings,
threshold at 5 % false positives on the calibration set, the same test cells and benign pool. ``--pool-draw
NAME`` draws another pool of the same size. New features are cached under ``--out`` (rival rows) and the run's
own cache (dropout uncertainty). A few minutes per run when the pool is new.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from asrguard.asr.registry import load_recognizer
from asrguard.experiments.comparison import _attack_cell, _fresh_detector
from asrguard.experiments.comparison.inputs import (FeatureSource, _utterances, comparison_sets, held_out_pool,
                                                    misrecognised)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--run", required=True, help="a finished `asrguard reproduce jayashankar2020` folder")
parser.add_argument("--out", required=True, help="the compare-detectors folder whose cached rows to use")
parser.add_argument("--n-extra", type=int, default=300, help="extra benign fitting utterances")
parser.add_argument("--pool", type=int, default=1000, help="the benign pool (as compare-detectors --benign-pool)")
parser.add_argument("--pool-draw", default="benign-pool",
                    help="what the pool's seed is derived from; anything but the default draws another pool")
parser.add_argument("--kinds", default="uncertainty,combined")
args = parser.parse_args()

rec = load_recognizer(None)
sets = comparison_sets(args.run, rec, n_english=60, n_calibration=300, n_benign_pool=args.pool)
s = sets.settings
root = Path(sets.run["data_root"])
if args.pool_draw != "benign-pool":  # excluded as compare-detectors does: every source and calibration input
    sources_and_calibration = {e.id for group in (sets.fit_benign, sets.calibration, sets.test_benign) for e in group}
    sets.benign_pool = _utterances("benign-pool", held_out_pool(s, root, rec.sample_rate, sources_and_calibration,
                                                                args.pool, purpose=args.pool_draw))
taken = {e.id for group in (sets.fit_benign, sets.calibration, sets.test_benign, sets.benign_pool) for e in group}
extra = _utterances("benign-fit-extra", held_out_pool(s, root, rec.sample_rate, taken, args.n_extra,
                                                      purpose="benign-fit-extra"))
wrong = {name: set(misrecognised(rec, group)) for name, group in
         (("fit_benign", sets.fit_benign), ("extra", extra), ("test_benign", sets.test_benign),
          ("benign_pool", sets.benign_pool))}
wrong_test = wrong["test_benign"] | wrong["benign_pool"]
out = {"run": args.run, "n_extra": len(extra), "n_pool": len(sets.benign_pool), "pool_draw": args.pool_draw,
       "misrecognised": {name: [len(ids), n] for (name, ids), n in
                         zip(wrong.items(), (len(sets.fit_benign), len(extra), len(sets.test_benign),
                                             len(sets.benign_pool)))}, "detectors": {}}
for kind in args.kinds.split(","):
    out["detectors"][kind] = {}
    for label, benign in (("as compared", sets.fit_benign), ("with extra benign", sets.fit_benign + extra)):
        det = _fresh_detector(kind, rec, s, 0, "all-svm")
        source = FeatureSource(det, args.run, args.out, s)
        det.fit_features(source.table(benign), source.table(sets.fit_adversarial), source.table(sets.calibration))
        threshold = float(det.threshold)

        def scores_of(entries):
            return det.score_features(source.table(entries)) if entries else np.zeros(0)

        cells = {a: _attack_cell(sets, a, scores_of, threshold, wrong_test) for a in sets.attacks}
        out["detectors"][kind][label] = {
            "n_fit_benign": len(benign), "threshold": threshold, "cells": cells,
            "false_alarms": {k: float(np.mean(scores_of(e) > threshold)) for k, e in sets.held_out.items()},
            "flagged_benign_pool": {g: float(np.mean(scores_of([e for e in sets.benign_pool
                                                                if (e.id in wrong_test) == m]) > threshold))
                                    for g, m in (("recognised", False), ("misrecognised", True))}}
        for name, key in (("own sources", None), ("+ pool", "benign_pool"), ("pool, right", "benign_pool_recognised")):
            got = {a: cells[a] if key is None else cells[a][key] for a in ("cw", "dr", "nrr", "ia")}
            print(f"{kind:12s} {label:18s} {name:12s} AUROC " + " / ".join(f"{got[a]['auroc']:.3f}" for a in got)
                  + "  TPR " + " / ".join(f"{100 * got[a]['tpr_at_1pct_fpr']:.1f}" for a in got), file=sys.stderr)
print(json.dumps(out, indent=1))
