"""The first paper's detector on Whisper tiny.en and real English speech, split by speaker.

Numbered stages, each skipped when done (everything lives in ``--out``):

1. **attacks**: CW and DR against Whisper on ``--n`` ``english_speech`` utterances of 2–8 s,
   toward the paper's target and command phrases sized to each clip, from a −25 dB bound (the
   same folders as :mod:`asrguard.experiments.whisper_pilot` with the same settings, so either
   script completes the other's runs). DR crafts with dropout at the detector's own sites and rate.
2. **benign sets**: the attack sources, plus ``--per-subset`` more utterances of every
   ``english_speech`` subset (LibriSpeech, Common Voice, non-native adults and children, AN4)
   and held-out Speech Commands words and FSDD digits, for false alarms.
3. **features**: I = 50 realisations at Whisper's default (decoder, p = 0.02, seed 0) of every
   input, in a resumable JSONL (:mod:`asrguard.uncertainty.batch`; ``--executor ray`` spreads it).
4. **split**: ``english_speech`` speakers, 70 % to fitting and 30 % held out (seeded, by speaker),
   so no speaker of a test row was seen in fitting.
5. **classifiers**: every classifier of the reproduction, fitted on DR examples against benign
   speech of the fitting speakers (as the paper trains on DR), thresholds at 5 % FPR on that
   benign speech; measured on held-out speakers for each attack, and false alarms per subset.

    python -m asrguard.experiments.whisper_defence --out runs/whisper_defence --attacks-dir runs/whisper_cw100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..asr import recipes
from ..asr.recipes import default_data_root
from ..asr.registry import load_recognizer
from ..attacks.factory import make_attack
from ..attacks.runner import read_records, report, run_attack
from ..attacks.sources import load_items
from ..attacks.targets import TargetSampler
from ..audio import load_audio
from ..detect.classifiers import SPECS, make_classifier
from ..detect.detector import threshold_for_fpr
from ..evaluate.detection import detection_metrics, split_by_source
from ..evaluate.tables import AurocCells
from ..execute import make_executor
from ..fileio import atomic_write_text
from ..uncertainty.batch import extract_features
from ..uncertainty.features import FeatureExtractor, FeatureTable

ATTACKS = ("cw", "dr")
TRAIN_ATTACK = "dr"
#: english_speech subsets reported one by one (the few LJ Speech / LibriVox clips join LibriSpeech).
SUBSETS = {"librispeech": ("librispeech-test-other", "librispeech-test-clean", "librivox", "ljspeech"),
           "common-voice": ("common-voice",), "non-native adults": ("speechocean762-adults",),
           "non-native children": ("speechocean762-children",), "an4": ("an4",)}
TARGET_FPR = 0.05


def subset_of(source: str) -> str:
    return next((name for name, members in SUBSETS.items() if source in members), source)


def attack_stage(recognizer, items, folder: Path, args, executor) -> dict:
    """Stage 1: CW and DR (resumed; the pilot's settings, so its folders are shared)."""
    sampler = TargetSampler("commands", seed=args.seed)
    settings = {"seed": str(args.seed), "max_iter": str(args.max_iter), "max_shrinks": "2", "tau_db": "25"}
    out = {}
    for name in ATTACKS:
        extra = {"p_dr": str(recognizer.default_p)} if name == "dr" else {}
        attack = make_attack(name, recognizer, {**settings, **extra})
        path = folder / f"{name}-{attack.config_hash}"
        run_attack(attack, items, path, sampler=sampler, batch_size=1, executor=executor,
                   meta={"recognizer": "whisper:tiny.en", "n": args.n, "seed": args.seed})
        out[name] = {"folder": path, "report": report(path)}
    return out


def benign_stage(sources, args) -> list:
    """Stage 2: ``--per-subset`` more utterances of each subset (none an attack source), plus
    held-out Speech Commands words and FSDD digits."""
    root = default_data_root()
    taken = {it.id.split(":", 1)[1] for it in sources}
    records = [r for r in recipes.english_speech_records(root, min_seconds=2.0, max_seconds=8.0) if r.id not in taken]
    chosen = []
    for k, name in enumerate(SUBSETS):
        pool = [r for r in records if subset_of(r.source) == name]
        rng = np.random.default_rng([args.seed, 7, k])
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), min(args.per_subset, len(pool)), replace=False))]
    extra = [(f"benign:english-speech:{u.id}", u.waveform, u.speaker, subset_of(u.subset))
             for u in recipes.load_records(chosen, subsets=True)]
    for corpus, label in (("speech-commands", "speech commands words"), ("fsdd-isolated", "fsdd digits")):
        for u in recipes.evaluation_set(corpus, "test", root, limit=args.per_subset, seed=args.seed):
            extra.append((f"benign:{corpus}:{u.id}", u.waveform, None, label))
    return extra


