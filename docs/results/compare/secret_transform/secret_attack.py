"""Craft the transform detector's BPDA attacker when the detector's seed is secret.

The transform detector's Griffin-Lim phase and LPC noise come from its seed. `compare-detectors` crafts
`bpda-transform` against a detector whose seed the attacker knows; here the seed is secret, so the
attacker takes an expectation over fresh seeds every step and checks success under a seed of its own
(`fresh_seeds`). CW's budget and schedule, the first N test sources CW succeeded on, CW's targets. Prints
the folder; score it against the deployed detector (seed 0) with
`compare-detectors --adaptive transform=FOLDER`.

    python docs/results/compare/secret_transform/secret_attack.py --n 27
"""
import argparse
from pathlib import Path

from asrguard.asr.registry import load_recognizer
from asrguard.experiments.comparison import _fresh_detector
from asrguard.experiments.comparison.adaptive import adaptive_attack, attack_toward_cw_targets, cw_schedule
from asrguard.experiments.comparison.inputs import comparison_sets

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n", type=int, default=27, help="test sources (the first N CW succeeded on)")
parser.add_argument("--run", type=Path, default=Path("runs/j_mixed"))
parser.add_argument("--out", type=Path, default=Path("runs/compare"))
args = parser.parse_args()

rec = load_recognizer(None)
sets = comparison_sets(args.run, rec, n_english=60, n_calibration=300)
detector = _fresh_detector("transform", rec, sets.settings, 0, "all-svm").set_mask_seed("random")
attack = adaptive_attack("transform", detector, rec, None, 0, schedule=cw_schedule(sets))
assert attack.config.fresh_seeds, attack.config
cw = {e.source: e.record for e in sets.attacks["cw"]}
sources = [e for e in sets.test_benign if e.source in cw][: args.n]
folder = attack_toward_cw_targets(attack, sources, cw, args.out / "adaptive" / f"{attack.name}-{attack.config_hash}")
print(folder)
