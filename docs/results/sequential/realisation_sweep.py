"""Sweep: the shipped uncertainty detector refitted on features from I realisations and mask seed S.

For each (I, S), compute the mixed run's uncertainty features afresh with I realisations drawn from
mask seed S (into OUT/I{I}_seed{S}/run/features, a copy of runs/j_mixed's results.json with I
replaced, so the real cache is never touched), refit the shipped all-svm classifier and score every
cell of `compare-detectors` for the uncertainty detector alone. Seed 0 with I = 50 reproduces
docs/results/compare/tables.md. Appends one JSON line per (I, S) to OUT/sweep.jsonl (done pairs are
skipped, so it resumes) and prints the mean and spread over seeds.

    python docs/results/sequential/realisation_sweep.py --out /tmp/sweep --n 50,10,8 --seeds 0,1,2,3,4,5

``--p 0.2`` draws the realisations at another dropout rate (into OUT/I{I}_seed{S}_p0.2);
``--masks balanced`` draws balanced masks (asrguard.asr.ctc.masks; into OUT/I{I}_seed{S}_balanced).

About 35 s per pair with I = 50 and 15 s with I = 10, on the 2-core machine.
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from asrguard.experiments.comparison import compare

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--run", type=Path, default=Path("runs/j_mixed"))
parser.add_argument("--n", default="50,10,8", help="realisation counts I")
parser.add_argument("--seeds", default="0,1,2,3,4,5", help="mask seeds")
parser.add_argument("--p", type=float, default=None, help="detection dropout rate (default: the run's, 0.1)")
parser.add_argument("--masks", choices=["iid", "balanced"], default="iid", help="how the I masks relate")
args = parser.parse_args()
suffix = ("" if args.p is None else f"_p{args.p:g}") + ("" if args.masks == "iid" else f"_{args.masks}")
masks = None if args.masks == "iid" else args.masks  # rows written before --masks carry none
args.out.mkdir(parents=True, exist_ok=True)
log = args.out / "sweep.jsonl"
done = ({(r["I"], r["seed"], r.get("p"), r.get("masks")) for r in map(json.loads, log.read_text().splitlines())}
        if log.exists() else set())
for seed in map(int, args.seeds.split(",")):
    for n in map(int, args.n.split(",")):
        if (n, seed, args.p, masks) in done:
            continue
        run = args.out / f"I{n}_seed{seed}{suffix}" / "run"
        run.mkdir(parents=True, exist_ok=True)
        for name in ("results.json", "setup.json"):
            shutil.copy(args.run / name, run / name)
        results = json.loads((run / "results.json").read_text())
        results["settings"]["n_realizations"] = n
        if args.p is not None:
            results["settings"]["p_main"] = args.p
        if masks is not None:
            results["settings"]["masks"] = masks
        (run / "results.json").write_text(json.dumps(results))
        res = compare(run.parent / "cmp", run_dir=run, kinds=("uncertainty",), mask_seed=seed, progress=False)
        row = {"I": n, "seed": seed, **({} if args.p is None else {"p": args.p}), **({} if masks is None else {"masks": masks}),
               "cells": {a: {"auroc": v["auroc"], "tpr_at_1pct_fpr": v["tpr_at_1pct_fpr"]}
                         for a, v in res["cells"]["uncertainty"].items()},
               "false_alarms": {k: v["rate"] for k, v in res["false_alarms"]["uncertainty"].items()}}
        with log.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

rows = [json.loads(line) for line in log.read_text().splitlines()]
summary = {}
for n, p, m in sorted({(r["I"], r.get("p"), r.get("masks")) for r in rows}, key=lambda k: (-k[0], k[1] or 0.0, k[2] or "")):
    mine = [r for r in rows if r["I"] == n and r.get("p") == p and r.get("masks") == m]
    summary[f"I{n}" + ("" if p is None else f"_p{p:g}") + ("" if m is None else f"_{m}")] = {a: {"auroc_mean": float(np.mean([r["cells"][a]["auroc"] for r in mine])),
                      "auroc_sd": float(np.std([r["cells"][a]["auroc"] for r in mine], ddof=1)) if len(mine) > 1 else 0.0,
                      "tpr_at_1pct_fpr_mean": float(np.mean([r["cells"][a]["tpr_at_1pct_fpr"] for r in mine])),
                      "seeds": len(mine)}
                  for a in mine[0]["cells"]}
print(json.dumps({"summary": summary}, indent=1))
