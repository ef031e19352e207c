"""Compare two output folders of `asrguard reproduce`: every difference except timings and the folders' own paths.

    python docs/results/refactor/compare_runs.py BEFORE AFTER

Ignored in ``results.json``: keys named like seconds, time(s), timing, date, started, finished,
load averages and the CPU count (facts about the machine and the clock; ``settings`` is compared
whole, since its ``min_seconds`` is a setting), and the quick-run bar on wall time (its name,
value and verdict are a timing). Paths that start with the folder itself are
compared with the folder's name replaced. ``tables.md``: the lines of timings are compared with
their numbers masked. Figures: compared byte for byte. Prints Markdown; exits 1 on a difference.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from pathlib import Path

TIMING_KEY = re.compile(r"second|time|timing|date|started|finished|load_average|cpu_count", re.IGNORECASE)
#: timing text inside tables.md (both papers) and inside the wall-time bar's name
TIMING_TEXT = [
    (re.compile(r"Total time of this run: \d+ s \(features \d+ s\)"), "Total time of this run: <s> s (features <s> s)"),
    (re.compile(r"Stages took [\d.]+ min in all; this call [\d.]+ min wall, [\d.]+ min CPU "
                r"\(load average at start \[[^\]]*\], at end \[[^\]]*\]\)"), "Stages took <timing>"),
    (re.compile(r"this call alone: [\d.]+ min\): [\d.]+ — (PASS|FAIL)"), "this call alone: <min>): <min> — <verdict>"),
    (re.compile(r"this call alone: [\d.]+ min\)"), "this call alone: <min>)"),
]


def _mask(text: str) -> str:
    for pattern, replacement in TIMING_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _is_wall_time_bar(value) -> bool:
    return isinstance(value, dict) and str(value.get("name", "")).startswith("wall time")


def differences(before, after, where: str = "", folders: tuple[str, str] = ("", "")) -> list[str]:
    """Every path at which two parsed ``results.json`` differ, timings left out."""
    if isinstance(before, dict) and isinstance(after, dict):
        if _is_wall_time_bar(before) and _is_wall_time_bar(after):
            return []
        out = []
        for key in sorted(set(before) | set(after), key=str):
            if TIMING_KEY.search(str(key)) and where != "/settings":
                continue
            if key not in before or key not in after:
                out.append(f"{where}/{key}: only in {'after' if key not in before else 'before'}")
                continue
            out += differences(before[key], after[key], f"{where}/{key}", folders)
        return out
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{where}: {len(before)} items before, {len(after)} after"]
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in differences(b, a, f"{where}[{i}]", folders)]
    if isinstance(before, str) and isinstance(after, str):
        before, after = before.replace(folders[0], "OUT"), after.replace(folders[1], "OUT")
    if isinstance(before, float) and isinstance(after, float) and math.isnan(before) and math.isnan(after):
        return []
    return [] if before == after else [f"{where}: {before!r} before, {after!r} after"]


def table_differences(before: str, after: str) -> list[str]:
    """Lines of two ``tables.md`` that differ once timings are masked (the attack table's seconds too)."""
    def lines(text: str) -> list[str]:
        out, in_attacks = [], False
        for line in text.splitlines():
            in_attacks = line.startswith("## Attacks") or (in_attacks and not line.startswith("## "))
            if in_attacks and line.startswith("| ") and not line.startswith("| attack"):
                line = line.rsplit("|", 2)[0] + "| <s> |"  # the attack's wall seconds
            out.append(_mask(line))
        return out

    b, a = lines(before), lines(after)
    out = [f"line {i + 1}: {x!r} before, {y!r} after" for i, (x, y) in enumerate(zip(b, a)) if x != y]
    if len(b) != len(a):
        out.append(f"{len(b)} lines before, {len(a)} after")
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(before: Path, after: Path) -> tuple[list[str], bool]:
    """Markdown lines describing the comparison, and whether anything differs."""
    lines = [f"### `{before}` vs `{after}`", ""]
    found = False
    results = differences(json.loads((before / "results.json").read_text()),
                          json.loads((after / "results.json").read_text()), folders=(str(before), str(after)))
    lines.append(f"- results.json: {len(results)} difference(s) outside timings")
    lines += [f"  - `{d}`" for d in results]
    tables = table_differences((before / "tables.md").read_text(), (after / "tables.md").read_text())
    lines.append(f"- tables.md: {len(tables)} differing line(s) once timings are masked")
    lines += [f"  - `{d}`" for d in tables]
    pngs = sorted(p.name for p in before.glob("*.png")) + sorted(
        f"{p.name} (only after)" for p in after.glob("*.png") if not (before / p.name).exists())
    changed = [name for name in pngs if "only after" in name or not (after / name).exists()
               or _sha256(before / name) != _sha256(after / name)]
    lines.append(f"- figures: {len(pngs) - len(changed)} of {len(pngs)} PNGs identical byte for byte"
                 + (f"; differ: {', '.join(changed)}" if changed else ""))
    found = bool(results or tables or changed)
    return lines + [""], found


def main(argv: list[str]) -> int:
    before, after = Path(argv[0]), Path(argv[1])
    lines, found = compare(before, after)
    print("\n".join(lines))
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
