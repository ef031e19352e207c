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
4. **split**, by speaker, each speaker's side drawn from its own name and the seed (so adding
   rows never moves a speaker): ``english_speech`` speakers 55 % fit, 15 % calibrate, 30 % held
   out; Speech Commands and FSDD *train*-split speakers 75 % fit, 25 % calibrate; their *test*
   split is held out. No speaker of a test row was seen in fitting or calibration.
5. **classifiers**: every classifier of the reproduction, fitted on DR examples against benign
   speech of the fitting speakers (as the paper trains on DR), thresholds at 5 % FPR on the
   calibration speakers' benign speech; measured on held-out speakers for each attack, and false
   alarms per subset.
6. **shipped detector** (``--ship DIR``): the pre-registered ``all-svm`` fitted as in stage 5,
   with the *worst-subset* threshold: the largest of the per-subset 5 % thresholds on the
   calibration speakers, so that no subset (children, accents, single words) is over-flagged.
   Saved, loaded back, and measured on the held-out speakers like the classifiers.

    python -m asrguard.experiments.whisper_defence --out runs/whisper_defence --attacks-dir runs/whisper_cw100 \
        --ship src/asrguard/assets/detectors/whisper-tiny.en
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from ..asr import recipes
from ..asr.recipes import default_data_root
from ..asr.registry import load_recognizer
from ..attacks.factory import make_attack
from ..attacks.runner import read_records, report, run_attack
from ..attacks.sources import load_items
from ..attacks.targets import TargetSampler
from ..audio import load_audio
from ..detect.classifiers import SPECS, make_classifier
from ..detect.detector import Detector, threshold_for_fpr
from ..evaluate.detection import detection_metrics
from ..evaluate.tables import AurocCells
from ..execute import make_executor
from ..fileio import atomic_write_text
from ..rng import generator
from ..uncertainty.batch import extract_features
from ..uncertainty.features import FeatureExtractor, FeatureTable

ATTACKS = ("cw", "dr")
TRAIN_ATTACK = "dr"
#: english_speech subsets reported one by one (the few LJ Speech / LibriVox clips join LibriSpeech).
SUBSETS = {"librispeech": ("librispeech-test-other", "librispeech-test-clean", "librivox", "ljspeech"),
           "common-voice": ("common-voice",), "non-native adults": ("speechocean762-adults",),
           "non-native children": ("speechocean762-children",), "an4": ("an4",)}
TARGET_FPR = 0.05
#: the classifier shipped as the Whisper detector, chosen before stage 6 was first run (the best in stage 5's first run)
SHIPPED_CLASSIFIER = "all-svm"
#: held-out and calibration shares of english_speech speakers; train-split word/digit speakers are never held out
HELD_OUT, CALIBRATE, CALIBRATE_TRAIN_SPLIT = 0.30, 0.15, 0.25
WORD_CORPORA = (("speech-commands", "speech commands words"), ("fsdd-isolated", "fsdd digits"))


def subset_of(source: str) -> str:
    return next((name for name, members in SUBSETS.items() if source in members), source)


def speaker_role(speaker: str, seed: int = 0, *, held_out: float = HELD_OUT, calibrate: float = CALIBRATE) -> str:
    """``"test"``, ``"calibrate"`` or ``"fit"`` for a speaker, from its name and the seed alone.

    Example:
        >>> speaker_role("an4:mjwl", 0) == speaker_role("an4:mjwl", 0)
        True
        >>> speaker_role("x", 0, held_out=0.0, calibrate=0.0)
        'fit'
    """
    u = generator(seed, "speaker-split", speaker).random()
    return "test" if u < held_out else "calibrate" if u < held_out + calibrate else "fit"


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
    """Stage 2, as ``(key, waveform, speaker, subset, role, transcript)``: ``--per-subset`` more utterances of
    each subset (none an attack source), plus Speech Commands words and FSDD digits: ``--per-subset`` of the
    test split (held out) and ``--per-subset`` of the train split (fitting and calibration: short clips must
    be seen)."""
    root = default_data_root()
    taken = {it.id.split(":", 1)[1] for it in sources}
    records = [r for r in recipes.english_speech_records(root, min_seconds=2.0, max_seconds=8.0) if r.id not in taken]
    chosen = []
    for k, name in enumerate(SUBSETS):
        pool = [r for r in records if subset_of(r.source) == name]
        rng = np.random.default_rng([args.seed, 7, k])
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), min(args.per_subset, len(pool)), replace=False))]
    extra = [(f"benign:english-speech:{u.id}", u.waveform, u.speaker, subset_of(u.source), None, u.transcript)
             for u in recipes.load_records(chosen)]
    for corpus, label in WORD_CORPORA:
        for u in recipes.evaluation_set(corpus, "test", root, limit=args.per_subset, seed=args.seed):
            extra.append((f"benign:{corpus}:{u.id}", u.waveform, None, label, "test", u.transcript))
        for u in recipes.evaluation_set(corpus, "train", root, limit=args.per_subset, seed=args.seed):
            speaker = f"{corpus}:{u.speaker}"
            role = speaker_role(speaker, args.seed, held_out=0.0, calibrate=CALIBRATE_TRAIN_SPLIT)
            extra.append((f"benign:{corpus}-train:{u.id}", u.waveform, speaker, label, role, u.transcript))
    return extra


