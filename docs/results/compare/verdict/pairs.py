"""Per example of each dropout-evasion folder: the attacker's copy's score, the deployed detector's, dB_x(δ).

The attacker checks success with its own copy of the fitted detector (masks from its own seed); the
deployed detector draws the run's masks, which the attacker never learns. This prints both scores side by
side, with the threshold, so the gap between "passed the attacker's check" and "evades the deployed
detector" can be read example by example. Features come from the comparison's cache.

    python docs/results/compare/verdict/pairs.py runs/compare/adaptive/dropout-evasion-* > docs/results/compare/verdict/pairs.txt
"""
import argparse
import json
from pathlib import Path

import numpy as np

from asrguard.experiments.comparison.inputs import attack_entries
from _fitted import fitted_uncertainty

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folders", type=Path, nargs="+")
parser.add_argument("--run", type=Path, default=Path("runs/j_mixed"))
parser.add_argument("--out", type=Path, default=Path("runs/compare"))
args = parser.parse_args()

rec, sets, det, source, _ = fitted_uncertainty(args.run, args.out)
held_out = det.score_features(source.table(sets.test_benign))
cw = {e.source: e.record for e in sets.attacks["cw"]}
print(f"threshold {det.threshold:.3f}; held-out benign test scores: median {np.median(held_out):.3f}, "
      f"90th percentile {np.percentile(held_out, 90):.3f} (n={len(held_out)})")
for folder in args.folders:
    config = json.loads((folder / "run.json").read_text())["config"]
    rows = {r["id"]: r for r in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines())}
    entries = attack_entries(folder.name, {"folder": folder, "config_hash": ""}, sets.test_sources(), rec.sample_rate,
                             kind=f"adaptive-{folder.name}")
    deployed = det.score_features(source.table(entries))
    passed = [e for e in entries if rows[e.id]["n_successes"] > 0]
    print(f"\n{folder.name}: score_margin {config['score_margin']}; {len(entries)} reached the target, "
          f"{len(passed)} passed the attacker's own check, {int(np.sum(deployed <= det.threshold))} evade the "
          "deployed detector")
    evading = [e for e, score in zip(entries, deployed) if score <= det.threshold]
    extra = [e.record["db_x_delta"] - cw[e.source]["db_x_delta"] for e in evading if e.source in cw]
    if extra:
        print(f"  paired with CW on the evading examples' own sources: {np.mean(extra):+.1f} dB mean "
              f"(median {np.median(extra):+.1f}, n={len(extra)})")
    print("  copy    deployed  evades  passed  dB_x(δ)  CW dB   target")
    for e, score in sorted(zip(entries, deployed), key=lambda pair: pair[0].record["uncertainty_score"]):
        r = rows[e.id]
        print(f"  {r['uncertainty_score']:6.3f}  {score:8.3f}  {str(bool(score <= det.threshold)):6}  "
              f"{str(r['n_successes'] > 0):6}  {r['db_x_delta']:7.1f}  {cw[e.source]['db_x_delta']:6.1f}  {r['target']}")
