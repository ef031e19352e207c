"""Run an attack over many utterances: WAV files plus a resumable JSONL manifest, and a report.

Layout of an output folder::

    DIR/run.json          attack name, config and its hash (a re-run with another config is refused)
    DIR/manifest.jsonl    one line per finished utterance, appended atomically (flush + fsync)
    DIR/audio/*.wav       adversarial audio, 32-bit float so small perturbations survive

Each batch is attacked, then its WAVs are written (atomically) and its lines appended one by
one, so ``kill -9`` loses at most the batch in flight, and re-running the same command skips
every id already in the manifest (a truncated last line is ignored and redone).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
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
from ..errors import ConfigError, DataError
from ..fileio import atomic_write_text
from ..text import CHARACTERS
from .base import Attack
from .targets import TargetSampler

MANIFEST = "manifest.jsonl"
RUN_FILE = "run.json"


def safe_name(item_id: str) -> str:
    """File-system-safe, collision-free name for an item id."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._")[:80] or "item"
    return f"{stem}-{hashlib.sha256(item_id.encode('utf-8')).hexdigest()[:8]}"


def finished_ids(out_dir: str | Path) -> set[str]:
    manifest = Path(out_dir) / MANIFEST
    if not manifest.exists():
        return set()
    return {row["id"] for row in read_jsonl(manifest, allow_partial_tail=True) if "id" in row}


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


def run_attack(
    attack: Attack,
    items: Sequence[Any],
    out_dir: str | Path,
    *,
    sampler: TargetSampler | None = None,
    batch_size: int = 16,
    progress: bool = True,
    meta: dict | None = None,
) -> Path:
    """Attack every item (objects with ``id``, ``waveform`` and ``transcript``) not done yet.

    Targeted attacks draw each item's target from ``sampler`` (default: ``TargetSampler()``)
    sized to the item's output frames. Items are grouped by length so batches carry little
    padding. Returns the manifest path.

    Example:
        >>> run_attack(CWAttack(rec), evaluation_set("fsdd-digits", limit=8), "runs/cw")  # doctest: +SKIP
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_run_file(out_dir, attack, meta)
    manifest = out_dir / MANIFEST
    _drop_truncated_tail(manifest)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise DataError("item ids must be unique")
    done = finished_ids(out_dir)
    todo = sorted((it for it in items if it.id not in done), key=lambda it: len(it.waveform))
    sampler = sampler or TargetSampler()
    rate = attack.recognizer.sample_rate
    stats = {"done": len(done & set(ids)), "success": 0}
    if manifest.exists():
        stats["success"] = sum(bool(r.get("success")) for r in read_jsonl(manifest, allow_partial_tail=True)
                               if r.get("id") in set(ids))

    bar = _Progress(len(items), stats, attack.name, enabled=progress)
    with bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            runnable, targets, skipped = _plan_batch(attack, chunk, sampler, rate)
            for item, reason in skipped:
                append_record(manifest, {"id": item.id, "attack": attack.name, "config_hash": attack.config_hash,
                                         "success": False, "skipped": reason, "reference": item.transcript})
                stats["done"] += 1
                bar.update()
            if not runnable:
                continue
            batch = AudioBatch.from_waveforms([it.waveform for it in runnable], rate, names=[it.id for it in runnable])
            attack.on_step = bar.step if progress else None
            try:
                results = attack.generate(batch, targets if attack.targeted else None)
            finally:
                attack.on_step = None
            for item, result in zip(runnable, results):
                name = f"audio/{safe_name(item.id)}.wav"
                save_audio(out_dir / name, result.waveform, rate)
                record = {"id": item.id, "attack": attack.name, "config_hash": attack.config_hash,
                          "reference": item.transcript, "audio": name, "n_samples": len(result.waveform),
                          **result.to_record()}
                append_record(manifest, _json_safe(record))
                stats["done"] += 1
                stats["success"] += bool(result.success)
                bar.update()
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
    manifest = out_dir / MANIFEST
    if not manifest.exists():
        raise DataError(f"{out_dir}: no {MANIFEST}; run `asrguard attack ... --out {out_dir}` first")
    rows = read_jsonl(manifest, allow_partial_tail=True)
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


__all__ = ["finished_ids", "report", "run_attack", "safe_name"]