def role_of(row: dict, split: dict) -> str | None:
    """A row's side: its own ``role`` where it has one, else its speaker's in ``split``."""
    return row.get("role") or split.get(row["speaker"])


def partition(rows: dict, split: dict, train_attack: str = TRAIN_ATTACK) -> dict:
    """The row keys of each use: fitting (benign, adversarial), calibration, and the held-out tests."""
    side = {k: role_of(r, split) for k, r in rows.items()}

    def benign(*roles):
        return [k for k, r in rows.items() if r["kind"] == "benign" and side[k] in roles]

    calibration = benign("calibrate")
    return {
        "fit_benign": benign("fit"),
        "fit_adversarial": [k for k, r in rows.items() if r["kind"] == train_attack and side[k] == "fit"],
        # without calibration speakers (older runs, small tests) the fitting speakers calibrate
        "calibration": calibration or benign("fit"),
        "test_sources": [k for k in benign("test") if rows[k]["source_of_attack"]],
        "test_attacks": {a: [k for k, r in rows.items() if r["kind"] == a and side[k] == "test"] for a in ATTACKS},
        "held_out_benign": [k for k, r in rows.items() if r["kind"] == "benign" and side[k] not in ("fit", "calibrate")],
    }


class HeldOutTables:
    """The held-out feature tables, built once and scored by every classifier."""

    def __init__(self, features: dict, rows: dict, parts: dict):
        def table(keys):
            return FeatureTable.stack([features[k] for k in keys])

        self.sources = table(parts["test_sources"]) if parts["test_sources"] else None
        self.attacks = {a: table(keys) for a, keys in parts["test_attacks"].items() if keys and self.sources is not None}
        by_subset: dict = {}
        for k in parts["held_out_benign"]:
            by_subset.setdefault(rows[k]["subset"], []).append(k)
        self.subsets = {subset: table(keys) for subset, keys in sorted(by_subset.items())}

    def measure(self, score, threshold: float) -> dict:
        """AUROC per attack (held-out examples against their held-out sources) and false alarms per subset."""
        entry = {"attacks": {}, "false_alarms": {}}
        if self.sources is not None:
            benign_scores = score(self.sources)
            for attack, adv_table in self.attacks.items():
                scores = score(adv_table)
                y = np.r_[np.zeros(len(benign_scores), int), np.ones(len(scores), int)]
                entry["attacks"][attack] = detection_metrics(y, np.r_[benign_scores, scores], threshold=threshold,
                                                             interval=True)
        for subset, subset_table in self.subsets.items():
            flagged = score(subset_table) > threshold
            entry["false_alarms"][subset] = {"n": len(subset_table), "flagged": int(flagged.sum()),
                                             "rate": float(flagged.mean())}
        return entry


def worst_subset_threshold(scores: np.ndarray, subsets, fpr: float = TARGET_FPR) -> float:
    """The largest of the per-subset thresholds at ``fpr``: no calibration subset is flagged above it.

    Example:
        >>> worst_subset_threshold(np.array([0.1, 0.2, 0.9, 1.0]), ["a", "a", "b", "b"], 0.0)
        1.0
    """
    subsets = np.asarray(subsets)
    return max(threshold_for_fpr(scores[subsets == name], fpr) for name in np.unique(subsets))


