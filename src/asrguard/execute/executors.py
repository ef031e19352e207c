"""Where units of work run: in this process (``local``) or on a Ray cluster (``ray``).

A *unit* is a pure function of its inputs: the same unit gives the same result on whichever
worker runs it, in whatever order. Callers hand an executor

* ``make_worker(shard, device)``: builds a worker once per process (one Ray actor each), so
  a model loads once per worker; ``shard`` names the worker's own output file (``None`` in
  the local executor, which writes the caller's main file);
* the units, and ``on_done(unit, result)``, called in the driver as each unit finishes.

``run`` returns the units lost with a worker that died (``kill -9``, out of memory); the
caller reports them and a rerun finishes them. Ray is imported only by :class:`RayExecutor`.

Example:
    >>> executor = make_executor("local")
    >>> done = []
    >>> executor.run(lambda shard, device: (lambda unit: unit.payload * 2), [Unit(0, 21, ("a",))],
    ...              lambda unit, result: done.append(result))
    []
    >>> done
    [42]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..data.records import append_record
from ..errors import ConfigError

EXECUTORS = ("local", "ray")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Unit:
    """One unit of work: its position in the plan, what the worker needs, and the item ids it covers."""

    index: int
    payload: Any
    ids: tuple[str, ...]


def _check_device(device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    return device


def move_recognizer(recognizer, device: str) -> None:
    """Put ``recognizer`` on ``device`` (a no-op for ``"cpu"``); one that cannot move says so."""
    if device == "cpu":
        return
    move = getattr(recognizer, "to", None)
    if move is None:
        raise ConfigError(f"{type(recognizer).__name__} cannot move to {device}")
    move(device)


def threads_for(workers: int, cores: int | None = None) -> int:
    """Torch threads per worker so that ``workers`` workers do not oversubscribe the cores.

    Example:
        >>> threads_for(2, cores=2), threads_for(3, cores=16), threads_for(4, cores=2)
        (1, 5, 1)
    """
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


class LocalExecutor:
    """Runs every unit in this process, one after another."""

    name = "local"
    in_process = True

    def __init__(self, device: str = "cpu"):
        self.device = _check_device(device)
        if self.device == "cuda":
            if not torch.cuda.is_available():  # checked here; a Ray cluster's workers check on their own nodes
                raise ConfigError("--device cuda: this PyTorch build sees no CUDA device on this machine")
        self.workers = 1

    def run(self, make_worker: Callable, units: Sequence[Unit], on_done: Callable, *, shard_prefix: str = "") -> list:
        if not units:
            return []
        worker = make_worker(None, self.device)
        for unit in units:
            on_done(unit, worker(unit))
        return []


class _Actor:
    """A Ray actor around one worker: sets its threads, builds the worker once, runs units."""

    def __init__(self, make_worker: Callable, shard: str, device: str, threads: int):
        torch.set_num_threads(threads)
        self.worker = make_worker(shard, device)

    def pid(self) -> int:
        return os.getpid()

    def run(self, unit: Unit):
        return self.worker(unit)


class RayExecutor:
    """Spreads units over ``workers`` Ray actors, each handling one unit at a time.

    ``address`` joins a running cluster (``"auto"`` or ``"ray://host:10001"``); without it a
    local cluster is started in this process. ``threads`` is torch threads per worker (default:
    the machine's cores shared out, :func:`threads_for`).
    """

    name = "ray"
    in_process = False

    def __init__(self, workers: int = 2, *, address: str | None = None, device: str = "cpu",
                 gpus_per_worker: float = 0.0, threads: int | None = None):
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if gpus_per_worker < 0:
            raise ConfigError(f"gpus_per_worker must be >= 0, got {gpus_per_worker}")
        self.device = _check_device(device)
        if self.device == "cuda" and gpus_per_worker == 0:
            gpus_per_worker = 1.0
        self.workers, self.address, self.gpus_per_worker = workers, address, gpus_per_worker
        self.threads = threads or threads_for(workers)

    def _ray(self):
        try:
            import ray  # an optional extra (.[ray]), heavy to import: only for --executor ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install -e '.[ray]'") from None
        if not ray.is_initialized():
            options = dict(include_dashboard=False, logging_level="WARNING", log_to_driver=True)
            if self.address:
                ray.init(address=self.address, **options)
            else:  # a local cluster sized so that every worker gets its threads
                # Ray starts workers at nice 15; here they do all the work while the driver waits, so a
                # niced worker would lose its cores to any other job on a shared machine
                ray.init(num_cpus=max(os.cpu_count() or 1, self.workers * self.threads),
                         _system_config={"worker_niceness": 0}, **options)
        return ray

    def run(self, make_worker: Callable, units: Sequence[Unit], on_done: Callable, *, shard_prefix: str = "") -> list:
        if not units:
            return []
        ray = self._ray()
        from ray.exceptions import RayActorError, RayTaskError  # optional extra, as in _ray

        actor_class = ray.remote(_Actor).options(num_cpus=self.threads, num_gpus=self.gpus_per_worker,
                                                 max_restarts=0)
        n_workers = min(self.workers, len(units))
        actors = [actor_class.remote(make_worker, f"{shard_prefix}{k}", self.device, self.threads)
                  for k in range(n_workers)]
        try:
            ray.get([a.pid.remote() for a in actors])  # every worker built, or the reason it was not
        except RayActorError as exc:  # a worker could not build its worker: say why, once
            for actor in actors:
                ray.kill(actor)
            cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"the Ray workers could not start ({cause}); every node must run the same "
                              "asrguard version as this process (a change to the code while a run goes on "
                              "does this too)") from None
        queue, pending, idle, lost = list(units), {}, list(actors), []
        try:
            while queue or pending:
                while idle and queue:
                    actor, unit = idle.pop(0), queue.pop(0)
                    pending[actor.run.remote(unit)] = (actor, unit)
                if not pending:  # every worker died: the rest cannot run in this run
                    lost.extend(queue)
                    queue = []
                    break
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    actor, unit = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayActorError:
                        lost.append(unit)  # the worker died with this unit in flight
                        continue
                    except RayTaskError as exc:  # the unit itself failed: surface its own error
                        raise (exc.cause if isinstance(exc.cause, Exception) else exc) from None
                    idle.append(actor)
                    on_done(unit, result)
        finally:
            for actor in actors:  # also stops any unit still in flight after an error
                ray.kill(actor)
        return lost


def append_results(path, on_row: Callable | None = None) -> Callable:
    """``on_done`` for units whose results are JSON rows: each row appended to the JSONL ``path``
    (with fsync, in the driver, so one process writes the file), then shown to ``on_row``."""
    def on_done(unit: Unit, rows: list) -> None:
        for row in rows:
            append_record(path, row)
            if on_row is not None:
                on_row(row)

    return on_done


def make_executor(name: str = "local", *, workers: int = 1, address: str | None = None, device: str = "cpu",
                  gpus_per_worker: float = 0.0, threads: int | None = None):
    """An executor by name, as the CLI's ``--executor`` gives it.

    Example:
        >>> make_executor("local").name
        'local'
    """
    if name == "local":
        if address:
            raise ConfigError("--address needs --executor ray")
        return LocalExecutor(device=device)
    if name == "ray":
        return RayExecutor(workers, address=address, device=device, gpus_per_worker=gpus_per_worker,
                           threads=threads)
    raise ConfigError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "LocalExecutor", "append_results", "RayExecutor", "Unit", "make_executor", "threads_for"]
