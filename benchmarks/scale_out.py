"""Attack throughput in this process against Ray with 1 and 2 workers, on this machine, in one run.

CW (the shipped CTC model, ``--max-iter`` steps at most) on ``--n`` held-out utterances
(FSDD connected digits and Speech Commands words from ``../shared/data``; voiced noise made
here when the data is absent), ``--batch-size`` per unit. Four timings, each in a fresh
output folder:

* ``local``: this process, torch at ``--threads`` threads;
* Ray start-up: ``ray.init`` of a local cluster (once, not counted in the Ray runs);
* ``ray_1``: one worker at ``--threads`` threads; ``ray_2``: two workers, the threads shared out.

Prints items per second of each, their ratios to ``local``, the start-up seconds, and how each
Ray run agrees with the local one: the whole manifest (wall time aside), the success flags,
targets and transcripts, and the largest WAV sample difference. Workers at another torch
thread count than the local run round differently in the last bits, so exact equality is
only expected at equal thread counts (``ray_1`` here; ``ray_2``'s workers run one thread each). Needs Ray
(``pip install -e '.[ray]'``). Run it alone: the machine's cores are the resource measured.

    python benchmarks/scale_out.py --json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import soundfile as sf
import torch

from _timing import print_result

from asrguard.attacks.factory import make_attack
from asrguard.attacks.runner import MANIFEST, run_attack
from asrguard.attacks.targets import TargetSampler
from asrguard.data import read_jsonl
from asrguard.execute import LocalExecutor, RayExecutor, threads_for


def sources(n: int, seed: int, rate: int) -> tuple[list, str]:
    from asrguard.asr.recipes import default_data_root
    from asrguard.attacks.sources import load_items
    from asrguard.errors import DataError

    try:
        return load_items(["fsdd-digits", "speech-commands"], n, seed, default_data_root(), rate), "held-out speech"
    except DataError:
        rng = np.random.default_rng(seed)
        items = []
        for i in range(n):
            t = np.arange(int(rate * (0.6 + 0.1 * (i % 5)))) / rate
            voice = 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
            items.append(SimpleNamespace(id=f"made:{i}", transcript="",
                                         waveform=(voice + 0.02 * rng.standard_normal(len(t))).astype(np.float32)))
        return items, "voiced noise made here (no ../shared/data)"


def compare(folders: dict, reference: str, name: str) -> dict:
    """How run ``name`` agrees with ``reference``: manifests equal but for wall time; the same
    success flags, targets and transcripts; the largest WAV sample difference."""
    def rows(folder):
        return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in read_jsonl(folders[folder] / MANIFEST)]

    ours, theirs = rows(reference), rows(name)
    keys = ("id", "success", "target", "transcript", "transcript_dropout")
    largest = 0.0
    for row in ours:
        if row.get("audio"):
            a = sf.read(folders[reference] / row["audio"], dtype="float32")[0]
            b = sf.read(folders[name] / row["audio"], dtype="float32")[0]
            largest = max(largest, float(np.abs(a - b).max()))
    return {f"{name}_identical_manifest": ours == theirs,
            f"{name}_same_success_targets_transcripts": [{k: r.get(k) for k in keys} for r in ours]
                                                        == [{k: r.get(k) for k in keys} for r in theirs],
            f"{name}_largest_audio_difference": largest}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import ray

    from asrguard.asr.registry import load_recognizer

    torch.set_num_threads(args.threads)
    recognizer = load_recognizer("ctc")
    items, what = sources(args.n, args.seed, recognizer.sample_rate)
    attack = make_attack("cw", recognizer, {"seed": str(args.seed), "max_iter": str(args.max_iter)})
    sampler = TargetSampler("mixed", seed=args.seed)
    result = {"n": len(items), "sources": what, "batch_size": args.batch_size, "max_iter": args.max_iter,
              "cores": os.cpu_count(), "torch_threads_local": args.threads}
    with tempfile.TemporaryDirectory(prefix="asrguard-scale-") as tmp:
        folders = {}

        def timed(name: str, executor) -> None:
            folders[name] = Path(tmp) / name
            start = time.perf_counter()
            run_attack(attack, items, folders[name], sampler=sampler, batch_size=args.batch_size, progress=False,
                       executor=executor)
            seconds = time.perf_counter() - start
            result[f"{name}_seconds"] = seconds
            result[f"{name}_items_per_second"] = len(items) / seconds
            print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)

        timed("local", LocalExecutor())
        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        result["ray_startup_seconds"] = time.perf_counter() - start
        timed("ray_1", RayExecutor(1, threads=args.threads))
        timed("ray_2", RayExecutor(2, threads=threads_for(2, args.threads)))
        result["ray_2_torch_threads_per_worker"] = threads_for(2, args.threads)
        ray.shutdown()
        for name in ("ray_1", "ray_2"):
            result[f"{name}_speedup_vs_local"] = result[f"{name}_items_per_second"] / result["local_items_per_second"]

        for name in ("ray_1", "ray_2"):
            result.update(compare(folders, "local", name))
        result["success_rate"] = float(np.mean([r["success"] for r in read_jsonl(folders["local"] / MANIFEST)]))
    print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