def fit_and_measure(features: dict, rows: dict, split: dict, train_attack: str = TRAIN_ATTACK) -> dict:
    """Stage 5: each classifier fitted on ``train_attack`` (DR, as the paper) + benign of the fitting
    speakers, its threshold at 5 % FPR on the calibration speakers; measured on held-out ones."""
    parts = partition(rows, split, train_attack)
    fit_benign_table = FeatureTable.stack([features[k] for k in parts["fit_benign"]])
    train_table = FeatureTable.concat([fit_benign_table,
                                       FeatureTable.stack([features[k] for k in parts["fit_adversarial"]])])
    labels = np.r_[np.zeros(len(parts["fit_benign"]), int), np.ones(len(parts["fit_adversarial"]), int)]
    calibration_table = FeatureTable.stack([features[k] for k in parts["calibration"]])
    held_out = HeldOutTables(features, rows, parts)
    results = {}
    for name in SPECS:
        clf = make_classifier(name).fit(train_table, labels)
        threshold = threshold_for_fpr(clf.decision_function(calibration_table), TARGET_FPR)
        results[name] = {"n_fit_benign": len(parts["fit_benign"]), "n_fit_adversarial": len(parts["fit_adversarial"]),
                         "n_calibration": len(parts["calibration"]), "threshold": threshold,
                         **held_out.measure(clf.decision_function, threshold)}
    return results


def ship_detector(features: dict, rows: dict, split: dict, recognizer, extractor, directory: Path,
                  train_attack: str = TRAIN_ATTACK) -> dict:
    """Stage 6: fit :data:`SHIPPED_CLASSIFIER` as stage 5 does, set the worst-subset threshold, save
    it to ``directory``, load it back and measure the loaded detector on the held-out speakers."""
    parts = partition(rows, split, train_attack)

    def table(keys):
        return FeatureTable.stack([features[k] for k in keys])

    detector = Detector(recognizer, extractor, SHIPPED_CLASSIFIER, target_fpr=TARGET_FPR)
    calibration = table(parts["calibration"])
    detector.fit_features(table(parts["fit_benign"]), table(parts["fit_adversarial"]), calibration)
    pooled = detector.threshold
    calibration_scores = detector.score_features(calibration)
    calibration_subsets = [rows[k]["subset"] for k in parts["calibration"]]
    detector.threshold = worst_subset_threshold(calibration_scores, calibration_subsets)
    by_subset = {name: int(sum(1 for x in calibration_subsets if x == name)) for name in sorted(set(calibration_subsets))}
    detector.save(directory, metadata={
        "threshold_rule": f"worst subset: the largest per-subset threshold at {TARGET_FPR:g} FPR on the calibration "
                          "speakers", "pooled_threshold": float(pooled), "calibration_subsets": by_subset,
        "fitted_on": f"{train_attack.upper()} examples and benign speech of the fitting speakers "
                     "(asrguard.experiments.whisper_defence)"})
    loaded = Detector.load(directory, recognizer)
    held_out = HeldOutTables(features, rows, parts)
    return {"classifier": SHIPPED_CLASSIFIER, "directory": str(directory), "train_attack": train_attack,
            "threshold": float(loaded.threshold),
            "pooled_threshold": float(pooled), "n_fit_benign": len(parts["fit_benign"]),
            "n_fit_adversarial": len(parts["fit_adversarial"]), "calibration_subsets": by_subset,
            **held_out.measure(loaded.score_features, loaded.threshold),
            "at_pooled_threshold": held_out.measure(loaded.score_features, pooled)}


