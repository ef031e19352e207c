"""Our CW attack against IBM ART 1.20.1's ``CarliniWagnerASR`` on the same shipped model.

Both attack the same held-out utterances (half connected FSDD digits, half Speech Commands)
toward the same targets, through the same recogniser (ART sees it through
:func:`asrguard.asr.art.to_art_estimator`, with ``predict`` and ``loss_gradient``). Each utterance is
scaled to a peak of 0.5 first, so ART's single absolute ``eps`` means the same relative
bound for every utterance. ART runs with its documented defaults converted from int16 to
the float scale (eps 2000/32768, learning rate 100/32768, check and shrink every 10
iterations, factor 0.8); ours with its defaults unless ``--tau-db`` / ``--learning-rate`` are
given (the settings used are printed with the results).

The clock: for each utterance, the first moment a perturbation with ``dB_x(δ) ≤ −30 dB``
transcribes as the target (ours: from the attack's success history; ART: recorded inside
the estimator's ``predict``, which ART calls for its own success checks). The time to bring
the set to ≥ 95 % success is the moment the 95th-percentile utterance gets there. ART is
stopped at ``--art-budget`` seconds; if it has not reached 95 % by then, the success each side
reached at equal time is printed instead of a ratio. ART is also stopped as soon as it
reaches the bar (its remaining iterations could only shrink perturbations further).

    pip install adversarial-robustness-toolbox==1.20.1   # or: pip install -e .[benchmark]
    python benchmarks/attacks.py --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch

from asrguard.asr.base import AudioBatch
from asrguard.asr.ctc import DEFAULT_MODEL_DIR, CTCRecognizer
from asrguard.attacks.sources import load_items
from asrguard.attacks.cw import CWAttack, CWConfig
from asrguard.attacks.targets import TargetSampler
from asrguard.audio import db

BAR_DB = -30.0
BAR_SUCCESS = 0.95


class BudgetExceeded(Exception):
    pass


class BarReached(Exception):
    """ART has brought 95 % of the utterances under the bar: no need to run its remaining iterations."""


class Monitor:
    """First time each utterance transcribes as its target with dB_x(δ) ≤ −30 dB."""

    def __init__(self, originals, targets, budget_s: float):
        self.originals, self.targets, self.budget_s = originals, targets, budget_s
        self.start = time.perf_counter()
        self.first = [None] * len(originals)
        self.best_db = [None] * len(originals)
        self.iterations = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def observe(self, waveforms, transcripts) -> None:
        now = self.elapsed()
        for j, (w, t) in enumerate(zip(waveforms, transcripts)):
            if t != self.targets[j]:
                continue
            d = db(np.asarray(w, dtype=np.float64) - self.originals[j]) - db(self.originals[j])
            if self.best_db[j] is None or d < self.best_db[j]:
                self.best_db[j] = d
            if d <= BAR_DB + 1e-9 and self.first[j] is None:
                self.first[j] = now


def make_art_estimator(recognizer, monitor: Monitor):
    """The recogniser as an ART estimator (:func:`asrguard.asr.art.to_art_estimator`), timed by ``monitor``."""
    from asrguard.asr.art import to_art_estimator

    def before_gradient(x, y):
        if time_to_fraction(monitor.first, BAR_SUCCESS) is not None:
            raise BarReached
        if monitor.elapsed() > monitor.budget_s:
            raise BudgetExceeded
        monitor.iterations += 1

    return to_art_estimator(recognizer, on_predict=monitor.observe, on_loss_gradient=before_gradient)


def time_to_fraction(first_times, fraction: float):
    """Seconds until ``fraction`` of the utterances have reached the bar (None: never)."""
    need = math.ceil(fraction * len(first_times))
    reached = sorted(t for t in first_times if t is not None)
    return reached[need - 1] if len(reached) >= need else None


def fraction_by(first_times, seconds: float) -> float:
    return sum(t is not None and t <= seconds for t in first_times) / len(first_times)


def run_ours(recognizer, originals, targets, config: CWConfig, batch_size: int):
    attack = CWAttack(recognizer, config)
    start = time.perf_counter()
    results, first = [], []
    offset = 0.0
    for i in range(0, len(originals), batch_size):
        chunk_start = time.perf_counter()
        chunk = attack.generate(originals[i:i + batch_size], targets[i:i + batch_size])
        for r in chunk:
            times = [t for t, d in r.extra["success_history"] if d is not None and d <= BAR_DB + 1e-9]
            first.append(offset + times[0] if times else None)
        results += chunk
        offset += time.perf_counter() - chunk_start
    return results, first, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="held-out utterances")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--art-budget", type=float, default=600.0, help="seconds before ART is stopped")
    parser.add_argument("--art-max-iter", type=int, default=1000, help="ART max_iter (its default)")
    parser.add_argument("--batch1", type=int, default=8, help="utterances for the batch-1 timing (0: skip)")
    parser.add_argument("--skip-art", action="store_true")
    parser.add_argument("--tau-db", type=float, default=None,
                        help="our starting bound in dB below the peak (default: the attack's default, 25); "
                             "30 starts right at the benchmark's -30 dB bar")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="our Adam step as a fraction of the bound (default: the attack's default, 0.1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (DEFAULT_MODEL_DIR / "config.json").exists():
        print(json.dumps({"skipped": f"no shipped model in {DEFAULT_MODEL_DIR}"}))
        return 0
    recognizer = CTCRecognizer.load()
    items = load_items(["fsdd-digits", "speech-commands"], args.n, args.seed)
    originals = [(0.5 * it.waveform / np.abs(it.waveform).max()).astype(np.float32) for it in items]
    batch = AudioBatch.from_waveforms(originals, recognizer.sample_rate)
    with torch.no_grad():
        _, frames = recognizer.log_probs(batch)
    sampler = TargetSampler("mixed", seed=args.seed)
    targets = [sampler.choose(it.id, int(n), exclude=it.transcript) for it, n in zip(items, frames.tolist())]
    out: dict = {"n": len(items), "bar_db": BAR_DB, "bar_success": BAR_SUCCESS, "threads": args.threads,
                 "model_checksum": recognizer.checksum}

    overrides = {k: v for k, v in (("tau_db", args.tau_db), ("learning_rate", args.learning_rate)) if v is not None}
    config = CWConfig(**overrides)
    results, first, ours_total = run_ours(recognizer, originals, targets, config, batch_size=len(originals))
    ours_s = time_to_fraction(first, BAR_SUCCESS)
    ok = [r for r in results if r.success]
    out["ours"] = {
        "config": results[0].config, "time_to_95_s": ours_s, "total_s": ours_total,
        "success": len(ok) / len(results), "success_at_bar": fraction_by(first, float("inf")),
        "mean_db_x_delta": float(np.mean([r.db_x_delta for r in ok])) if ok else None,
        "seconds_per_success_batch32": ours_total / max(len(ok), 1),
    }
    if args.batch1:
        _, first1, total1 = run_ours(recognizer, originals[: args.batch1], targets[: args.batch1], config, 1)
        n_ok1 = sum(t is not None for t in first1)
        out["ours"]["seconds_per_success_batch1"] = total1 / max(n_ok1, 1)
        out["ours"]["batch1_n"] = args.batch1

    if not args.skip_art:
        try:
            from art.attacks.evasion import CarliniWagnerASR
        except ImportError:
            out["art"] = {"skipped": "pip install adversarial-robustness-toolbox==1.20.1"}
        else:
            monitor = Monitor([o.astype(np.float64) for o in originals], targets, args.art_budget)
            estimator = make_art_estimator(recognizer, monitor)
            attack = CarliniWagnerASR(estimator, eps=2000 / 32768, learning_rate=100 / 32768,
                                      max_iter=args.art_max_iter, decrease_factor_eps=0.8,
                                      num_iter_decrease_eps=10, batch_size=len(originals))
            x = np.empty(len(originals), dtype=object)
            x[:] = [o.copy() for o in originals]
            stopped = False
            monitor.start = time.perf_counter()
            try:
                attack.generate(x, np.array(targets))
            except BudgetExceeded:
                stopped = True
            except BarReached:
                pass
            art_total = monitor.elapsed()
            art_s = time_to_fraction(monitor.first, BAR_SUCCESS)
            reached = [d for d in monitor.best_db if d is not None]
            out["art"] = {
                "version": __import__("art").__version__, "time_to_95_s": art_s, "total_s": art_total,
                "iterations": monitor.iterations, "stopped_at_budget": stopped,
                "success_at_bar": fraction_by(monitor.first, float("inf")),
                "success_any_db": len(reached) / len(originals),
                "mean_db_x_delta": float(np.mean(reached)) if reached else None,
                "eps_float": 2000 / 32768, "learning_rate_float": 100 / 32768,
            }
            out["ours_s"], out["art_s"] = ours_s, art_s
            if ours_s and art_s:
                out["ratio_art_over_ours"] = art_s / ours_s
            else:
                equal = ours_s if ours_s is not None else ours_total
                out["ratio_art_over_ours"] = None
                out["at_equal_time"] = {
                    "seconds": equal, "ours_success_at_bar": fraction_by(first, equal),
                    "art_success_at_bar": fraction_by(monitor.first, equal),
                    "art_seconds": art_total, "ours_success_at_art_seconds": fraction_by(first, art_total),
                    "art_success_at_art_seconds": fraction_by(monitor.first, art_total),
                }
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