def fit_and_measure(features: dict, rows: dict, split: dict, train_attack: str = TRAIN_ATTACK) -> dict:
    """Stage 5: each classifier fitted on ``train_attack`` (DR, as the paper) + benign of the fitting
    speakers; measured on held-out ones."""
    def table(keys):
        return FeatureTable.stack([features[k] for k in keys])

    fit_benign = [k for k, r in rows.items() if r["kind"] == "benign" and split.get(r["speaker"]) == "fit"]
    fit_adv = [k for k, r in rows.items() if r["kind"] == train_attack and split.get(r["speaker"]) == "fit"]
    test_sources = [k for k, r in rows.items() if r["kind"] == "benign" and r["source_of_attack"]
                    and split.get(r["speaker"]) == "test"]
    held_out_benign = [k for k, r in rows.items() if r["kind"] == "benign" and split.get(r["speaker"]) != "fit"]
    fit_benign_table = table(fit_benign)
    train_table = FeatureTable.concat([fit_benign_table, table(fit_adv)])
    labels = np.r_[np.zeros(len(fit_benign), int), np.ones(len(fit_adv), int)]
    # every table once, then scored by each classifier
    sources_table = table(test_sources)
    attack_tables = {}
    for attack in ATTACKS:
        adv = [k for k, r in rows.items() if r["kind"] == attack and split.get(r["speaker"]) == "test"]
        if adv and test_sources:
            attack_tables[attack] = table(adv)
    by_subset: dict = {}
    for k in held_out_benign:
        by_subset.setdefault(rows[k]["subset"], []).append(k)
    subset_tables = {subset: table(keys) for subset, keys in sorted(by_subset.items())}
    results = {}
    for name in SPECS:
        clf = make_classifier(name).fit(train_table, labels)
        threshold = threshold_for_fpr(clf.decision_function(fit_benign_table), TARGET_FPR)
        entry = {"n_fit_benign": len(fit_benign), "n_fit_adversarial": len(fit_adv), "threshold": threshold,
                 "attacks": {}, "false_alarms": {}}
        benign_scores = clf.decision_function(sources_table)
        for attack, adv_table in attack_tables.items():
            scores = clf.decision_function(adv_table)
            y = np.r_[np.zeros(len(benign_scores), int), np.ones(len(scores), int)]
            s = np.r_[benign_scores, scores]
            entry["attacks"][attack] = detection_metrics(y, s, threshold=threshold, interval=True)
        for subset, subset_table in subset_tables.items():
            flagged = clf.decision_function(subset_table) > threshold
            entry["false_alarms"][subset] = {"n": len(subset_table), "flagged": int(flagged.sum()),
                                             "rate": float(flagged.mean())}
        results[name] = entry
    return results


