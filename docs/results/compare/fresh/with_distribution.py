"""Pilot: the combined detector with the one-pass output statistics (the `distribution` detector's features) added.

The fresh run's misses are Speech Commands words attacked toward one-word commands, which leave little
transcript change for dropout, transforms or noise to show; their posteriors might still look unusual.
Not a library feature: the distribution rows (cached by both comparisons) are appended to the combined
detector's rows, named so that its fit treats them like the uncertainty features (their weights may take
either sign; only transcript distances must add). C is chosen on the first run's test cells and the
result is read on the fresh run, whose cells played no part in the choice.

    python docs/results/compare/fresh/with_distribution.py > docs/results/compare/fresh/with_distribution.json
"""
import json
import sys
from pathlib import Path

import numpy as np

from asrguard.asr.registry import load_recognizer
from asrguard.detect.combined import CombinedDetector
from asrguard.detect.registry import make_detector
from asrguard.experiments.comparison import cell_metrics
from asrguard.experiments.comparison.inputs import FeatureSource

sys.path.insert(0, str(Path(__file__).parent))
from pooled_fit import RUNS, combined_rows  # noqa: E402

C_VALUES = (0.01, 0.03, 0.1, 0.3)


def main() -> None:
    recognizer = load_recognizer(None)
    data = {}
    for name, (run, out) in RUNS.items():
        sets, combined = combined_rows(recognizer, run, out)
        stats = FeatureSource(make_detector("distribution", recognizer, seed=0, target_fpr=0.05), run, out,
                              sets.settings)
        data[name] = (sets, lambda entries, c=combined, d=stats: np.hstack([c.table(entries), d.table(entries)]))
    names = make_detector("distribution", recognizer).feature_names
    result = {"with_distribution": {}, "without": {}}
    for C in C_VALUES:
        for label, extra in (("with_distribution", True), ("without", False)):
            cells = {}
            for name, (sets, rows) in data.items():
                det = CombinedDetector(recognizer, C=C, seed=0)
                width = len(det.feature_names)
                if extra:  # "uncertainty:"-prefixed: exempt from the rule that distances only add
                    det.feature_names = det.feature_names + [f"uncertainty:distribution_{n}" for n in names]

                def table(entries, rows=rows, extra=extra, width=width):
                    return rows(entries) if extra else rows(entries)[:, :width]

                det.fit_features(table(sets.fit_benign), table(sets.fit_adversarial), table(sets.calibration))
                cells[name] = {}
                for attack, entries in sets.attacks.items():
                    m = cell_metrics(det.score_features(table(sets.benign_for(attack))),
                                     det.score_features(table(entries)), det.threshold_)
                    cells[name][attack] = [round(m["auroc"], 4), round(100 * m["tpr_at_1pct_fpr"], 1)]
                cells[name]["false_alarms"] = {k: round(100 * float(np.mean(det.score_features(table(v)) > det.threshold_)), 1)
                                               for k, v in sets.held_out.items()}
            result[label][f"C={C:g}"] = cells
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
