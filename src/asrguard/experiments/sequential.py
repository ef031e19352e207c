"""Sequential realisations with the shipped detector: how many draws each input needs, at what AUROC and cost.

Stages (resumable in ``--out``):

1. CW against the shipped CTC model on ``--n-attack`` held-out utterances (FSDD connected digits
   and Speech Commands words; the attack runner's folder);
2. benign: ``--n-benign`` other held-out utterances;
3. score paths: every input's score after each chunk of ``--chunk`` realisations, up to the
   detector's I = 50 (the last is exactly the fixed-I score);
4. split by speaker (Speech Commands) or utterance (FSDD digit strings): half calibrate the
   margins, half test; margins from :func:`asrguard.detect.sequential.calibrate_margins`;
5. on the test half (``results_chunk{CHUNK}.json``): AUROC of the sequential scores and of the
   fixed-I scores (with bootstrap intervals), verdicts that differ from the fixed-I ones, the mean
   number of realisations, and the mean cost of scoring an input as a ratio to one transcription
   of it, timed in this run.

``--masks balanced`` draws the realisations' masks in balanced blocks (:mod:`asrguard.asr.ctc.masks`)
instead of independently, with the same shipped classifier; its caches and results carry ``_balanced``.

``--mask-seeds`` repeats stages 3-5 with the detector's realisations drawn from other mask seeds
(as ``--mask-seed random`` deploys it; the classifier stays the shipped one). The fixed-I AUROC
itself moves from seed to seed, so one seed's "AUROC drop" mixes the stopping rule with that
noise; the per-seed table and the mean drop over seeds separate them. Costs are timed with the
first seed only.

    python -m asrguard.experiments.sequential --out runs/sequential --json
    python -m asrguard.experiments.sequential --out runs/sequential --threads 2 --mask-seeds 0,1,2,3,4,5
    python -m asrguard.experiments.sequential --out runs/sequential --threads 2 --mask-seeds 0,1,2,3,4,5 --masks balanced
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..attacks.factory import make_attack
from ..attacks.manifest import read_records
from ..attacks.runner import run_attack
from ..attacks.sources import load_items
from ..attacks.targets import TargetSampler
from ..audio import load_audio
from ..defaults import load_detector
from ..detect.sequential import calibrate_margins, chunk_scores, decide
from ..errors import ConfigError
from ..evaluate.detection import auroc, auroc_interval, split_by_source
from ..fileio import atomic_write_text

CORPORA = ["fsdd-digits", "speech-commands"]


def speaker_of(item_id: str) -> str:
    """What the calibration / test split groups by: the speaker of a Speech Commands clip
    (``speaker_nohash_k``); each FSDD connected-digit utterance on its own (FSDD holds out one
    speaker, so grouping by speaker would put every digit string on one side)."""
    name = item_id.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return name.split("_nohash_")[0] if "_nohash_" in name else name.split("_")[1] if name.count("_") >= 2 else name


def timed_ratio(detector, waveform, margins, chunk: int, repeats: int = 3) -> tuple[float, float]:
    """(sequential scoring time / one transcription, fixed-I scoring time / one transcription), medians."""
    rec = detector.recognizer

    def clock(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    transcribe = clock(lambda: rec.transcribe([waveform]))
    sequential = clock(lambda: decide(chunk_scores(detector, waveform, chunk), margins, detector.threshold))
    fixed = clock(lambda: detector.score(waveform))
    return sequential / transcribe, fixed / transcribe


def with_masks(detector, masks: str):
    """A shallow copy of ``detector`` whose realisations' masks follow scheme ``masks``."""
    scorer = copy.copy(detector)
    scorer.feature_extractor = detector.feature_extractor.replace(masks=masks)
    return scorer