def tables(result: dict) -> str:
    cells = AurocCells()
    lines = ["# The first paper's detector on Whisper tiny.en (real English speech, held-out speakers)", ""]
    s = result["settings"]
    lines += [f"`python -m asrguard.experiments.whisper_defence --out {s['out']} --attacks-dir {s['attacks_dir']} "
              f"--n {s['n']} --per-subset {s['per_subset']}`", "",
              f"Split: {result['split']['n_fit_speakers']} `english_speech` speakers fit the classifiers and "
              f"thresholds, {result['split']['n_test_speakers']} others are held out (30 %, seed {s['seed']}, by "
              "speaker); Speech Commands and FSDD rows are held-out speakers of those corpora and are never fitted on. "
              f"Classifiers are fitted on {result['train_attack'].upper()} examples against benign speech of the "
              "fitting speakers; thresholds flag "
              f"{100 * TARGET_FPR:g} % of that benign speech. Realisations: I = 50, decoder dropout p = 0.02, "
              "seed 0.",
              "", "## Attacks", "",
              "| attack | success | mean dB_x(δ) | median SNR | success under one dropout draw (p = 0.1) | s per success |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, a in result["attacks"].items():
        lines.append(f"| {name.upper()} | {a['n_success']}/{a['n']} | {a['mean_db_x_delta']:.1f} | "
                     f"{a['median_snr_db']:.1f} dB | {100 * a['success_rate_with_dropout']:.0f} % | "
                     f"{a['seconds_per_success']:.0f} |")
    lines += ["", "## Detection on held-out speakers: AUROC (95 % bootstrap interval, n adversarial / benign) and "
              "TPR at the threshold", "",
              "| classifier | " + " | ".join(a.upper() for a in ATTACKS) + " |", "|---|" + "---|" * len(ATTACKS)]
    body = []
    for name, entry in result["classifiers"].items():
        row = [name]
        for attack in ATTACKS:
            m = entry["attacks"].get(attack)
            row.append(f"{cells.format(m)}; TPR {100 * m['true_positive_rate']:.0f} %" if m else "–")
        body.append("| " + " | ".join(row) + " |")
    subsets = sorted({k for e in result["classifiers"].values() for k in e["false_alarms"]})
    lines += body + ["", "## False alarms on held-out benign speech, per subset, at each classifier's threshold", "",
                     "| classifier | " + " | ".join(subsets) + " |", "|---|" + "---|" * len(subsets)]
    for name, entry in result["classifiers"].items():
        fa = entry["false_alarms"]
        cells_fa = [f"{100 * fa[k]['rate']:.0f} % ({fa[k]['flagged']}/{fa[k]['n']})" if k in fa else "–"
                    for k in subsets]
        lines.append("| " + name + " | " + " | ".join(cells_fa) + " |")
    return "\n".join(cells.banner(quick=False) + lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--attacks-dir", type=Path, default=None, help="attack folders (default: OUT/attacks)")
    parser.add_argument("--n", type=int, default=100, help="attack sources")
    parser.add_argument("--per-subset", type=int, default=30, help="extra benign utterances per subset")
    parser.add_argument("--max-iter", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--executor", default="local")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-attacks", action="store_true", help="use what the attack folders hold now")
    parser.add_argument("--features-only", action="store_true", help="stop after the features (stage 3)")
    parser.add_argument("--train-attack", default=TRAIN_ATTACK, choices=ATTACKS,
                        help="the attack whose examples fit the classifiers (the paper: dr)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    attacks_dir = args.attacks_dir or out / "attacks"
    executor = make_executor(args.executor, workers=args.workers)
    recognizer = load_recognizer("whisper:tiny.en")
    sources = load_items(["english-speech"], args.n, args.seed, default_data_root(), recognizer.sample_rate,
                         max_seconds=8.0, min_seconds=2.0)
    by_id = {r.id: r for r in recipes.english_speech_records(default_data_root())}

    # 1. attacks
    if args.skip_attacks:  # what the folders hold now (another process may still be filling them)
        folders = {name: sorted(attacks_dir.glob(f"{name}-*")) for name in ATTACKS}
        attacked = {name: {"folder": f[0], "report": report(f[0])} for name, f in folders.items()
                    if f and read_records(f[0])}
    else:
        attacked = attack_stage(recognizer, sources, attacks_dir, args, executor)

    # 2. benign sets
    inputs, rows = [], {}
    for it in sources:
        record = by_id[it.id.split(":", 1)[1]]
        key = f"benign:{it.id}"
        inputs.append((key, it.waveform))
        rows[key] = {"kind": "benign", "speaker": record.speaker, "subset": subset_of(record.source),
                     "source_of_attack": True}
    for name, a in attacked.items():
        for r in read_records(a["folder"]):
            if r.get("success"):
                record = by_id[r["id"].split(":", 1)[1]]
                key = f"{name}:{r['id']}"
                inputs.append((key, load_audio(a["folder"] / r["audio"], recognizer.sample_rate)[0]))
                rows[key] = {"kind": name, "speaker": record.speaker, "subset": subset_of(record.source),
                             "source_of_attack": False, "target": r.get("target")}
    # the extra benign sets last: the features of sources and examples matter first in a run cut short
    for key, waveform, speaker, subset in benign_stage(sources, args):
        inputs.append((key, waveform))
        rows[key] = {"kind": "benign", "speaker": speaker, "subset": subset, "source_of_attack": False}

    # 3. features
    extractor = FeatureExtractor(n=50, p=recognizer.default_p, seed=0)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("features", total=len(inputs))
        features = extract_features(recognizer, extractor, inputs, out / "features.jsonl", executor=executor,
                                    on_row=lambda row: bar.advance(task))

    if args.features_only or args.train_attack not in attacked:
        missing = "" if args.features_only else f"; no {args.train_attack.upper()} examples yet to fit on"
        print(f"features of {len(features)} inputs in {out / 'features.jsonl'}{missing}")
        return 0

    # 4. split by speaker
    speakers = sorted({r["speaker"] for r in rows.values() if r["speaker"] is not None})
    fit_mask, test_mask = split_by_source(speakers, 0.3, seed=args.seed)
    split = {s: ("fit" if f else "test") for s, f in zip(speakers, fit_mask)}
    atomic_write_text(out / "split.json", json.dumps({"fit": [s for s in speakers if split[s] == "fit"],
                                                       "test": [s for s in speakers if split[s] == "test"]}, indent=1))

    # 5. classifiers
    result = {"settings": {"out": str(out), "attacks_dir": str(attacks_dir), "n": args.n, "per_subset": args.per_subset,
                           "seed": args.seed, "max_iter": args.max_iter, "extractor": extractor.to_dict(),
                           "sites": recognizer.dropout_sites},
              "split": {"n_fit_speakers": int(fit_mask.sum()), "n_test_speakers": int(test_mask.sum())},
              "attacks": {name: a["report"] for name, a in attacked.items()},
              "train_attack": args.train_attack,
              "classifiers": fit_and_measure(features, rows, split, args.train_attack),
              "seconds": time.perf_counter() - t0}
    suffix = "" if args.train_attack == TRAIN_ATTACK else f"_fit_on_{args.train_attack}"
    atomic_write_text(out / f"results{suffix}.json", json.dumps(result, indent=1, default=float))
    atomic_write_text(out / f"tables{suffix}.md", tables(result))
    print((out / f"tables{suffix}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
