"""The combined and uncertainty detectors' non-adaptive cells with the dropout masks drawn from other seeds.

Reuses the uncertainty features that docs/results/sequential/realisation_sweep.py computed for
mask seeds 0-5 at I = 50 (SWEEP/I50_seed{S}/run/features) and the rival detectors' cached rows
(runs/compare/features, through a link, so nothing there is rewritten). For each seed both detectors
are refitted and scored exactly as `compare-detectors` does; only the masks move. Seed 0
reproduces docs/results/compare/tables.md. Writes seeds.json beside this file and prints mean,
sd, minimum and maximum per cell. ``--n 100`` reads the sweep's I = 100 features instead (and
writes seeds_I100.json); ``--p 0.2`` reads the sweep's runs at dropout rate 0.2 (seeds_p0.2.json);
``--masks balanced`` its runs with balanced masks (seeds_balanced.json, or seeds_I10_balanced.json with --n 10).

    python docs/results/sequential/realisation_sweep.py --out runs/realisation_sweep --n 50 --seeds 0,1,2,3,4,5
    python docs/results/compare/seeds/combined_seeds.py --sweep runs/realisation_sweep
"""
import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from asrguard.experiments.comparison import compare

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--sweep", type=Path, default=Path("runs/realisation_sweep"))
parser.add_argument("--features", type=Path, default=Path("runs/compare/features"))
parser.add_argument("--seeds", default="0,1,2,3,4,5")
parser.add_argument("--n", type=int, default=50, help="realisations I (the sweep must hold I{N}_seed{S})")
parser.add_argument("--p", type=float, default=None, help="dropout rate of the sweep's --p runs (I{N}_seed{S}_p{P})")
parser.add_argument("--masks", choices=["iid", "balanced"], default="iid", help="the sweep's --masks runs")
parser.add_argument("--output", type=Path, default=None, help="where the JSON goes (default: beside this file, "
                                                              "named after --n, --p and --masks)")
args = parser.parse_args()
suffix = ("" if args.p is None else f"_p{args.p:g}") + ("" if args.masks == "iid" else f"_{args.masks}")

rows = []
for seed in map(int, args.seeds.split(",")):
    run = args.sweep / f"I{args.n}_seed{seed}{suffix}" / "run"
    if not (run / "results.json").is_file():
        raise SystemExit(f"{run}: run realisation_sweep.py for seed {seed} with I = {args.n} first")
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(args.features.resolve(), Path(tmp) / "features")
        res = compare(Path(tmp), run_dir=run, kinds=("uncertainty", "combined"), mask_seed=seed, progress=False)
    for kind in ("uncertainty", "combined"):
        rows.append({"seed": seed, "detector": kind,
                     "cells": {a: {"auroc": v["auroc"], "tpr_at_1pct_fpr": v["tpr_at_1pct_fpr"]}
                               for a, v in res["cells"][kind].items()},
                     "false_alarms": {k: v["rate"] for k, v in res["false_alarms"][kind].items()}})
        print(json.dumps(rows[-1]), flush=True)

summary = {}
for kind in ("uncertainty", "combined"):
    mine = [r for r in rows if r["detector"] == kind]
    summary[kind] = {}
    for a in mine[0]["cells"]:
        for m in ("auroc", "tpr_at_1pct_fpr"):
            v = np.array([r["cells"][a][m] for r in mine])
            summary[kind][f"{a}_{m}"] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                                         "min": float(v.min()), "max": float(v.max())}
    for k in mine[0]["false_alarms"]:
        v = np.array([r["false_alarms"][k] for r in mine])
        summary[kind][f"false_alarms_{k}"] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
out = {"rows": rows, "summary": summary}
output = args.output or Path(__file__).with_name("seeds" + ("" if args.n == 50 else f"_I{args.n}") + suffix + ".json")
output.write_text(json.dumps(out, indent=1) + "\n")
for kind, cells in summary.items():
    print(kind, {k: (round(v["mean"], 3), round(v["min"], 3), round(v["max"], 3)) for k, v in cells.items()})
