"""Pilot: would dropout after the recurrent layers only make realisations cheap without losing detection?

Draws the shipped detector's realisations with every dropout before the LSTMs switched off (their
masks replaced by all-kept, rescaled), so only the dropout after the last hidden layer varies;
"all" keeps every site (a check that the pilot reproduces the shipped numbers). Computes the run's
uncertainty features afresh into OUT/run/features (a copy of runs/j_mixed's results.json with p
replaced, so the real cache is never touched) and runs `compare-detectors` for the uncertainty
detector alone. A pilot: it patches the mask function in place instead of adding a setting.

    python docs/results/sequential/head_dropout_pilot.py 0.1 /tmp/pilot/head0.1 head
    python docs/results/sequential/head_dropout_pilot.py 0.1 /tmp/pilot/all0.1 all
"""
import sys, json, shutil, pathlib, torch
import asrguard.asr.ctc.recognizer as R
from asrguard.asr.ctc.masks import realization_keep_masks as orig
P, OUT = float(sys.argv[1]), pathlib.Path(sys.argv[2])
MODE = sys.argv[3] if len(sys.argv) > 3 else "head"
def patched(n_frames, n, widths, p, seed, dtype=torch.bool):
    kept, keep = orig(n_frames, n, widths, p, seed, torch.float32)
    if MODE == "head":
        kept = [torch.full_like(k, keep) for k in kept[:-1]] + [kept[-1]]
    return kept, keep
R.realization_keep_masks = patched
R.CTCRecognizer._realization_dtype = lambda self, precision: torch.float32
run = OUT / "run"
if not run.exists():
    run.mkdir(parents=True)
    for f in ("results.json", "setup.json"):
        shutil.copy(f"runs/j_mixed/{f}", run / f)
    r = json.loads((run / "results.json").read_text()); r["settings"]["p_main"] = P
    (run / "results.json").write_text(json.dumps(r))
from asrguard.experiments.comparison import compare
res = compare(OUT / "cmp", run_dir=run, kinds=("uncertainty",), progress=False)
c = res["cells"]["uncertainty"]
print(MODE, P, {a: (round(v["auroc"], 3), round(v["tpr_at_1pct_fpr"], 3)) for a, v in c.items()}, res["false_alarms"]["uncertainty"])
