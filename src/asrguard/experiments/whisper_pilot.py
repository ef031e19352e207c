"""A first look at the defence on Whisper: do adversarial inputs stand out in its dropout
realisations? (A pilot for the Whisper-defence issue, not its reproduction.)

Stages, each resumable (attack folders and a feature cache in ``--out``):

1. CW and DR (dropout at the detector's sites and rate while crafting) against Whisper
   tiny.en on ``--n`` real ``english_speech`` utterances of 2-6 s, toward command targets
   sized to each clip, from a -25 dB bound;
2. ``I`` realisations (p = 0.02 at the decoder, Whisper's default) of every source and every
   successful example; transcripts compared after Whisper's English normalisation;
3. P^char statistics per input (mean and largest edit distance to the medoid, share of
   realisations unlike the deterministic transcript, distinct transcripts), the token-level
   posterior measures (entropy, MI, variance, aKLD: the maximum over the medoid's steps) and
   P^prob's mean, and, for each attack, the AUROC of each statistic for adversarial against
   benign (no classifier fitted: the sample is too small to fit one honestly).

    python -m asrguard.experiments.whisper_pilot --out runs/whisper_pilot --n 12
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ..asr import recipes
from ..asr.recipes import default_data_root
from ..asr.registry import load_recognizer
from ..attacks.factory import make_attack
from ..attacks.sources import load_items
from ..attacks.runner import MANIFEST, report, run_attack
from ..attacks.targets import TargetSampler
from ..audio import load_audio
from ..data import read_jsonl
from ..execute import make_executor
from ..fileio import atomic_write_text
from ..uncertainty.features import FeatureExtractor

CHAR_STATISTICS = ("mean_distance", "max_distance", "disagree_with_deterministic", "distinct_fraction")
#: Token-level posterior measures (teacher-forced on the medoid), each the maximum over steps, and P^prob's mean.
POSTERIOR_STATISTICS = ("entropy", "mutual_information", "variance", "akld", "prob_mean")
STATISTICS = CHAR_STATISTICS + POSTERIOR_STATISTICS


def realization_statistics(recognizer, waveform, n: int, seed: int) -> dict:
    """P^char statistics of ``n`` seeded realisations (transcripts normalised by the recogniser)
    and the posterior measures of the same realisations."""
    norm = recognizer.normalize_text
    clean = norm(recognizer.transcribe([waveform])[0])
    features = FeatureExtractor(n=n, p=recognizer.default_p, seed=seed)(recognizer, waveform)
    drawn, distances, medoid = features.transcripts, features.char_distances, features.medoid
    return {"mean_distance": float(np.mean(distances)), "max_distance": float(np.max(distances)),
            "disagree_with_deterministic": float(np.mean([t != clean for t in drawn])),
            "distinct_fraction": len(set(drawn)) / n, "medoid": medoid, "transcript": clean,
            "distinct": sorted(set(drawn))[:10], "prob_mean": float(features.prob_moments[0]),
            **{m: float(features.measures[m]) for m in ("entropy", "mutual_information", "variance", "akld")},
            "features": features.to_dict()}


def native_items(n: int, seed: int, exclude, min_seconds: float = 2.0, max_seconds: float = 6.0) -> list:
    """``n`` native read-speech utterances of the sources' durations (seeded), none of them an attack source."""
    taken = {it.id.split(":", 1)[1] for it in exclude}
    native = ("librispeech-test-other", "librispeech-test-clean", "common-voice", "ljspeech", "librivox")
    records = [r for r in recipes.english_speech_records(default_data_root(), min_seconds=min_seconds,
                                                         max_seconds=max_seconds)
               if r.source in native and r.id not in taken]
    chosen = sorted(np.random.default_rng([seed, 1]).choice(len(records), min(n, len(records)), replace=False))
    return recipes.load_records([records[i] for i in chosen])


