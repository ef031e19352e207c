"""Other stopping schedules, on the score paths the sequential experiment cached: is there one whose
AUROC drop is at most 0.005 with few realisations?

Reads OUT/paths_chunk10.json (+ _mask{S} for mask seeds 1-5) and OUT/paths_chunk5.json (seed 0) from
``python -m asrguard.experiments.sequential --out OUT`` (with ``--chunk 5`` and ``--mask-seeds`` for those
files), splits the inputs as the experiment does, and for each schedule (the realisation counts at which the
score is checked; the last is I = 50) calibrates margins on the calibration half and reports, on the test
half, the AUROC drop against I = 50 and the mean number of realisations drawn. ``mapped`` also replaces an
early score by a linear fit of the I = 50 score on it (fitted on the calibration inputs that stop there),
kept on its side of the threshold: does a better estimate of the final score shrink the drop?
No timing here: a schedule's cost follows its realisations (see README).

    python docs/results/sequential/schedules.py --out runs/sequential > docs/results/sequential/schedules.json

``--masks balanced`` reads the paths the experiment drew with ``--masks balanced`` (``*_balanced.json``; no
chunks of 5). Both report ``fixed``: the mean AUROC over seeds of the score after k draws, no stopping.

    python docs/results/sequential/schedules.py --out runs/sequential --masks balanced > docs/results/sequential/schedules_balanced.json
"""
import argparse
import json
from pathlib import Path

import numpy as np

from asrguard.defaults import load_detector
from asrguard.detect.sequential import calibrate_margins, decide
from asrguard.evaluate.detection import auroc, split_by_source
from asrguard.experiments.sequential import speaker_of

SCHEDULES_10 = ([10, 20, 30, 40, 50], [10, 50], [10, 20, 50], [10, 30, 50], [20, 50], [20, 30, 40, 50], [30, 50])
SCHEDULES_5 = ([5, 10, 20, 30, 40, 50], [5, 10, 50], [5, 50], [10, 20, 30, 40, 50], [15, 50], [20, 50])


def load(path: Path):
    paths = json.loads(path.read_text())  # keys "label:item id", in the experiment's input order
    keys = list(paths)
    labels = np.array([int(k.split(":", 1)[0]) for k in keys])
    calibrate, test = split_by_source([speaker_of(k.split(":", 1)[1]) for k in keys], 0.5, seed=0)
    return np.array([paths[k] for k in keys]), labels, calibrate, test


def evaluate(scores, labels, calibrate, test, checks, step, threshold, mapped):
    """AUROC drop against the last column and mean realisations, for stopping checks ``checks``."""
    q = scores[:, [c // step - 1 for c in checks]]
    margins = calibrate_margins(q[calibrate].tolist(), threshold)
    fits = []
    for j, margin in enumerate(margins):
        early, final = q[calibrate][:, j], q[calibrate][:, -1]
        stops = np.abs(early - threshold) >= margin
        fits.append(np.polyfit(early[stops], final[stops], 1) if mapped and stops.sum() >= 2 else None)
    decided, used = [], []
    for row in q[test]:
        score, k = decide(row.tolist(), margins, threshold)  # the detector's own stopping rule
        if k <= len(margins) and fits[k - 1] is not None:  # stopped early: the fit's estimate, on the same side
            estimate = float(np.polyval(fits[k - 1], score))
            score = max(estimate, np.nextafter(threshold, np.inf)) if score > threshold else min(estimate, threshold)
        decided.append(score)
        used.append(checks[k - 1])
    y = labels[test]
    return {"drop": auroc(y, q[test][:, -1]) - auroc(y, np.array(decided)), "mean_realizations": float(np.mean(used)),
            "margins": [round(m, 4) for m in margins]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/sequential"))
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--masks", choices=["iid", "balanced"], default="iid")
    args = parser.parse_args()
    threshold = load_detector().threshold
    seeds = [int(s) for s in args.seeds.split(",")]
    suffix = "" if args.masks == "iid" else f"_{args.masks}"
    result = {"threshold": threshold, "masks": args.masks, "fixed": {}, "chunk10": [], "chunk5_seed0": []}
    data = [load(args.out / (("paths_chunk10" if s == 0 else f"paths_chunk10_mask{s}") + suffix + ".json"))
            for s in seeds]
    for k in range(data[0][0].shape[1]):
        values = [auroc(labels[test], scores[test][:, k]) for scores, labels, _, test in data]
        result["fixed"][f"I{10 * (k + 1)}"] = {"auroc_mean": float(np.mean(values)),
                                              "auroc_sd": float(np.std(values, ddof=1)), "per_seed": values}
    for checks in SCHEDULES_10:
        for mapped in (False, True):
            rows = [evaluate(*d, checks, 10, threshold, mapped) for d in data]
            drops = [r["drop"] for r in rows]
            result["chunk10"].append({"checks": checks, "mapped": mapped, "drop_per_seed": drops,
                                      "drop_mean": float(np.mean(drops)),
                                      "mean_realizations": float(np.mean([r["mean_realizations"] for r in rows]))})
    five = load(args.out / "paths_chunk5.json") if args.masks == "iid" else None
    for checks in SCHEDULES_5 if five is not None else ():
        for mapped in (False, True):
            result["chunk5_seed0"].append({"checks": checks, "mapped": mapped,
                                           **evaluate(*five, checks, 5, threshold, mapped)})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
