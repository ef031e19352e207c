"""Run an attack over many utterances: WAV files plus a resumable JSONL manifest, and a report.

The folder's layout and its readers are in :mod:`asrguard.attacks.manifest`; a run also holds
``DIR/.asrguard.lock`` while it writes, so a second run on the folder is refused.

**Units.** The items are sorted by length and cut into units of ``batch_size``, from the whole
item list, so a unit's members never depend on what an earlier run finished. A unit is a pure
function of its items, the attack config and the seed: the same unit gives the same examples
on whichever worker runs it, in whatever order. (Batched optimisation is not separable at
float precision: a gradient computed in a batch differs from the same row's alone in the
last bits, and Adam amplifies that over hundreds of steps. Fixed units keep results exact;
``batch_size=1`` makes every item its own unit.)

**Resume.** Each unit's WAVs are written atomically and its lines appended with fsync as the
unit ends, so ``kill -9`` loses only the units in flight. A unit with any item missing is run
again whole, and only its missing items are written; re-running the same command skips
every finished unit (a truncated last line is ignored and redone).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..asr.base import AudioBatch, Posteriors
from ..audio import save_audio
from ..data import append_record
from ..errors import ConfigError, DataError, IncompleteRunError
from ..execute import LocalExecutor, RunLock, Unit, move_recognizer
from ..fileio import atomic_write_text
from ..text import CHARACTERS
from .base import Attack
from .manifest import (MANIFEST, RUN_FILE, SHARDS, drop_truncated_tail, finished_ids, json_safe, merge_shards,
                       read_records, report, safe_name, write_run_file)
from .targets import TargetSampler


def plan_units(items: Sequence[Any], batch_size: int) -> list[Unit]:
    """The whole run cut into units: items sorted by length (ties keep their order), ``batch_size`` each.

    Example:
        >>> from asrguard.data.records import Utterance
        >>> items = [Utterance.from_waveform(k, [0.0] * n, 16000) for k, n in (("a", 3), ("b", 1), ("c", 2))]
        >>> [u.ids for u in plan_units(items, 2)]
        [('b', 'c'), ('a',)]
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    ordered = sorted(items, key=lambda it: len(it.waveform))
    return [Unit(k, tuple(ordered[s:s + batch_size]), tuple(it.id for it in ordered[s:s + batch_size]))
            for k, s in enumerate(range(0, len(ordered), batch_size))]


def attack_items(attack: Attack, items: Sequence[Any], sampler: TargetSampler) -> list[tuple[dict, np.ndarray | None]]:
    """Attack one unit: ``(manifest record, adversarial waveform or None when skipped)`` per item, in order.

    Example:
        >>> records = attack_items(CWAttack(rec), items[:4], TargetSampler())  # doctest: +SKIP
    """
    rate = attack.recognizer.sample_rate
    runnable, targets, skipped = _plan_batch(attack, items, sampler, rate)
    out: dict[str, tuple[dict, np.ndarray | None]] = {}
    for item, reason in skipped:
        out[item.id] = ({"id": item.id, "attack": attack.name, "config_hash": attack.config_hash,
                         "success": False, "skipped": reason, "reference": item.transcript}, None)
    if runnable:
        batch = AudioBatch.from_waveforms([it.waveform for it in runnable], rate, names=[it.id for it in runnable])
        results = attack.generate(batch, targets if attack.targeted else None)
        for item, result in zip(runnable, results):
            record = {"id": item.id, "attack": attack.name, "config_hash": attack.config_hash,
                      "reference": item.transcript, "audio": f"audio/{safe_name(item.id)}.wav",
                      "n_samples": len(result.waveform), **result.to_record()}
            out[item.id] = (json_safe(record), result.waveform)
    return [out[it.id] for it in items]


