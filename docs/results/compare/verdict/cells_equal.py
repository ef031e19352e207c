"""Are a new comparison's non-adaptive cells, false alarms and thresholds the committed ones?

    python docs/results/compare/verdict/cells_equal.py runs/compare/results.json
"""
import json
import sys

new = json.load(open(sys.argv[1]))
old = json.load(open("docs/results/compare/results.json"))
for kind in new["cells"]:
    for attack, cell in new["cells"][kind].items():
        differ = {k: (old["cells"][kind][attack].get(k), v) for k, v in cell.items()
                  if old["cells"][kind][attack].get(k) != v}
        print(kind, attack, "equal" if not differ else differ)
    print(kind, "false alarms", "equal" if new["false_alarms"][kind] == old["false_alarms"][kind] else "differ")
    print(kind, "threshold", "equal" if new["detectors"][kind]["threshold"] == old["detectors"][kind]["threshold"]
          else "differs")
