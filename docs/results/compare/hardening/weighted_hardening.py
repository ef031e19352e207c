"""Hardening with the adaptive examples weighted up: does the combined detector then catch examples made
against it, without more false alarms?

Session 14's hardened detector was fitted on benign + 47 DR + 7 adaptive rows, and the few adaptive
rows weighed little. Here every adaptive example crafted on *fitting* sources so far (the plain
attacker's and the 0.3-margin attacker's, runs/compare/hardening/fit-*) is repeated K times in the
adversarial class, for several K. Each refit is scored on the non-adaptive cells, the held-out
benign sets, and every combined-evasion folder made on *test* sources (all made against other
detectors than these, so this is transfer, not a fresh adaptive attack). Features are cached:
about 15 s in all.

``--attack K`` then crafts a fresh attacker against the detector refitted with K repeats: combined-evasion
with score margin 0.3 and CW's budget and schedule, on the same 8 test sources as every combined
attacker before (about 30 min), and scores it (it goes into weighted.json under "fresh_attack").

    python docs/results/compare/hardening/weighted_hardening.py --attack 3 > docs/results/compare/hardening/weighted.txt

``--deep`` asks that attacker for more: its score margin is the refit's threshold minus the median score
of the held-out benign test utterances ("look like typical benign speech"), as
docs/results/compare/deep_margin/deep_margin.py does against the unhardened detector (about 45 min;
into weighted.json under "fresh_attack_deep", beside the 0.3-margin one).

    python docs/results/compare/hardening/weighted_hardening.py --attack 3 --deep > docs/results/compare/hardening/weighted_deep.txt
"""
import argparse
import json
from pathlib import Path

import numpy as np

from asrguard.asr.registry import load_recognizer
from asrguard.attacks.combined_evasion import CombinedEvasionAttack, CombinedEvasionConfig
from asrguard.detect.combined import CombinedDetector
from asrguard.experiments.comparison import adaptive_summary, cell_metrics
from asrguard.experiments.comparison.adaptive import EOT_GAMMA, attack_toward_cw_targets, cw_schedule
from asrguard.experiments.comparison.inputs import FeatureSource, attack_entries, comparison_sets

RUN, FEATURES = Path("runs/j_mixed"), Path("runs/compare")
FIT_FOLDERS = sorted((FEATURES / "hardening").glob("fit-combined-evasion-*"))
TEST_FOLDERS = [FEATURES / "adaptive" / "combined-evasion-f326042ca101", FEATURES / "adaptive" / "combined-evasion-8360dad6787d",
                FEATURES / "hardening" / "margin-combined-evasion-426fe6b0385d",
                *sorted((FEATURES / "hardening").glob("test-combined-evasion-*"))]
REPEATS = (0, 1, 3, 6)
MARGIN, N_ATTACK = 0.3, 8
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--attack", type=int, choices=REPEATS, help="craft a fresh attacker against the refit with K repeats")
parser.add_argument("--deep", action="store_true",
                    help="margin = threshold - median held-out benign score, instead of 0.3")
args = parser.parse_args()

rec = load_recognizer(None)
sets = comparison_sets(RUN, rec, n_english=60, n_calibration=300)
s, rate = sets.settings, rec.sample_rate
fit_ids = {e.source for e in sets.fit_benign}
det = CombinedDetector(rec, n=s.n_realizations, p=s.p_main, seed=s.seed)
src = FeatureSource(det, RUN, FEATURES, s)
fit_adaptive = [e for f in FIT_FOLDERS for e in attack_entries(f.name, {"folder": f, "config_hash": ""}, fit_ids, rate,
                                                                 kind=f"adaptive-{f.name}")]
adaptive_rows = src.table(fit_adaptive)
benign_rows, dr_rows, calibration = src.table(sets.fit_benign), src.table(sets.fit_adversarial), src.table(sets.calibration)
test = {f.name: attack_entries(f.name, {"folder": f, "config_hash": ""}, sets.test_sources(), rate,
                               kind=f"adaptive-{f.name}") for f in TEST_FOLDERS if f.exists()}
print(f"fitting-source adaptive examples: {len(fit_adaptive)} from {[f.name for f in FIT_FOLDERS]}; DR rows {len(dr_rows)}")

