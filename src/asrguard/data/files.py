"""Audio files named on a command line: files, folders, or attack-run folders."""

from __future__ import annotations

from pathlib import Path
from typing import List

from ..errors import DataError
from .corpora import is_audio_file
from .records import read_jsonl


def collect_audio(paths: List[Path], what: str) -> list[Path]:
    """Audio files named by ``paths``: files, folders (searched recursively) or attack-run
    folders (their *successful* adversarial examples, read from ``manifest.jsonl``)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir() and (path / "manifest.jsonl").is_file():
            found += [path / r["audio"] for r in read_jsonl(path / "manifest.jsonl", allow_partial_tail=True)
                      if r.get("success") and r.get("audio")]
        elif path.is_dir():
            found += sorted(p for p in path.rglob("*") if is_audio_file(p))
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder ({what})")
    if not found:
        raise DataError(f"no {what} audio found in {', '.join(map(str, paths))}")
    return found


__all__ = ["collect_audio"]
