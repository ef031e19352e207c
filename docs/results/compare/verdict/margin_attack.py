"""Craft the dropout detector's verdict-asking attacker (dropout-evasion) with a score margin.

The attacker checks success with its own copy of the detector, whose masks differ from the deployed
detector's; an example just under the threshold for the copy is above it for the deployed masks about half
the time. A margin asks the copy for a score that far below the threshold. This crafts the attacker with
CW's budget and schedule (as `compare-detectors` does) on the first N test sources CW succeeded on, and
prints the folder; score it with `compare-detectors --adaptive uncertainty=FOLDER`.

    python docs/results/compare/verdict/margin_attack.py --margin 0.5 --n 27
"""
import argparse
import dataclasses
from pathlib import Path

from asrguard.experiments.comparison.adaptive import adaptive_attack, attack_toward_cw_targets, cw_schedule
from _fitted import fitted_uncertainty

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--margin", type=float, required=True, help="score margin below the threshold")
parser.add_argument("--n", type=int, default=27, help="test sources (the first N CW succeeded on)")
parser.add_argument("--run", type=Path, default=Path("runs/j_mixed"))
parser.add_argument("--out", type=Path, default=Path("runs/compare"))
args = parser.parse_args()

rec, sets, detector, source, benign_rows = fitted_uncertainty(args.run, args.out)
attack = adaptive_attack("uncertainty", detector, rec, benign_rows, 0, schedule=cw_schedule(sets))
attack = type(attack)(rec, dataclasses.replace(attack.config, score_margin=args.margin), detector=detector)
cw = {e.source: e.record for e in sets.attacks["cw"]}
sources = [e for e in sets.test_benign if e.source in cw][: args.n]
folder = attack_toward_cw_targets(attack, sources, cw, args.out / "adaptive" / f"{attack.name}-{attack.config_hash}")
print(folder)
