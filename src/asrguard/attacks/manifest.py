"""An attack folder on disk: its manifest, the workers' shards, ``run.json``, and its report.

Layout::

    DIR/run.json               attack name, config and its hash (a re-run with another config is refused)
    DIR/manifest.jsonl         one line per finished utterance, in plan order once a run ends
    DIR/audio/*.wav            adversarial audio, 32-bit float so small perturbations survive
    DIR/shards/*.jsonl         lines written by Ray workers, one file each, merged into the manifest

:mod:`asrguard.attacks.runner` writes folders; everything that reads one goes through here.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..data import read_jsonl
from ..errors import ConfigError, DataError
from ..evaluate.metrics import recognition_metrics
from ..fileio import atomic_write_text

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
    for path in list((out_dir / SHARDS).glob("*")):  # an absent folder globs to nothing
        path.unlink(missing_ok=True)
    return manifest


def drop_truncated_tail(manifest: Path) -> None:
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


def write_run_file(out_dir: Path, attack, meta: dict | None) -> None:
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


def json_safe(value):
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if is_dataclass(value):
        return json_safe(asdict(value))
    return value


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


__all__ = ["MANIFEST", "RUN_FILE", "SHARDS", "finished_ids", "merge_shards", "read_records", "report", "safe_name"]