class AttackWorker:
    """Runs units of one attack and writes their items into ``out_dir``: WAVs atomically, then one
    line per item into the manifest (in this process) or into the worker's own shard (Ray).

    Items of ``done`` are attacked again when their unit is rerun, but never written twice.
    """

    def __init__(self, attack: Attack, out_dir: str | Path, sampler: TargetSampler, done: Iterable[str] = (),
                 shard: str | None = None, device: str = "cpu"):
        self.attack, self.out_dir, self.sampler, self.done = attack, Path(out_dir), sampler, set(done)
        move_recognizer(attack.recognizer, device)
        if shard is None:
            self.lines = self.out_dir / MANIFEST
        else:
            self.lines = self.out_dir / SHARDS / f"{shard}.jsonl"
            atomic_write_text(self.out_dir / SHARDS / f"{shard}.worker.json",
                              json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))

    def __call__(self, unit: Unit) -> list[dict]:
        written = []
        for record, waveform in attack_items(self.attack, unit.payload, self.sampler):
            if record["id"] in self.done:
                continue
            if waveform is not None:
                save_audio(self.out_dir / record["audio"], waveform, self.attack.recognizer.sample_rate)
            append_record(self.lines, record)
            self.done.add(record["id"])
            written.append({"id": record["id"], "success": bool(record.get("success"))})
        return written


