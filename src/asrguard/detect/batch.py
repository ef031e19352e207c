"""Score a folder of audio into a resumable JSONL of verdicts, in this process or on Ray workers.

One line per file, appended with fsync as each unit of files ends: ``{"file": ..., "verdict": ...,
"score": ..., ...}`` (what :meth:`Detector.explain` returns), or ``{"file": ..., "error": ...,
"code": ...}`` for a file that cannot be scored. A rerun skips every file already in the output;
a second run on the same output while the first still runs is refused. Workers read the files
themselves, so on a multi-node cluster the paths must be on storage every node sees.

Example:
    >>> detect_files(load_detector(), collect_audio([Path("clips")], "input"), "verdicts.jsonl")  # doctest: +SKIP
    {'n': 40, 'scored': 40, 'adversarial': 3, 'errors': 0, 'skipped_done': 0}
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Sequence

from ..data import read_jsonl
from ..errors import AsrguardError, ConfigError
from ..execute import LocalExecutor, RunLock, Unit, append_results, move_recognizer


class DetectWorker:
    """Explains each file of a unit with one detector (loaded once per worker)."""

    def __init__(self, detector, shard: str | None = None, device: str = "cpu"):
        move_recognizer(detector.recognizer, device)
        self.detector = detector

    def __call__(self, unit: Unit) -> list[dict]:
        rows = []
        for path in unit.payload:
            try:
                rows.append({"file": path, **self.detector.explain(Path(path))})
            except AsrguardError as exc:  # a bad file is reported and the rest go on
                rows.append({"file": path, "error": str(exc), "code": exc.code})
        return rows


def detect_files(detector, files: Sequence[str | Path], out: str | Path, *, executor=None, files_per_unit: int = 4,
                 on_row: Callable[[dict], None] | None = None) -> dict:
    """Verdicts for ``files`` appended to the JSONL ``out``; returns counts for this output file.

    ``on_row`` sees each new line as it is written (progress bars). Files already in ``out``
    are not scored again.
    """
    if files_per_unit < 1:
        raise ConfigError(f"files_per_unit must be >= 1, got {files_per_unit}")
    out = Path(out)
    executor = executor or LocalExecutor()
    with RunLock(out.parent, name=f".{out.name}.lock"):
        done = {str(r.get("file")) for r in read_jsonl(out, allow_partial_tail=True)} if out.exists() else set()
        todo = list(dict.fromkeys(str(f) for f in files if str(f) not in done))
        units = [Unit(k, tuple(todo[s:s + files_per_unit]), tuple(todo[s:s + files_per_unit]))
                 for k, s in enumerate(range(0, len(todo), files_per_unit))]

        lost = executor.run(functools.partial(DetectWorker, detector), units, append_results(out, on_row),
                            shard_prefix="detect-")
    wanted = {str(f) for f in files}
    rows = [r for r in read_jsonl(out, allow_partial_tail=True) if str(r.get("file")) in wanted]
    summary = {"n": len(wanted), "scored": sum("verdict" in r for r in rows),
               "adversarial": sum(bool(r.get("adversarial")) for r in rows), "errors": sum("error" in r for r in rows),
               "skipped_done": len(done & wanted), "lost": sum(len(u.ids) for u in lost)}
    return summary


__all__ = ["DetectWorker", "detect_files"]
