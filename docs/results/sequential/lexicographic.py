"""Does ranking early-stopped inputs by when they stopped shrink sequential scoring's AUROC drop? (session 21)

Re-decides the committed seed-0 score paths (`paths_chunk10.json`, chunks of 10) as `schedules.py` does, and scores
each test input two ways: its score where it stopped (as shipped), and a lexicographic score that puts inputs
settled benign after k checks below every input that went on longer, and inputs settled adversarial above them.

    python docs/results/sequential/lexicographic.py > docs/results/sequential/lexicographic.json   # seconds
"""
import json
from pathlib import Path

import numpy as np

from asrguard.defaults import load_detector
from asrguard.detect.sequential import calibrate_margins, decide
from asrguard.evaluate.detection import auroc
from schedules import load

threshold = load_detector().threshold
scores, labels, calibrate, test = load(Path(__file__).with_name("paths_chunk10.json"))
rows = []
for checks in ([10, 20, 30, 40, 50], [10, 50], [10, 20, 50], [20, 50]):
    q = scores[:, [c // 10 - 1 for c in checks]]
    margins = calibrate_margins(q[calibrate].tolist(), threshold)
    stopped, ranked, used = [], [], []
    for row in q[test]:
        score, k = decide(row.tolist(), margins, threshold)
        used.append(checks[k - 1])
        stopped.append(score)
        group = 0 if k == len(checks) else (len(checks) - k) * (1 if score > threshold else -1)
        ranked.append(group * 1000.0 + score)  # scores lie within ±1000: groups never mix
    y, final = labels[test], auroc(labels[test], q[test][:, -1])
    rows.append({"checks": checks, "auroc_i50": final, "drop_as_shipped": final - auroc(y, np.array(stopped)),
                 "drop_lexicographic": final - auroc(y, np.array(ranked)), "mean_realizations": float(np.mean(used))})
print(json.dumps(rows, indent=1))
