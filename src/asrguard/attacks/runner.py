"""Run an attack over many utterances: WAV files plus a resumable JSONL manifest, and a report.

Layout of an output folder::

    DIR/run.json               attack name, config and its hash (a re-run with another config is refused)
    DIR/manifest.jsonl         one line per finished utterance, in plan order once a run ends
    DIR/audio/*.wav            adversarial audio, 32-bit float so small perturbations survive
    DIR/shards/*.jsonl         lines written by Ray workers, one file each, merged into the manifest
    DIR/.asrguard.lock         held by the run writing here; a second run on the folder is refused

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
import hashlib
import json
import math
import os
import re
import socket
import statistics
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..asr.base import AudioBatch, Posteriors
from ..audio import save_audio
from ..data import append_record, read_jsonl
from ..errors import ConfigError, DataError, IncompleteRunError
from ..execute import LocalExecutor, RunLock, Unit
from ..fileio import atomic_write_text
from ..text import CHARACTERS
from .base import Attack
from .targets import TargetSampler

MANIFEST = "manifest.jsonl"
RUN_FILE = "run.json"
SHARDS = "shards"


def safe_name(item_id: str) -> str:
    """File-system-safe, collision-free name for an item id."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._")[:80] or "item"
    return f"{stem}-{hashlib.sha256(item_id.encode('utf-8')).hexdigest()[:8]}"


def read_records(out_dir: str | Path) -> list[dict]:
    """Every finished item of an attack folder: the manifest, then any workers' shards not yet
    merged; each id once (the first line wins), truncated last lines ignored.

    Example:
        >>> [r["id"] for r in read_records("runs/cw")][:2]  # doctest: +SKIP
        ['fsdd-digits:0_jackson_0', 'fsdd-digits:3_theo_12']
    """
    out_dir = Path(out_dir)
    files = [out_dir / MANIFEST] + sorted((out_dir / SHARDS).glob("*.jsonl"))
    rows, seen = [], set()
    for path in files:
        if not path.exists():
            continue
        for row in read_jsonl(path, allow_partial_tail=True):
            if "id" in row and row["id"] not in seen:
                seen.add(row["id"])
                rows.append(row)
    return rows


def finished_ids(out_dir: str | Path) -> set[str]:
    return {row["id"] for row in read_records(out_dir)}


def merge_shards(out_dir: str | Path, order: Sequence[str] = ()) -> Path:
    """Fold the workers' shards into the manifest, atomically, and delete them.

    Lines are ordered as ``order`` (the plan); ids not in it keep their place before those.
    The result is exactly what a local run of the same plan writes.
    """
    out_dir = Path(out_dir)
    manifest = out_dir / MANIFEST
    rows = read_records(out_dir)
    position = {item_id: k for k, item_id in enumerate(order)}
    rows.sort(key=lambda r: (r["id"] in position, position.get(r["id"], 0)))  # stable: others keep their order
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if rows or manifest.exists():
        atomic_write_text(manifest, text)
    for path in list((out_dir / SHARDS).glob("*")) if (out_dir / SHARDS).exists() else []:
        path.unlink(missing_ok=True)
    return manifest


def _drop_truncated_tail(manifest: Path) -> None:
    """Rewrite the manifest without a half-written last line (left by a killed run), atomically.

    Otherwise the next append would bury the broken line in the middle of the file.
    """
    if not manifest.exists():
        return
    lines = manifest.read_text(encoding="utf-8").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return
    try:
        json.loads(lines[-1])
        return
    except json.JSONDecodeError:
        pass
    kept = "\n".join(lines[:-1])
    atomic_write_text(manifest, kept + "\n" if kept else "")


def _write_run_file(out_dir: Path, attack: Attack, meta: dict | None) -> None:
    path = out_dir / RUN_FILE
    document = {"attack": attack.name, "config_hash": attack.config_hash, "config": attack.config_dict(),
                **(meta or {})}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError:
            existing = {}
        if existing.get("config_hash") not in (None, attack.config_hash):
            raise ConfigError(
                f"{out_dir}: holds results of {existing.get('attack')} with config {existing.get('config_hash')}, "
                f"not {attack.name} {attack.config_hash}; use another --out folder or delete this one")
    atomic_write_text(path, json.dumps(document, indent=2, default=str) + "\n")