def run_attack(
    attack: Attack,
    items: Sequence[Any],
    out_dir: str | Path,
    *,
    sampler: TargetSampler | None = None,
    batch_size: int = 16,
    progress: bool = True,
    meta: dict | None = None,
    executor=None,
) -> Path:
    """Attack every item (objects with ``id``, ``waveform`` and ``transcript``) not done yet.

    Targeted attacks draw each item's target from ``sampler`` (default: ``TargetSampler()``)
    sized to the item's output frames. Units come from :func:`plan_units`; ``executor`` (default:
    this process, :class:`~asrguard.execute.LocalExecutor`) runs them. Returns the manifest path;
    raises :class:`~asrguard.errors.IncompleteRunError` when a worker died with units in flight
    (everything else is saved, and the same call finishes the run).

    Example:
        >>> run_attack(CWAttack(rec), evaluation_set("fsdd-digits", limit=8), "runs/cw")  # doctest: +SKIP
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    executor = executor or LocalExecutor()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise DataError("item ids must be unique")
    with RunLock(out_dir) as lock:
        write_run_file(out_dir, attack, meta)
        manifest = out_dir / MANIFEST
        drop_truncated_tail(manifest)
        units = plan_units(items, batch_size)
        order = [i for u in units for i in u.ids]
        records = {r["id"]: r for r in read_records(out_dir)}
        todo = [u for u in units if any(i not in records for i in u.ids)]
        stats = {"done": sum(i in records for i in ids), "success": sum(bool(records[i].get("success"))
                                                                        for i in ids if i in records)}
        bar = _Progress(len(items), stats, attack.name, enabled=progress)

        def finished(unit: Unit, written: list[dict]) -> None:
            stats["done"] += len(written)
            stats["success"] += sum(w["success"] for w in written)
            bar.update()

        if executor.in_process and progress:
            attack.on_step = bar.step
        try:
            with bar:
                make_worker = functools.partial(AttackWorker, attack, out_dir, sampler or TargetSampler(), set(records))
                lost = executor.run(make_worker, todo, finished, shard_prefix=f"{lock.owner}-")
        finally:
            attack.on_step = None
            merge_shards(out_dir, order)
    if lost:
        n_lost = sum(len(u.ids) for u in lost)
        raise IncompleteRunError(f"{out_dir}: {n_lost} items were in flight on a worker that died; everything else "
                                 f"is saved: run the same command again to finish them")
    return manifest


def _plan_batch(attack: Attack, chunk, sampler: TargetSampler, rate: int):
    """Targets for a chunk; items that cannot be attacked are returned with a reason."""
    runnable, targets, skipped = [], [], []
    usable = []
    for it in chunk:
        if float(np.max(np.abs(it.waveform))) == 0.0:
            skipped.append((it, "digital silence: dB(x) is -inf, no relative bound exists"))
        else:
            usable.append(it)
    if not usable:
        return runnable, targets, skipped
    if not attack.targeted:
        return usable, [None] * len(usable), skipped
    batch = AudioBatch.from_waveforms([it.waveform for it in usable], rate, names=[it.id for it in usable])
    frames = target_frames(attack.recognizer, batch)
    chosen = [sampler.choose(it.id, int(n), exclude=it.transcript) for it, n in zip(usable, frames)]
    # the recogniser has the last word on every chosen target, in one call for the chunk
    with_target = [k for k, target in enumerate(chosen) if target is not None]
    fits = dict.fromkeys(range(len(usable)), False)
    if with_target:
        candidates = AudioBatch.from_waveforms([usable[k].waveform for k in with_target], rate, validate=False)
        fits.update(zip(with_target, attack.recognizer.target_fits(candidates, [chosen[k] for k in with_target])))
    for k, (it, n, target) in enumerate(zip(usable, frames, chosen)):
        if not fits[k]:
            skipped.append((it, f"no target fits its {n} output frames" if target is None
                                else f"target {target!r} does not fit it"))
        else:
            runnable.append(it)
            targets.append(target)
    return runnable, targets, skipped


#: Frames per second the target sampler assumes for recognisers without the project's CTC frames:
#: at its default fill of 0.2 that allows 10 characters per second, a fast speaking rate.
NOMINAL_FRAMES_PER_SECOND = 50


def target_frames(recognizer, batch: AudioBatch) -> list[int]:
    """What :class:`TargetSampler` sizes targets by: the CTC model's own output frames, else the
    duration at :data:`NOMINAL_FRAMES_PER_SECOND` (the recogniser's ``target_fits`` has the last word)."""
    if isinstance(recognizer, Posteriors) and tuple(recognizer.vocabulary) == CHARACTERS:
        with torch.no_grad():
            _, frames = recognizer.log_probs(batch)
        return [int(n) for n in frames.tolist()]
    return [int(n) * NOMINAL_FRAMES_PER_SECOND // batch.sample_rate for n in batch.lengths.tolist()]


class _Progress:
    """A rich progress bar whose description shows the success rate so far and, inside a batch,
    the optimisation step. Where stderr is not a terminal, a plain line every ``every_s`` seconds."""

    def __init__(self, total: int, stats: dict, name: str, enabled: bool = True, every_s: float = 10.0):
        self.total, self.stats, self.name, self.enabled, self.every_s = total, stats, name, enabled, every_s
        self.progress = None
        self.inside = ""
        self.last_line = 0.0

    def _text(self) -> str:
        done, ok = self.stats["done"], self.stats["success"]
        rate = f"{100.0 * ok / done:.0f}%" if done else "-"
        return f"{self.name}: success {ok}/{done} ({rate}){self.inside}"

    def __enter__(self):
        if self.enabled:
            console = Console(stderr=True)
            self.plain = not console.is_terminal
            if not self.plain:
                self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                         TimeElapsedColumn(), console=console, transient=False)
                self.progress.__enter__()
                self.task = self.progress.add_task(self._text(), total=self.total, completed=self.stats["done"])
        return self

    def step(self, report) -> None:
        """An attack's :class:`~asrguard.attacks.base.StepReport` from inside the current batch."""
        phase = f" ({report.phase})" if report.phase else ""
        self.inside = (f" · batch step {report.step}/{report.max_steps}{phase}, {report.reached}/{report.batch_size} "
                       f"reached, {report.active} still optimising")
        self.update(final=False)

    def update(self, final: bool = True) -> None:
        if final:
            self.inside = ""
        if self.progress is not None:
            self.progress.update(self.task, completed=self.stats["done"], description=self._text())
        elif self.enabled and self.plain and (final or time.monotonic() - self.last_line >= self.every_s):
            self.last_line = time.monotonic()
            print(f"{self._text()} [{self.stats['done']}/{self.total}]", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False


# the folder readers live in .manifest; they stay importable from here
__all__ = ["MANIFEST", "RUN_FILE", "SHARDS", "AttackWorker", "attack_items", "finished_ids", "merge_shards",
           "plan_units", "read_records", "report", "run_attack", "safe_name", "target_frames"]
