"""Does the adaptive attackers' shorter schedule inflate "the distortion the attacker needed"?

The adaptive attackers run CW's bound with a shorter schedule (AdaptiveConfig: at most 4 shrinks of
the bound, 600 steps, patience 30) than CW itself (8 shrinks, 1000 steps, patience 40). Starting at
dB_x(δ) = -25 dB, 4 shrinks of 0.8 stop at -32.7 dB while CW can go to -40.5 dB, so part of an
attacker's "extra distortion over CW" may be the schedule, not the detector. This crafts one
attacker again with CW's schedule on the same test sources and prints both summaries.

    python docs/results/compare/schedule/schedule_check.py --kind noise-flood > docs/results/compare/schedule/noise-flood.txt
    python docs/results/compare/schedule/schedule_check.py --kind combined --n 8 --margin 0.3 \
        --short-folder runs/compare/hardening/margin-combined-evasion-426fe6b0385d > docs/results/compare/schedule/combined.txt

``--margin`` sets the attacker's ``score_margin`` (combined only; see hardening/margin_attack.py);
``--short-folder`` scores an existing folder made with the short schedule instead of crafting it.
"""
import argparse
import dataclasses
import json
from pathlib import Path

from asrguard.asr.registry import load_recognizer
from asrguard.attacks.cw import CWConfig
from asrguard.experiments.comparison import _fresh_detector, adaptive_summary
from asrguard.experiments.comparison.adaptive import adaptive_attack, attack_toward_cw_targets
from asrguard.experiments.comparison.inputs import FeatureSource, attack_entries, comparison_sets

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--kind", default="noise-flood", help="detector kind whose own attacker is rerun")
parser.add_argument("--n", type=int, default=27)
parser.add_argument("--run", type=Path, default=Path("runs/j_mixed"))
parser.add_argument("--out", type=Path, default=Path("runs/compare"))
parser.add_argument("--margin", type=float, default=0.0, help="the combined attacker's score_margin")
parser.add_argument("--short-folder", type=Path, help="an existing folder crafted with the short schedule")
args = parser.parse_args()

rec = load_recognizer(None)
sets = comparison_sets(args.run, rec, n_english=60, n_calibration=300)
detector = _fresh_detector(args.kind, rec, sets.settings, 0, "all-svm")
source = FeatureSource(detector, args.run, args.out, sets.settings)
benign_rows = source.table(sets.fit_benign)
detector.fit_features(benign_rows, source.table(sets.fit_adversarial), source.table(sets.calibration))
cw = {e.source: e.record for e in sets.attacks["cw"]}
sources = [e for e in sets.test_benign if e.source in cw][: args.n]

cw_schedule = {k: getattr(CWConfig(), k) for k in ("max_shrinks", "max_iter", "patience")}
results = {"cw_schedule": cw_schedule}
for label, schedule in (("adaptive schedule", {}), ("CW's schedule", cw_schedule)):
    attack = adaptive_attack(args.kind, detector, rec, benign_rows, 0, 600)
    if schedule or args.margin:
        extra = {"score_margin": args.margin} if args.margin else {}
        held = {"detector": detector} if hasattr(attack, "detector") else {}  # the attacks that ask a detector
        attack = type(attack)(rec, dataclasses.replace(attack.config, **schedule, **extra), **held)
    if args.short_folder and not schedule:
        folder = args.short_folder
    else:
        folder = attack_toward_cw_targets(attack, sources, cw,
                                          args.out / "adaptive" / f"{attack.name}-{attack.config_hash}")
    entries = attack_entries(folder.name, {"folder": folder, "config_hash": ""}, {e.source for e in sources},
                             rec.sample_rate, kind=f"adaptive-{folder.name}")  # only the sources asked for
    scores = detector.score_features(source.table(entries))
    benign = detector.score_features(source.table([e for e in sets.test_benign if e.source in {x.source for x in entries}]))
    s = adaptive_summary(scores, entries, len(sources), detector.threshold, benign, cw)
    d, c = s["distortion_evading"], s["distortion_cw_same_sources"]
    print(f"{label} ({folder.name}, {attack.config.max_shrinks} shrinks, {attack.config.max_iter} steps): "
          f"{s['evaded']} of {len(sources)} evade, reached {s['reached_target']}; AUROC vs their sources "
          f"{s['vs_benign_auroc']:.3f}; evading at {d['mean_db_x_delta']} dB / SNR {d['median_snr_db']} dB (n={d['n']}); "
          f"CW on the same sources {c['mean_db_x_delta']} dB")
    results[label] = s
Path(__file__).with_name(f"{args.kind}.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
