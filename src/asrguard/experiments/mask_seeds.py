"""Does a detector keep its threshold when its dropout masks come from another seed?

A deployment can draw its masks from a seed of its own (``asrguard serve --mask-seed random``)
instead of the published one. The classifier and its threshold were fitted on features from
one seed, so this measures what changing the seed costs. (What it buys against an attacker
who knows the published seed is measured by :mod:`asrguard.experiments.adaptive`.) It scores the held-out test sources of a finished
Jayashankar reproduction (benign and every speech attack, none of them seen in fitting) with
the detector under each seed, at the detector's own threshold.

    python -m asrguard.experiments.mask_seeds --run runs/jayashankar2020 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from rich.progress import Progress

from ..audio import load_audio
from ..defaults import load_detector
from ..errors import ConfigError
from ..evaluate.detection import detection_metrics
from .jayashankar2020 import SPEECH_ATTACKS, finished_run, successful_examples

#: The published seed first, then five more drawn once (any values would do).
DEFAULT_SEEDS = (0, 1, 2, 3, 4, 5)


def seed_sweep(detector, benign: Sequence[np.ndarray], adversarial: Mapping[str, Sequence[np.ndarray]],
               seeds: Sequence[int] = DEFAULT_SEEDS, progress=None) -> dict:
    """Metrics of ``detector`` at its own threshold with the masks drawn from each seed.

    Returns ``{"per_seed": {seed: {attack: metrics}}, "spread": {attack: {metric: [min, max]}}}``;
    the metrics are :func:`~asrguard.evaluate.detection.detection_metrics` (false-positive rate
    on ``benign``, true-positive rate on each attack, AUROC). The detector's seed is restored.

    Example:
        >>> sweep = seed_sweep(detector, benign, {"cw": adversarial}, seeds=(0, 7))  # doctest: +SKIP
        >>> sweep["spread"]["cw"]["auroc"]                                          # doctest: +SKIP
        [0.97, 0.98]
    """
    if not benign or not adversarial or not all(adversarial.values()):
        raise ConfigError("need benign examples and at least one adversarial example of each attack")
    if not seeds:
        raise ConfigError("no seeds to try")
    original = detector.feature_extractor, detector.mask_seed_is_secret
    per_seed: dict = {}
    try:
        for seed in seeds:
            detector.set_mask_seed(int(seed))
            benign_scores = [detector.score(w) for w in benign]
            if progress:
                progress(len(benign))
            per_seed[int(seed)] = {}
            for attack, waveforms in adversarial.items():
                scores = [detector.score(w) for w in waveforms]
                if progress:
                    progress(len(waveforms))
                labels = [0] * len(benign_scores) + [1] * len(scores)
                m = detection_metrics(labels, benign_scores + scores, threshold=detector.threshold)
                per_seed[int(seed)][attack] = {k: m[k] for k in ("auroc", "accuracy", "true_positive_rate",
                                                                 "false_positive_rate", "n_benign", "n_adversarial")}
    finally:
        detector.feature_extractor, detector.mask_seed_is_secret = original
    spread = {attack: {metric: [min(per_seed[s][attack][metric] for s in per_seed),
                                max(per_seed[s][attack][metric] for s in per_seed)]
                       for metric in ("auroc", "accuracy", "true_positive_rate", "false_positive_rate")}
              for attack in adversarial}
    return {"seeds": [int(s) for s in seeds], "threshold": float(detector.threshold),
            "classifier": detector.classifier.name, "per_seed": per_seed, "spread": spread}


def held_out_examples(run_dir: Path, recognizer) -> tuple[list, dict]:
    """Benign test sources of a finished reproduction and their successful speech attacks (those it ran)."""
    results, _, speech, _, test_sources = finished_run(run_dir, recognizer)
    benign = [item.waveform for item in speech if item.id in test_sources]
    adversarial = {}
    for name in (a for a in SPEECH_ATTACKS if a in results["attacks"]):  # a partial run lacks some
        folder = Path(results["attacks"][name]["folder"])
        adversarial[name] = [load_audio(folder / r["audio"], recognizer.sample_rate)[0]
                             for r in successful_examples(folder, test_sources)]
    return benign, adversarial


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--run``, ``--detector`` and ``--model``, shared with :mod:`asrguard.experiments.adaptive`."""
    parser.add_argument("--run", type=Path, default=Path("runs/jayashankar2020"),
                        help="finished `asrguard reproduce jayashankar2020` folder (its attacks and split)")
    parser.add_argument("--detector", type=Path, default=None, help="detector folder (default: the shipped one)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")


def parse_seeds(parser: argparse.ArgumentParser, text: str, flag: str) -> list[int]:
    """Comma-separated integers, or a usage error naming ``flag``."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        parser.error(f"{flag} must be comma-separated integers, got {text!r}")
        raise  # parser.error exits; this keeps type checkers content


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="comma-separated mask seeds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    seeds = parse_seeds(parser, args.seeds, "--seeds")
    detector = load_detector(args.detector, args.model)
    benign, adversarial = held_out_examples(args.run, detector.recognizer)
    total = len(seeds) * (len(benign) + sum(map(len, adversarial.values())))
    with Progress(transient=True, disable=args.json) as bar:
        task = bar.add_task("scoring under each mask seed", total=total)
        sweep = seed_sweep(detector, benign, adversarial, seeds, progress=lambda k: bar.advance(task, k))
    report = {"run": str(args.run), "detector": str(args.detector or "shipped"), **sweep}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['classifier']} at threshold {report['threshold']:+.3f}, seeds {report['seeds']}, "
          f"{len(benign)} benign held-out sources")
    for attack, spread in report["spread"].items():
        print(f"  {attack.upper():4s} AUROC {spread['auroc'][0]:.3f}-{spread['auroc'][1]:.3f}  "
              f"TPR {100 * spread['true_positive_rate'][0]:.1f}-{100 * spread['true_positive_rate'][1]:.1f} %  "
              f"FPR {100 * spread['false_positive_rate'][0]:.1f}-{100 * spread['false_positive_rate'][1]:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