def plan_units(items: Sequence[Any], batch_size: int) -> list[Unit]:
    """The whole run cut into units: items sorted by length (ties keep their order), ``batch_size`` each.

    Example:
        >>> from types import SimpleNamespace as Item
        >>> items = [Item(id=k, waveform=[0.0] * n) for k, n in (("a", 3), ("b", 1), ("c", 2))]
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
            out[item.id] = (_json_safe(record), result.waveform)
    return [out[it.id] for it in items]


class AttackWorker:
    """Runs units of one attack and writes their items into ``out_dir``: WAVs atomically, then one
    line per item into the manifest (in this process) or into the worker's own shard (Ray).

    Items of ``done`` are attacked again when their unit is rerun, but never written twice.
    """

    def __init__(self, attack: Attack, out_dir: str | Path, sampler: TargetSampler, done: Iterable[str] = (),
                 shard: str | None = None, device: str = "cpu"):
        self.attack, self.out_dir, self.sampler, self.done = attack, Path(out_dir), sampler, set(done)
        if device != "cpu":
            move = getattr(attack.recognizer, "to", None)
            if move is None:
                raise ConfigError(f"{type(attack.recognizer).__name__} cannot move to {device}")
            move(device)
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
        _write_run_file(out_dir, attack, meta)
        manifest = out_dir / MANIFEST
        _drop_truncated_tail(manifest)
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


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if is_dataclass(value):
        return _json_safe(asdict(value))
    return value


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
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
        self.inside = (f" · batch step {report.step}/{report.max_steps}, {report.reached}/{report.batch_size} "
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


def _mean(values: Iterable[float]):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def report(out_dir: str | Path) -> dict:
    """Summary of an attack folder.

    Keys: ``n`` (utterances attempted, skipped ones included), ``success_rate``,
    ``mean_db_x_delta`` and ``median_snr_db`` (over successful examples),
    ``success_rate_with_dropout`` (fraction of all ``n`` transcribed as the target under one
    seeded dropout draw at the defence rate), ``seconds_per_success`` (total attack wall time,
    including fitting a universal perturbation, divided by the number of successes), plus
    attack-specific rates when present.

    Example:
        >>> report("runs/cw")["success_rate"]  # doctest: +SKIP
        0.98
    """
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).exists() and not any((out_dir / SHARDS).glob("*.jsonl")):
        raise DataError(f"{out_dir}: no {MANIFEST}; run `asrguard attack ... --out {out_dir}` first")
    rows = read_records(out_dir)
    run = json.loads((out_dir / RUN_FILE).read_text()) if (out_dir / RUN_FILE).exists() else {}
    n = len(rows)
    ok = [r for r in rows if r.get("success")]
    seconds = sum(float(r.get("wall_seconds") or 0.0) for r in rows)
    seconds += float((run.get("fit") or {}).get("fit_seconds") or 0.0)  # universal: fitting δ is part of the cost
    out: dict[str, Any] = {
        "attack": run.get("attack"), "config_hash": run.get("config_hash"), "n": n,
        "n_success": len(ok), "n_skipped": sum(1 for r in rows if r.get("skipped")),
        "success_rate": len(ok) / n if n else None,
        "mean_db_x_delta": _mean(r.get("db_x_delta") for r in ok),
        "max_db_x_delta": max((r["db_x_delta"] for r in ok if r.get("db_x_delta") is not None), default=None),
        "median_snr_db": (statistics.median([r["snr_db"] for r in ok if r.get("snr_db") is not None])
                          if any(r.get("snr_db") is not None for r in ok) else None),
        "success_rate_with_dropout": (sum(bool(r.get("success_with_dropout")) for r in rows) / n) if n else None,
        "seconds_per_success": seconds / len(ok) if ok else None,
        "total_seconds": seconds,
        "mean_iterations": _mean(r.get("iterations") for r in rows if not r.get("skipped")),
    }
    if any("success_spectral_subtraction" in r for r in rows):
        out["success_rate_after_spectral_subtraction"] = sum(
            bool(r.get("success") and r.get("success_spectral_subtraction")) for r in rows) / n
        out["success_rate_after_logmmse"] = sum(bool(r.get("success") and r.get("success_logmmse")) for r in rows) / n
    if any("masked_energy_share" in r for r in rows):
        out["mean_masked_energy_share"] = _mean(r.get("masked_energy_share") for r in ok)
        out["mean_masked_energy_share_stage1"] = _mean(r.get("masked_energy_share_stage1") for r in ok)
        out["mean_masked_cell_share"] = _mean(r.get("masked_cell_share") for r in ok)
    if run.get("attack") == "universal" or any(r.get("target") is None and not r.get("skipped") for r in rows):
        scored = [r for r in rows if not r.get("skipped") and r.get("reference")]
        out["transcript_change_rate"] = out["success_rate"]
        if scored:
            from ..evaluate.metrics import recognition_metrics

            refs = [r["reference"] for r in scored]
            before = recognition_metrics(refs, [r["original_transcript"] for r in scored]).get("cer")
            after = recognition_metrics(refs, [r["transcript"] for r in scored]).get("cer")
            out.update(cer_before=before, cer_after=after,
                       cer_increase=(after - before) if before is not None and after is not None else None)
    by_source: dict[str, list] = {}
    for r in rows:
        by_source.setdefault(str(r.get("id", "")).split(":")[0], []).append(bool(r.get("success")))
    if len(by_source) > 1:
        out["success_rate_by_source"] = {k: sum(v) / len(v) for k, v in sorted(by_source.items())}
    return out


__all__ = ["AttackWorker", "attack_items", "finished_ids", "merge_shards", "plan_units", "read_records", "report",
           "run_attack", "safe_name"]