results = {"fit_folders": [f.name for f in FIT_FOLDERS], "n_fit_adaptive": len(fit_adaptive), "rows": {}}
detectors = {}
for k in REPEATS:
    adversarial = np.vstack([dr_rows] + [adaptive_rows] * k)
    fitted = CombinedDetector(rec, n=s.n_realizations, p=s.p_main, seed=s.seed).fit_features(benign_rows, adversarial,
                                                                                             calibration)
    detectors[k] = fitted
    score = lambda entries: fitted.score_features(src.table(entries)) if entries else np.zeros(0)
    cells = {a: cell_metrics(score(sets.benign_for(a)), score(e), fitted.threshold) for a, e in sets.attacks.items()}
    alarms = {name: float(np.mean(score(v) > fitted.threshold)) for name, v in sets.held_out.items() if v}
    transfer = {}
    for name, entries in test.items():
        scores = score(entries)
        own = score([e for e in sets.test_benign if e.source in {x.source for x in entries}])
        transfer[name] = {"n": len(entries), "evaded": int(np.sum(scores <= fitted.threshold)),
                          "auroc_vs_own_sources": cell_metrics(own, scores, fitted.threshold)["auroc"]}
    results["rows"][k] = {"cells": cells, "false_alarms": alarms, "transfer": transfer,
                          "distances_dropped": fitted.metadata.get("distances_dropped")}
    print(f"K = {k} ({k * len(fit_adaptive)} adaptive rows beside {len(dr_rows)} DR):")
    print("  " + " | ".join(f"{a} {c['auroc']:.3f} / {100 * c['tpr_at_1pct_fpr']:.0f} %" for a, c in cells.items())
          + "   (AUROC / TPR at 1 % FPR)")
    print("  false alarms: " + ", ".join(f"{n} {100 * v:.1f} %" for n, v in alarms.items()))
    print("  transfer: " + "; ".join(f"{n} {t['evaded']} of {t['n']} evade (AUROC {t['auroc_vs_own_sources']:.3f})"
                                     for n, t in transfer.items()))
if args.attack is not None:
    target = detectors[args.attack]
    held_out = target.score_features(src.table(sets.test_benign))
    margin = round(float(target.threshold - np.median(held_out)), 3) if args.deep else MARGIN
    cw = {e.source: e.record for e in sets.attacks["cw"]}
    sources = [e for e in sets.test_benign if e.source in cw][:N_ATTACK]
    config = CombinedEvasionConfig(masks_per_step=4, gamma=EOT_GAMMA, seed=s.seed, score_margin=margin, **cw_schedule(sets))
    attack = CombinedEvasionAttack(rec, config, detector=target)
    folder = attack_toward_cw_targets(attack, sources, cw,
                                      FEATURES / "hardening" / f"weighted{args.attack}-{'deep-' if args.deep else ''}{attack.name}-{attack.config_hash}")
    entries = attack_entries(folder.name, {"folder": folder, "config_hash": ""}, {e.source for e in sources}, rate,
                             kind=f"adaptive-{folder.name}")
    own = target.score_features(src.table([e for e in sets.test_benign if e.source in {x.source for x in entries}]))
    scores = target.score_features(src.table(entries))
    summary = adaptive_summary(scores, entries, len(sources), target.threshold, own, cw, held_out=held_out)
    summary["scores"] = scores.tolist()
    results["fresh_attack_deep" if args.deep else "fresh_attack"] = {"repeats": args.attack, "folder": folder.name,
                                                                     "margin": margin, **summary}
    d, c = summary["distortion_evading"], summary["distortion_cw_same_sources"]
    print(f"fresh {margin}-margin attacker against K = {args.attack} ({folder.name}): {summary['evaded']} of {len(sources)} evade "
          f"(reached target {summary['reached_target']}); AUROC against their sources {summary['vs_benign_auroc']:.3f}, "
          f"against every held-out benign test utterance {summary['vs_held_out_auroc']:.3f}; "
          f"evading at {d['mean_db_x_delta']} dB (n={d['n']}), CW on the same sources {c['mean_db_x_delta']} dB")
out = Path(__file__).with_name("weighted.json")
if out.exists():  # keep the other fresh attacker's entry
    for key, value in json.loads(out.read_text()).items():
        results.setdefault(key, value)
out.write_text(json.dumps(results, indent=1, default=float) + "\n")
