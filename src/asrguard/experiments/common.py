"""What the paper reproductions share: JSON outputs written atomically, NaN-free results, progress bars.

Example:
    >>> without_nan({"auroc": float("nan"), "ci": (0.5, float("inf")), "n": 3})
    {'auroc': None, 'ci': [0.5, None], 'n': 3}
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..fileio import atomic_write_text


def plain_json_value(value):
    """A numpy scalar or array as the plain Python value ``json`` can write (the ``default=`` hook).

    Example:
        >>> plain_json_value(np.float32(0.5)), plain_json_value(np.arange(2))
        (0.5, [0, 1])
    """
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def write_json(path: str | os.PathLike, data, *, allow_nan: bool = False, end: str = "\n") -> Path:
    """Write ``data`` as JSON indented by one, followed by ``end``, atomically.

    Example:
        >>> import tempfile
        >>> path = write_json(Path(tempfile.mkdtemp()) / "results.json", {"auroc": np.float64(0.9)})
        >>> print(path.read_text(), end="")
        {
         "auroc": 0.9
        }
    """
    text = json.dumps(data, indent=1, default=plain_json_value, allow_nan=allow_nan)
    return atomic_write_text(path, text + end)


def without_nan(value):
    """``value`` with every NaN or infinity replaced by ``None``, recursively (strict JSON has neither).

    Tuples become lists, as JSON would write them.

    Example:
        >>> without_nan([1.0, float("-inf"), {"x": np.float64("nan")}])
        [1.0, None, {'x': None}]
    """
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


class ProgressBars:
    """rich progress bars for the stages of a run, or nothing when disabled.

    ``task`` returns a function that advances its bar by ``n`` (default 1). Where the console is
    not a terminal (a log file, CI), rich would show nothing until the end, so each task prints
    a plain ``description: done/total`` line at most every ``every_s`` seconds, and at its end.

    Example:
        >>> with ProgressBars(enabled=False) as bars:
        ...     tick = bars.task("features", total=3)
        ...     tick(); tick(2)
    """

    def __init__(self, enabled: bool = True, *, stderr: bool = False, every_s: float = 10.0):
        self.enabled, self.stderr, self.every_s, self.progress = enabled, stderr, every_s, None
        self.plain = False

    def __enter__(self):
        if self.enabled:
            # console=None is rich's own console on stdout
            console = Console(stderr=True) if self.stderr else Console()
            self.plain = not console.is_terminal
            if not self.plain:
                self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                         TimeElapsedColumn(), console=console)
                self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False

    def _plain_task(self, description: str, total: int) -> Callable[..., None]:
        state = {"done": 0, "last": time.monotonic()}
        stream = sys.stderr if self.stderr else sys.stdout

        def tick(n: int = 1) -> None:
            state["done"] += n
            now = time.monotonic()
            if state["done"] >= total or now - state["last"] >= self.every_s:
                state["last"] = now
                print(f"{description}: {state['done']}/{total}", file=stream, flush=True)

        return tick

    def task(self, description: str, total: int) -> Callable[..., None]:
        if self.plain:
            return self._plain_task(description, total)
        if self.progress is None:
            return lambda n=1: None
        task = self.progress.add_task(description, total=total)
        return lambda n=1: self.progress.advance(task, n)


__all__ = ["ProgressBars", "plain_json_value", "without_nan", "write_json"]
