"""How the combined detector's members and C were chosen: a grid over cached features.

Reads the features `asrguard compare-detectors --run runs/j_mixed --out runs/compare` cached
(nothing is measured again, apart from features of the adaptive folders not yet cached), fits
a CombinedDetector per (members, C) exactly as compare-detectors does (fit: benign + DR of the
training sources; threshold: 5 % on the calibration set) and prints, per cell, AUROC / TPR at
1 % FPR [%] on the test sources, the AUROC against the three component attackers' folders, and
the false-alarm rates. The choice was made on these test cells, so the chosen cell is optimistic;
the paper-setup comparison (docs/results/compare/README.md) is the check on fresh sources.

    python docs/results/compare/choose_combined.py > docs/results/compare/choose_combined.md

``--run``/``--compare`` grid another run's cached comparison (adaptive columns only where its folders exist),
e.g. the fresh-source run: ``--run runs/j_mixed_s1 --compare runs/compare_s1``.
"""
import argparse

from pathlib import Path

import numpy as np

from asrguard.asr.registry import load_recognizer
from asrguard.detect.combined import CombinedDetector
from asrguard.experiments.comparison import cell_metrics
from asrguard.experiments.comparison.inputs import FeatureSource, attack_entries, comparison_sets

RUN, OUT = Path("runs/j_mixed"), Path("runs/compare")
ADAPTIVE = {"eot-dropout": "eot-dropout-5e3f6a9d583a", "stats-penalty": "stats-penalty-2802310493fc",
            "bpda-transform": "bpda-transform-a2b7325bc005"}
MEMBER_SETS = [(), ("transform",), ("noise-flood",), ("transform", "noise-flood")]
C_VALUES = (0.01, 0.03, 0.1, 0.3, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=RUN)
    parser.add_argument("--compare", type=Path, default=OUT)
    args = parser.parse_args()
    run, out = args.run, args.compare
    recognizer = load_recognizer(None)
    sets = comparison_sets(run, recognizer, n_english=60, n_calibration=300)
    s = sets.settings
    adaptive = {name: attack_entries(folder, {"folder": out / "adaptive" / folder, "config_hash": ""},
                                     sets.test_sources(), recognizer.sample_rate, kind=f"adaptive-{folder}")
                for name, folder in ADAPTIVE.items() if (out / "adaptive" / folder).is_dir()}
    print("| members | C | " + " | ".join(list(sets.attacks) + list(adaptive)) + " | false alarms |")
    print("|---|---:|" + "---|" * (len(sets.attacks) + len(adaptive)) + "---|")
    for members in MEMBER_SETS:
        for C in C_VALUES:
            # members=() is the uncertainty features alone, through the same SVM
            det = CombinedDetector(recognizer, members=members, n=s.n_realizations, p=s.p_main, C=C, seed=s.seed)
            source = FeatureSource(det, run, out, s)
            det.fit_features(source.table(sets.fit_benign), source.table(sets.fit_adversarial),
                             source.table(sets.calibration))

            def scores(entries):
                return det.score_features(source.table(entries))

            cells = []
            for attack, entries in sets.attacks.items():
                m = cell_metrics(scores(sets.benign_for(attack)), scores(entries), det.threshold_)
                cells.append(f"{m['auroc']:.3f} / {100 * m['tpr_at_1pct_fpr']:.0f}")
            for entries in adaptive.values():
                benign = scores([e for e in sets.test_benign if e.source in {x.source for x in entries}])
                cells.append(f"{cell_metrics(benign, scores(entries), det.threshold_)['auroc']:.3f}")
            alarms = ", ".join(f"{name} {100 * np.mean(scores(entries) > det.threshold_):.0f} %"
                               for name, entries in sets.held_out.items())
            print(f"| {'+'.join(('uncertainty',) + members)} | {C:g} | " + " | ".join(cells) + f" | {alarms} |",
                  flush=True)


if __name__ == "__main__":
    main()
