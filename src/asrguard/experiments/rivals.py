"""Rival detectors on the shipped CTC model: a small, non-adaptive AUROC measurement.

Each rival detector (:mod:`asrguard.detect.rivals`, default settings) and, for reference, the
shipped dropout-uncertainty detector score held-out benign utterances and CW adversarial
examples made against the shipped model. Stages (resumable in ``--out``):

1. adversarial: the successful examples of the attack folders given with ``--attack-dir`` (for
   instance the CW run of ``python -m asrguard.experiments.sequential``), keeping the corpora in
   ``--corpora``; without ``--attack-dir``, CW is run here on ``--n-attack`` held-out utterances
   with at most ``--max-iter`` iterations;
2. benign: ``--n-benign`` other held-out utterances of the same corpora (never an attacked one);
3. features of every input for every detector, cached in ``features.json``;
4. scores. The transcript-based rivals (transform, temporal, noise-flood) learn nothing but a
   threshold, so their scores are used as they are. The distribution detector learns a
   classifier: it is cross-fitted over two halves split by source utterance (fit on one half,
   score the other, then swap), once with logistic regression on both classes and once with the
   one-class Gaussian on benign rows only. The shipped detector scores as shipped;
5. ``results.json`` and ``summary.md``: AUROC with its bootstrap interval, TPR at 5 % FPR (read
   off the ROC), and n per side; per-feature AUROCs for the transcript-based rivals.

Nothing here is adaptive: the attacks know nothing of the rivals.

    python -m asrguard.experiments.rivals --out runs/rivals --attack-dir runs/sequential/cw-3a8ec9fecfbe --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..attacks.factory import make_attack
from ..attacks.manifest import read_records
from ..attacks.runner import run_attack
from ..attacks.sources import load_items
from ..attacks.targets import TargetSampler
from ..audio import load_audio
from ..defaults import load_detector, load_recognizer
from ..detect.registry import make_detector
from ..errors import AsrguardError, DataError
from ..evaluate.detection import auroc_interval, detection_metrics, split_by_source
from ..fileio import atomic_write_text

RIVAL_KINDS = ("distribution", "transform", "temporal", "noise-flood")
DEFAULT_CORPORA = ("fsdd-digits",)


def adversarial_from(folders: list[Path], corpora, rate: int) -> tuple[list[tuple[str, np.ndarray]], dict]:
    """``(source id, waveform)`` of every successful example from ``corpora`` in the attack ``folders``."""
    out, counts = [], {"failed": 0, "other_corpora": 0}
    for folder in folders:
        records = read_records(folder)
        if not records:
            raise DataError(f"{folder}: no attack records here (expected manifest.jsonl from `asrguard attack`)")
        for r in records:
            if not r.get("success"):
                counts["failed"] += 1
            elif r["id"].split(":", 1)[0] not in corpora:
                counts["other_corpora"] += 1
            else:
                out.append((r["id"], load_audio(Path(folder) / r["audio"], rate)[0]))
    return out, counts


def craft_adversarial(rec, items, out: Path, seed: int, max_iter: int) -> Path:
    """Run CW (small budget) on ``items``; returns the attack folder (a rerun resumes it)."""
    attack = make_attack("cw", rec, {"seed": seed, "max_iter": max_iter})
    folder = out / f"cw-{attack.config_hash}"
    run_attack(attack, items, folder, sampler=TargetSampler("mixed", seed=seed), batch_size=8, progress=False)
    return folder


def features_of(det, inputs, cache: dict, label: int) -> np.ndarray:
    """Feature rows of ``inputs`` (``(id, waveform)``), reusing ``cache`` (``"label:id" -> row``)."""
    rows = []
    for key, waveform in inputs:
        name = f"{label}:{key}"
        if name not in cache:
            cache[name] = det.features(waveform, name=key).tolist()
        rows.append(cache[name])
    return np.asarray(rows, dtype=np.float64).reshape(len(inputs), -1)


def cross_fitted(rec, model: str, rows: np.ndarray, labels: np.ndarray, groups: list[str], seed: int) -> np.ndarray:
    """Out-of-fold distribution-detector scores: two halves by source, each scored by a fit on the other."""
    first, second = split_by_source(groups, 0.5, seed=seed)
    scores = np.full(len(rows), np.nan)
    for train, test in ((first, second), (second, first)):
        det = make_detector("distribution", rec, model=model, seed=seed)
        adversarial = rows[train & (labels == 1)] if model == "logistic" else None
        det.fit_features(rows[train & (labels == 0)], adversarial)
        scores[test] = det.score_features(rows[test])
    return scores


def summary_of(labels: np.ndarray, scores: np.ndarray) -> dict:
    metrics = detection_metrics(labels, scores)
    low, high = auroc_interval(labels, scores)
    return {"auroc": metrics["auroc"], "auroc_ci": [low, high], "tpr_at_5pct_fpr": metrics["tpr_at_5pct_fpr"],
            "n_benign": int((labels == 0).sum()), "n_adversarial": int((labels == 1).sum())}


def table(results: dict) -> str:
    lines = ["| detector | how scored | AUROC (95 % CI) | TPR at 5 % FPR | n benign / adversarial |",
             "|---|---|---|---|---|"]
    for name, r in results["detectors"].items():
        low, high = r["auroc_ci"]
        lines.append(f"| {name} | {r['how']} | {r['auroc']:.3f} ({low:.2f}–{high:.2f}) | "
                     f"{r['tpr_at_5pct_fpr']:.2f} | {r['n_benign']} / {r['n_adversarial']} |")
    lines += ["", "| feature | AUROC |", "|---|---|"]
    for kind, per in results["per_feature"].items():
        lines += [f"| {kind}: {feature} | {value:.3f} |" for feature, value in per.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--attack-dir", type=Path, action="append", default=[],
                        help="attack folder(s) with the adversarial examples (repeatable)")
    parser.add_argument("--corpora", nargs="+", default=list(DEFAULT_CORPORA))
    parser.add_argument("--n-benign", type=int, default=60)
    parser.add_argument("--n-attack", type=int, default=12, help="without --attack-dir: utterances to attack")
    parser.add_argument("--max-iter", type=int, default=300, help="without --attack-dir: CW iterations at most")
    parser.add_argument("--no-uncertainty", action="store_true", help="skip the shipped detector's reference row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rec = load_recognizer()
    rate = rec.sample_rate

    # 1-2. inputs: benign from a held-out pool, never an attacked utterance
    try:
        pool = load_items(args.corpora, 300 * len(args.corpora), args.seed, None, rate)
    except (AsrguardError, OSError) as exc:
        print(f"skipped: held-out corpora not available ({exc})", file=sys.stderr)
        return 0
    order = np.random.default_rng([args.seed, 11]).permutation(len(pool))
    pool = everything = [pool[i] for i in order]
    attack_info: dict = {"folders": [str(f) for f in args.attack_dir]}
    if not args.attack_dir:
        targets, pool = pool[:args.n_attack], pool[args.n_attack:]
        args.attack_dir = [craft_adversarial(rec, targets, out, args.seed, args.max_iter)]
        attack_info = {"folders": [str(f) for f in args.attack_dir], "crafted": True, "max_iter": args.max_iter}
    adversarial, excluded = adversarial_from(args.attack_dir, args.corpora, rate)
    attacked = {key for key, _ in adversarial}
    by_id = {it.id: it for it in everything}
    # the pool regenerates the attacked utterances under the same ids; say whether they match
    attack_info["sources_in_pool_with_same_length"] = sum(
        1 for key, w in adversarial if key in by_id and len(by_id[key].waveform) == len(w))
    benign = [(it.id, it.waveform) for it in pool if it.id not in attacked][:args.n_benign]
    attack_info.update(excluded=excluded, n_adversarial=len(adversarial))
    if not adversarial or len(benign) < 4:
        print("skipped: too few adversarial or benign inputs", file=sys.stderr)
        return 0

    # 3. features, cached per detector
    cache_path = out / "features.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    labels = np.r_[np.zeros(len(benign), dtype=int), np.ones(len(adversarial), dtype=int)]
    groups = [key for key, _ in benign] + [key for key, _ in adversarial]
    rows, detectors = {}, {}
    for kind in RIVAL_KINDS:
        det = detectors[kind] = make_detector(kind, rec, seed=args.seed)
        part = cache.setdefault(kind, {})
        rows[kind] = np.vstack([features_of(det, benign, part, 0), features_of(det, adversarial, part, 1)])
        atomic_write_text(cache_path, json.dumps(cache))
    if not args.no_uncertainty:
        shipped = load_detector(recognizer=rec)
        results_passes = shipped.feature_extractor.config.n
        part = cache.setdefault("uncertainty", {})
        for label, inputs in ((0, benign), (1, adversarial)):
            for key, waveform in inputs:
                part.setdefault(f"{label}:{key}", [shipped.score(waveform)])
        atomic_write_text(cache_path, json.dumps(cache))

    # 4-5. scores and metrics
    results: dict = {"recognizer": rec.fingerprint(), "corpora": args.corpora, "seed": args.seed,
                     "attack": attack_info, "detectors": {}, "per_feature": {}, "settings": {}}
    for kind in ("transform", "temporal", "noise-flood"):
        det = detectors[kind].fit_features(rows[kind][labels == 0])  # the rule itself learns nothing
        results["detectors"][kind] = {"how": f"{det.rule}, as is", "passes": det.passes,
                                      **summary_of(labels, det.score_features(rows[kind]))}
        results["per_feature"][kind] = {name: summary_of(labels, rows[kind][:, j])["auroc"]
                                        for j, name in enumerate(det.feature_names)}
        results["settings"][kind] = det.settings()
    for model in ("logistic", "gaussian"):
        scores = cross_fitted(rec, model, rows["distribution"], labels, groups, args.seed)
        results["detectors"][f"distribution ({model})"] = {"how": "cross-fitted, 2 folds by source", "passes": 1,
                                                           **summary_of(labels, scores)}
    results["settings"]["distribution"] = detectors["distribution"].settings()
    if not args.no_uncertainty:
        scores = np.array([cache["uncertainty"][f"{label}:{key}"][0]
                           for label, inputs in ((0, benign), (1, adversarial)) for key, _ in inputs])
        results["detectors"]["uncertainty (shipped)"] = {"how": f"shipped {shipped.classifier.name}, as is",
                                                         "passes": results_passes,
                                                         **summary_of(labels, scores)}
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "summary.md", table(results) + "\n")
    print(json.dumps(results, indent=1) if args.json else table(results))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