def tables(result: dict) -> str:
    cells = AurocCells()
    lines = ["# The first paper's detector on Whisper tiny.en (real English speech, held-out speakers)", ""]
    s, sp = result["settings"], result["split"]
    lines += [f"`python -m asrguard.experiments.whisper_defence --out {s['out']} --attacks-dir {s['attacks_dir']} "
              f"--n {s['n']} --per-subset {s['per_subset']}`", "",
              f"Split by speaker: {sp['n_fit_speakers']} `english_speech` speakers fit the classifiers, "
              f"{sp.get('n_calibrate_speakers', 0)} others calibrate the thresholds, and {sp['n_test_speakers']} "
              "others are held out (`split.json`); Speech Commands and FSDD train-split speakers fit and calibrate, "
              "their test-split speakers are held out. "
              f"Classifiers are fitted on {result['train_attack'].upper()} examples against benign speech of the "
              f"fitting speakers; thresholds flag {100 * TARGET_FPR:g} % of the calibration speakers' benign speech. "
              "Realisations: I = 50, decoder dropout p = 0.02, seed 0.",
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
    if "shipped" in result:
        lines += shipped_tables(result["shipped"], cells, subsets)
    return "\n".join(cells.banner(quick=False) + lines) + "\n"


def shipped_tables(shipped: dict, cells: AurocCells, subsets: list) -> list:
    """Stage 6's section: the saved detector, loaded back, on the held-out speakers."""
    lines = ["", f"## The shipped detector (`{shipped['directory']}`): {shipped['classifier']}, worst-subset threshold",
             "", f"Fitted on {shipped['n_fit_adversarial']} {shipped['train_attack'].upper()} and "
             f"{shipped['n_fit_benign']} benign examples of the fitting speakers. Threshold "
             f"{shipped['threshold']:.3f}: the largest per-subset {100 * TARGET_FPR:g} % threshold on the calibration "
             f"speakers ({', '.join(f'{k} {v}' for k, v in shipped['calibration_subsets'].items())}); the pooled "
             f"{100 * TARGET_FPR:g} % threshold would be {shipped['pooled_threshold']:.3f}.", "",
             "| threshold | " + " | ".join(a.upper() for a in ATTACKS) + " | " + " | ".join(subsets) + " |",
             "|---|" + "---|" * (len(ATTACKS) + len(subsets))]
    for label, entry in (("worst subset (shipped)", shipped), ("pooled 5 %", shipped["at_pooled_threshold"])):
        row = [label]
        for attack in ATTACKS:
            m = entry["attacks"].get(attack)
            row.append(f"{cells.format(m)}; TPR {100 * m['true_positive_rate']:.0f} %" if m else "–")
        fa = entry["false_alarms"]
        row += [f"{100 * fa[k]['rate']:.0f} % ({fa[k]['flagged']}/{fa[k]['n']})" if k in fa else "–" for k in subsets]
        lines.append("| " + " | ".join(row) + " |")
    return lines


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
    parser.add_argument("--ship", type=Path, default=None,
                        help=f"stage 6: save the {SHIPPED_CLASSIFIER} detector with the worst-subset threshold here")
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
    for key, waveform, speaker, subset, role, _ in benign_stage(sources, args):
        inputs.append((key, waveform))
        rows[key] = {"kind": "benign", "speaker": speaker, "subset": subset, "source_of_attack": False,
                     **({"role": role} if role else {})}

    # 3. features
    extractor = FeatureExtractor(n=50, p=recognizer.default_p, seed=0)
    with Progress(transient=True) as bar:
        task = bar.add_task("features", total=len(inputs))
        features = extract_features(recognizer, extractor, inputs, out / "features.jsonl", executor=executor,
                                    on_row=lambda row: bar.advance(task))

    if args.features_only or args.train_attack not in attacked:
        missing = "" if args.features_only else f"; no {args.train_attack.upper()} examples yet to fit on"
        print(f"features of {len(features)} inputs in {out / 'features.jsonl'}{missing}")
        return 0

    # 4. split by speaker (english_speech speakers; the word corpora's rows carry their own role)
    speakers = sorted({r["speaker"] for r in rows.values() if r["speaker"] is not None and "role" not in r})
    split = {s: speaker_role(s, args.seed) for s in speakers}
    atomic_write_text(out / "split.json", json.dumps(
        {"rule": f"english_speech speakers: {HELD_OUT:g} held out, {CALIBRATE:g} calibrate, the rest fit, each drawn "
                 f"from rng.generator(seed, 'speaker-split', speaker); Speech Commands / FSDD train-split speakers: "
                 f"{CALIBRATE_TRAIN_SPLIT:g} calibrate, the rest fit; their test split is held out",
         **{role: [s for s in speakers if split[s] == role] for role in ("fit", "calibrate", "test")},
         "word_corpora": {k: r["role"] for k, r in sorted(rows.items()) if "role" in r}}, indent=1))
    counts = {role: sum(1 for s in speakers if split[s] == role) for role in ("fit", "calibrate", "test")}

    # 5. classifiers
    result = {"settings": {"out": str(out), "attacks_dir": str(attacks_dir), "n": args.n, "per_subset": args.per_subset,
                           "seed": args.seed, "max_iter": args.max_iter, "extractor": extractor.to_dict(),
                           "sites": recognizer.dropout_sites},
              "split": {"n_fit_speakers": counts["fit"], "n_calibrate_speakers": counts["calibrate"],
                        "n_test_speakers": counts["test"]},
              "attacks": {name: a["report"] for name, a in attacked.items()},
              "train_attack": args.train_attack,
              "classifiers": fit_and_measure(features, rows, split, args.train_attack),
              "seconds": time.perf_counter() - t0}
    if args.ship is not None:  # 6. the shipped detector
        result["shipped"] = ship_detector(features, rows, split, recognizer, extractor, args.ship, args.train_attack)
        result["seconds"] = time.perf_counter() - t0
    suffix = "" if args.train_attack == TRAIN_ATTACK else f"_fit_on_{args.train_attack}"
    atomic_write_text(out / f"results{suffix}.json", json.dumps(result, indent=1, default=float))
    atomic_write_text(out / f"tables{suffix}.md", tables(result))
    print((out / f"tables{suffix}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
