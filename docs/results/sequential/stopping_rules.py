"""Other stopping rules, simulated on the cached score paths of `python -m asrguard.experiments.sequential`.

Same split and margins as that experiment. Prints the AUROC drop against I = 50 and the mean
realisations for (a) pushing early decisions away from the threshold by `shift` per chunk saved,
(b) stopping on the benign side only below a quantile of the adversarial calibration scores.

    python docs/results/sequential/stopping_rules.py 10 > docs/results/sequential/stopping_rules.txt
"""
import json, numpy as np, sys
from asrguard.detect.sequential import calibrate_margins, decide
from asrguard.evaluate.detection import auroc, split_by_source
from asrguard.experiments.sequential import speaker_of
chunk = int(sys.argv[1]) if len(sys.argv) > 1 else 10
cache = json.load(open(f"docs/results/sequential/paths_chunk{chunk}.json"))
res = json.load(open(f"docs/results/sequential/results_chunk{chunk}.json"))
thr = res["settings"]["threshold"]
keys = list(cache)
labels = np.array([int(k.split(":", 1)[0]) for k in keys]); ids = [k.split(":", 1)[1] for k in keys]
cal, test = split_by_source([speaker_of(i) for i in ids], 0.5, seed=0)
paths = [cache[k] for k in keys]
margins = calibrate_margins([p for p, c in zip(paths, cal) if c], thr)
K = len(paths[0])
ti = [i for i in range(len(keys)) if test[i]]
y = labels[ti]; fixed = np.array([paths[i][-1] for i in ti])
print("n test", len(ti), "cal", cal.sum(), "margins", np.round(margins, 3), "fixed auroc", round(auroc(y, fixed), 4))
def run(margins, shift):
    out, used = [], []
    for i in ti:
        s, k = decide(paths[i], margins, thr)
        if k < K and shift:
            s = s + np.sign(s - thr) * shift * (K - k)
        out.append(s); used.append(k * chunk)
    out = np.array(out)
    return auroc(y, out), np.mean(used), int(np.sum((out > thr) != (fixed > thr)))
for shift in (0, 10, 100):
    a, m, d = run(margins, shift)
    print(f"shift {shift}: auroc {a:.4f} drop {auroc(y, fixed)-a:.4f} mean draws {m:.1f} verdicts differ {d}")
ci = [i for i in range(len(keys)) if cal[i]]
adv_cal_final = np.array([paths[i][-1] for i in ci if labels[i] == 1])
ben_cal_final = np.array([paths[i][-1] for i in ci if labels[i] == 0])
print("adv cal final sorted", np.round(np.sort(adv_cal_final)[:8], 2), "thr", round(thr, 3))
print("benign cal final quantiles", np.round(np.quantile(ben_cal_final, [0.1, 0.5, 0.9]), 2))
def run2(q, slack):
    low = np.quantile(adv_cal_final, q) - slack
    out, used = [], []
    for i in ti:
        p = paths[i]; done = False
        for k, m in enumerate(margins, start=1):
            s = p[k - 1]
            if s >= thr + m or s <= min(thr - m, low):
                out.append(s); used.append(k * chunk); done = True; break
        if not done:
            out.append(p[-1]); used.append(K * chunk)
    out = np.array(out)
    return auroc(y, out), np.mean(used)
for q in (0.0, 0.05, 0.1, 0.2):
    for slack in (0.0, 0.25, 0.5):
        a, m = run2(q, slack)
        print(f"q {q} slack {slack}: drop {auroc(y, fixed)-a:.4f} mean draws {m:.1f}")
