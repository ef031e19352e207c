"""Options several commands share: where their units of work run (see docs/scale-out.md)."""

from __future__ import annotations

from typing import Optional

import typer

# The import inside executor_from keeps `asrguard --help` fast: the executors import torch.

EXECUTOR = typer.Option("local", help="Where units of work run: local (this process) or ray (pip install -e "
                                      "'.[ray]'; see docs/scale-out.md). The results are the same.")
WORKERS = typer.Option(2, help="ray: workers (actors); each loads the model once.")
ADDRESS: Optional[str] = typer.Option(None, help="ray: a running cluster ('auto' or ray://HOST:10001); default: "
                                                 "start a local one.")
DEVICE = typer.Option("cpu", help="cpu | cuda: where each worker runs the recogniser.")
GPUS_PER_WORKER = typer.Option(0.0, "--gpus-per-worker", help="ray: GPUs per worker (fractions share a GPU; "
                                                                "cuda defaults to 1).")


def executor_from(executor: str, workers: int, address: Optional[str], device: str, gpus_per_worker: float):
    from ..execute import make_executor

    return make_executor(executor, workers=workers, address=address, device=device, gpus_per_worker=gpus_per_worker)


__all__ = ["ADDRESS", "DEVICE", "EXECUTOR", "GPUS_PER_WORKER", "WORKERS", "executor_from"]
