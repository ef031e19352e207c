"""combined-evasion with a score margin, against the combined detector (not hardened), on 8 test sources.

Made against the first attacker's weakness seen in README.md: its examples stop at the threshold
of its own copy of the detector, and the deployed detector's other draws then catch most of them.
With ``score_margin`` the attacker keeps going until its copy scores that far below the threshold.
The margin, 0.3, was set from the spread seen there (+0.01 to +0.19 above the threshold).

    python docs/results/compare/hardening/margin_attack.py > docs/results/compare/hardening/margin_results.txt
"""
import json
from pathlib import Path

from asrguard.asr.registry import load_recognizer
from asrguard.attacks.combined_evasion import CombinedEvasionAttack, CombinedEvasionConfig
from asrguard.detect.combined import CombinedDetector
from asrguard.experiments.comparison import adaptive_summary
from asrguard.experiments.comparison.adaptive import EOT_GAMMA, attack_toward_cw_targets
from asrguard.experiments.comparison.inputs import FeatureSource, attack_entries, comparison_sets

MARGIN, N = 0.3, 8
run, features = Path("runs/j_mixed"), Path("runs/compare")
rec = load_recognizer(None)
sets = comparison_sets(run, rec, n_english=60, n_calibration=300)
s, rate = sets.settings, rec.sample_rate
det = CombinedDetector(rec, n=s.n_realizations, p=s.p_main, seed=s.seed)
src = FeatureSource(det, run, features, s)
det.fit_features(src.table(sets.fit_benign), src.table(sets.fit_adversarial), src.table(sets.calibration))

cw = {e.source: e.record for e in sets.attacks["cw"]}
sources = [e for e in sets.test_benign if e.source in cw][:N]  # the same 8 as harden_combined.py's step 5
config = CombinedEvasionConfig(masks_per_step=4, gamma=EOT_GAMMA, seed=s.seed, max_iter=600, score_margin=MARGIN)
attack = CombinedEvasionAttack(rec, config, detector=det)
folder = attack_toward_cw_targets(attack, sources, cw, features / "hardening" / f"margin-{attack.name}-{attack.config_hash}")

entries = attack_entries(folder.name, {"folder": folder, "config_hash": ""}, sets.test_sources(), rate,
                         kind=f"adaptive-{folder.name}")
scores = det.score_features(src.table(entries))
benign = det.score_features(src.table([e for e in sets.test_benign if e.source in {x.source for x in entries}]))
summary = adaptive_summary(scores, entries, N, det.threshold, benign, cw)
summary["score_minus_threshold"] = [round(float(x - det.threshold), 3) for x in scores]
d, c = summary["distortion_evading"], summary["distortion_cw_same_sources"]
print(f"{folder.name}: margin {MARGIN}; reached target {summary['reached_target']} of {N}, evade {summary['evaded']}; "
      f"AUROC against their sources {summary['vs_benign_auroc']:.3f}; evading at {d['mean_db_x_delta']} dB "
      f"(n={d['n']}), all at {summary['distortion_all']['mean_db_x_delta']} dB; CW on the same sources "
      f"{c['mean_db_x_delta']} dB; score - threshold {summary['score_minus_threshold']}")
Path(__file__).with_name("margin_results.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