def auroc(benign: list[float], adversarial: list[float]) -> float | None:
    if not benign or not adversarial:
        return None
    return float(roc_auc_score([0] * len(benign) + [1] * len(adversarial), list(benign) + list(adversarial)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=12, help="sources")
    parser.add_argument("--realizations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attacks", default="cw,dr")
    parser.add_argument("--max-iter", type=int, default=150)
    parser.add_argument("--targets", default="commands", help="commands (sized to each clip) or paper (the "
                                                                    "paper's 41-character target on every source)")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument("--native", type=int, default=16, help="extra benign utterances of native read speech "
                                                                "(LibriSpeech, Common Voice, LJ Speech, LibriVox)")
    parser.add_argument("--executor", default="local", help="where the attacks run: local or ray (same results)")
    parser.add_argument("--workers", type=int, default=2, help="ray: workers")
    parser.add_argument("--attacks-only", action="store_true", help="stop after the attacks (stage 1)")
    args = parser.parse_args(argv)
    executor = make_executor(args.executor, workers=args.workers)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    recognizer = load_recognizer("whisper:tiny.en")
    items = load_items(["english-speech"], args.n, args.seed, default_data_root(), recognizer.sample_rate,
                       max_seconds=args.max_seconds, min_seconds=args.min_seconds)
    sampler = TargetSampler(args.targets, seed=args.seed)
    settings = {"seed": str(args.seed), "max_iter": str(args.max_iter), "max_shrinks": "2", "tau_db": "25"}
    summaries = {}
    for name in args.attacks.split(","):
        extra = {"p_dr": str(recognizer.default_p)} if name == "dr" else {}
        attack = make_attack(name, recognizer, {**settings, **extra})
        folder = out / (f"{name}-{attack.config_hash}" + ("" if args.targets == "commands" else f"-{args.targets}"))
        run_attack(attack, items, folder, sampler=sampler, batch_size=1, executor=executor,
                   meta={"recognizer": "whisper:tiny.en", "n": args.n, "seed": args.seed})
        summaries[name] = {"folder": folder.name, **report(folder)}
    if args.attacks_only:
        print(json.dumps(summaries, indent=1))
        return 0

    cache_path = out / "statistics_v3.json"  # v3: with the full feature record, for fitting classifiers later
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}

    def stats(key: str, waveform) -> dict:
        if key not in cache:
            cache[key] = realization_statistics(recognizer, waveform, args.realizations, args.seed)
            atomic_write_text(cache_path, json.dumps(cache, indent=1))
        return cache[key]

    benign = [stats(f"benign:{it.id}", it.waveform) for it in items]
    result = {"settings": {**{k: v for k, v in vars(args).items() if k not in ("executor", "workers")}, "out": str(out), "p": recognizer.default_p,
                           "sites": recognizer.dropout_sites, "ids": [it.id for it in items]},
              "attacks": summaries, "benign": {s: float(np.mean([b[s] for b in benign])) for s in STATISTICS},
              "auroc": {}}
    for name, summary in summaries.items():
        rows = [r for r in read_jsonl(out / summary["folder"] / MANIFEST) if r.get("success")]
        adversarial = [stats(f"{name}:{r['id']}", load_audio(out / summary["folder"] / r["audio"])[0]) for r in rows]
        result["auroc"][name] = {"n_adversarial": len(adversarial), "n_benign": len(benign),
                                 **{s: auroc([b[s] for b in benign], [a[s] for a in adversarial])
                                    for s in STATISTICS},
                                 "adversarial_mean": {s: float(np.mean([a[s] for a in adversarial]))
                                                      for s in STATISTICS} if adversarial else {}}
    native = [stats(f"native:{it.id}", it.waveform)
              for it in native_items(args.native, args.seed, items, args.min_seconds, args.max_seconds)]
    result["native_benign"] = {s: float(np.mean([b[s] for b in native])) for s in STATISTICS} if native else {}
    result["auroc_vs_native"] = {}
    for name, summary in summaries.items():
        rows = [r for r in read_jsonl(out / summary["folder"] / MANIFEST) if r.get("success")]
        adversarial = [cache[f"{name}:{r['id']}"] for r in rows]
        result["auroc_vs_native"][name] = {"n_adversarial": len(adversarial), "n_benign": len(native),
                                           **{s: auroc([b[s] for b in native], [a[s] for a in adversarial])
                                              for s in STATISTICS}}
    atomic_write_text(out / "results.json", json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