def parse_seeds(text: str | None, default: int) -> list[int]:
    if text is None:
        return [default]
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--mask-seeds takes comma-separated integers, not {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--mask-seeds needs distinct integers, got {text!r}")
    return seeds


def score_paths(detector, inputs, chunk: int, cache_path: Path) -> dict:
    """Every input's score after each chunk (stage 3), cached in ``cache_path``."""
    n = detector.feature_extractor.config.n
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for key, waveform, label in inputs:
        name = f"{label}:{key}"
        if name not in cache:
            score = chunk_scores(detector, waveform, chunk)
            cache[name] = [score(k) for k in range(1, n // chunk + 1)]
    atomic_write_text(cache_path, json.dumps(cache))
    return cache


def evaluate_seed(detector, inputs, paths, labels, calibrate, test, chunk: int, timed: bool) -> dict:
    """Stages 4-5 for one mask seed's score paths."""
    margins = calibrate_margins([p for p, c in zip(paths, calibrate) if c], detector.threshold)
    test_rows = [i for i in range(len(inputs)) if test[i]]
    decided = [decide(paths[i], margins, detector.threshold) for i in test_rows]
    seq_scores = np.array([s for s, _ in decided])
    fixed_scores = np.array([paths[i][-1] for i in test_rows])
    y = labels[test_rows]
    used = np.array([k * chunk for _, k in decided])
    result = {
        "mask_seed": detector.feature_extractor.config.seed, "masks": detector.feature_extractor.config.masks,
        "margins": margins,
        "auroc_sequential": auroc(y, seq_scores), "auroc_sequential_ci": list(auroc_interval(y, seq_scores)),
        "auroc_fixed": auroc(y, fixed_scores), "auroc_fixed_ci": list(auroc_interval(y, fixed_scores)),
        "verdicts_differing_from_fixed": int(np.sum((seq_scores > detector.threshold)
                                                    != (fixed_scores > detector.threshold))),
        "mean_realizations": float(used.mean()),
        "mean_realizations_benign": float(used[y == 0].mean()),
        "mean_realizations_adversarial": float(used[y == 1].mean()),
    }
    result["auroc_drop"] = result["auroc_fixed"] - result["auroc_sequential"]
    if timed:
        ratios = [timed_ratio(detector, inputs[i][1], margins, chunk) for i in test_rows]
        result["mean_cost_sequential_over_transcription"] = float(np.mean([r[0] for r in ratios]))
        result["mean_cost_fixed_over_transcription"] = float(np.mean([r[1] for r in ratios]))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-attack", type=int, default=80)
    parser.add_argument("--n-benign", type=int, default=160)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (timings are ratios in one run)")
    parser.add_argument("--mask-seeds", default=None,
                        help="comma-separated realisation seeds to score with (default: the detector's own)")
    parser.add_argument("--masks", choices=["iid", "balanced"], default="iid",
                        help="how the realisations' masks relate (default: the shipped detector's, iid)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    detector = load_detector()
    if args.masks != detector.feature_extractor.config.masks:
        detector = with_masks(detector, args.masks)
    rec = detector.recognizer
    own_seed = detector.feature_extractor.config.seed
    seeds = parse_seeds(args.mask_seeds, own_seed)

    # 1-2. inputs: CW examples of held-out sources, and other held-out benign utterances
    items = load_items(CORPORA, args.n_attack + args.n_benign, args.seed, None, rec.sample_rate)
    order = np.random.default_rng([args.seed, 3]).permutation(len(items))
    sources, benign = [items[i] for i in order[:args.n_attack]], [items[i] for i in order[args.n_attack:]]
    attack = make_attack("cw", rec, {"seed": str(args.seed)})
    folder = out / f"cw-{attack.config_hash}"
    run_attack(attack, sources, folder, sampler=TargetSampler("mixed", seed=args.seed), batch_size=16,
               progress=False)
    inputs = [(it.id, it.waveform, 0) for it in benign]
    inputs += [(r["id"], load_audio(folder / r["audio"], rec.sample_rate)[0], 1)
               for r in read_records(folder) if r.get("success")]
    labels = np.array([label for _, _, label in inputs])

    # 4. speaker split: half the speakers calibrate the margins (the same split for every seed)
    speakers = [speaker_of(key) for key, _, _ in inputs]
    calibrate, test = split_by_source(speakers, 0.5, seed=args.seed)

    per_seed = []
    for index, seed in enumerate(seeds):
        scorer = detector if seed == own_seed else detector.copy_with_seed(seed)
        suffix = "" if seed == own_seed else f"_mask{seed}"  # the detector's own seed keeps the old cache
        suffix += "" if args.masks == "iid" else f"_{args.masks}"
        cache = score_paths(scorer, inputs, args.chunk, out / f"paths_chunk{args.chunk}{suffix}.json")
        paths = [cache[f"{label}:{key}"] for key, _, label in inputs]
        per_seed.append(evaluate_seed(scorer, inputs, paths, labels, calibrate, test, args.chunk, timed=index == 0))

    y = labels[test]
    result = {
        "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "out": str(out),
                     "realizations": detector.feature_extractor.config.n,
                     "threshold": detector.threshold, "classifier": detector.classifier.name},
        "n_calibration": int(calibrate.sum()), "n_test": int(test.sum()),
        "n_test_benign": int((y == 0).sum()), "n_test_adversarial": int((y == 1).sum()),
        **per_seed[0],
    }
    if len(seeds) > 1:
        result["per_mask_seed"] = per_seed
        for key in ("auroc_fixed", "auroc_sequential", "auroc_drop", "mean_realizations"):
            values = np.array([r[key] for r in per_seed])
            result[f"{key}_mean_over_seeds"] = float(values.mean())
            result[f"{key}_sd_over_seeds"] = float(values.std(ddof=1))
    name = (f"results_chunk{args.chunk}" + ("" if seeds == [own_seed] else f"_seeds{len(seeds)}")
            + ("" if args.masks == "iid" else f"_{args.masks}"))
    atomic_write_text(out / f"{name}.json", json.dumps(result, indent=1))
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
