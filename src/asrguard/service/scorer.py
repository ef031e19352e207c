"""The scoring stage: decoded uploads wait in a short queue and are scored in batches on one thread.

One thread because a recogniser keeps its dropout state per instance, and because the
realisation pass already uses every core through torch; more threads would only contend.
Batches are what make the cores pay: the realisations of several uploads run as one pass
(:meth:`~asrguard.detect.detector.Detector.explain_batch`), so the LSTMs' threads meet once
per time step for the whole batch instead of once per upload. A batch holds at most
``batch_size`` uploads for one detector and at most ``batch_seconds`` of padded audio (its
longest upload times its size; one long upload always fits alone), which bounds its memory.
When the scorer is free and uploads are still being read or decoded, the oldest queued upload
waits at most ``batch_wait`` seconds for company; with nothing else on the way it goes at once.
Every answer equals the upload's own :meth:`~asrguard.detect.detector.Detector.explain`.

After a burst the process hands freed memory back to the system (``malloc_trim``, glibc
only): without it the allocator's per-thread arenas keep the peak for good.

Example:
    >>> scorer = Scorer(Metrics(), batch_size=8, batch_wait=0.02)          # doctest: +SKIP
    >>> result = await scorer.explain(detector, waveform, "x.wav")         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import OverloadedError
from .metrics import Metrics

log = logging.getLogger(__name__)

#: Seconds between two ``malloc_trim`` calls at most (it walks the heap: cheap, not free).
TRIM_INTERVAL = 5.0


def _libc():
    try:
        path = ctypes.util.find_library("c")
        lib = ctypes.CDLL(path) if path else None
        return lib if lib is not None and hasattr(lib, "malloc_trim") else None
    except OSError:  # not glibc
        return None


_LIBC = _libc()


def release_memory() -> bool:
    """Return freed heap memory to the system (glibc ``malloc_trim``); False where unsupported."""
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas (like ``MALLOC_ARENA_MAX``); call before starting threads."""
    if _LIBC is None or not hasattr(_LIBC, "mallopt"):
        return False
    M_ARENA_MAX = -8  # from glibc's malloc.h
    return bool(_LIBC.mallopt(M_ARENA_MAX, int(n)))


@dataclass
class _Job:
    detector: object
    waveform: np.ndarray
    name: str
    queued_at: float = field(default_factory=time.perf_counter)
    future: Future = field(default_factory=Future)


def _batch_explainer(detector) -> Callable[[list, list], list[dict]]:
    """``detector.explain_batch``, or a loop over ``detector.explain`` for detectors without it."""
    if hasattr(detector, "explain_batch"):
        return lambda waveforms, names: detector.explain_batch(waveforms, names=names)
    return lambda waveforms, names: [detector.explain(w, name=n) for w, n in zip(waveforms, names)]


class Scorer:
    """Runs ``detector.explain_batch`` (or ``explain`` per upload for detectors without it) over
    queued uploads on one thread, in bounded batches.

    ``admitted`` (optional) counts the requests admitted upstream (the gate's in-flight count);
    when every one of them is already here, waiting for company is pointless and is skipped.
    """

    def __init__(self, metrics: Metrics, *, batch_size: int = 8, batch_wait: float = 0.02,
                 batch_seconds: float = 16.0, admitted: Callable[[], int] | None = None):
        self.metrics = metrics
        self.batch_size, self.batch_wait, self.batch_seconds = int(batch_size), float(batch_wait), float(batch_seconds)
        self._admitted = admitted
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._scoring = 0
        self._closed = False
        self._lock = threading.Lock()  # guards the trim timer
        self._last_trim = 0.0
        self._timer: threading.Timer | None = None
        self._thread: threading.Thread | None = None  # started by the first upload

    @property
    def waiting(self) -> int:
        """Uploads queued and not yet in a batch."""
        return len(self._queue)

    async def explain(self, detector, waveform: np.ndarray, name: str) -> dict:
        """``detector.explain(waveform, name=name)``, scored in a batch with whatever else is queued."""
        job = _Job(detector, waveform, name)
        with self._cond:
            if self._closed:
                raise OverloadedError("the server is shutting down; retry on another replica", retry_after=1)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="asrguard-score", daemon=True)
                self._thread.start()
            self._queue.append(job)
            self.metrics.queue_depth.set(len(self._queue))
            self._cond.notify()
        return await asyncio.wrap_future(job.future)  # a cancelled request cancels its queued job

    def nudge(self) -> None:
        """Say that an admitted request has left (answered, or refused while read or decoded): a
        batch waiting for it can stop waiting."""
        with self._cond:
            self._cond.notify()

    # --- the scoring thread -------------------------------------------------------
    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._score(batch)
            finally:
                with self._cond:
                    self._scoring = 0
                    idle = not self._queue
                if idle:
                    self._trim_when_idle()

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while True:
                # requests that went away while queued are dropped unscored
                self._queue = deque(job for job in self._queue if not job.future.cancelled())
                if not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                deadline = self._queue[0].queued_at + self.batch_wait
                while not self._closed and not self._plan()[1] and self._more_on_the_way():
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._take()
                self.metrics.queue_depth.set(len(self._queue))
                if batch:  # else every job taken was cancelled meanwhile: look again
                    self._scoring = len(batch)
                    return batch

    def _more_on_the_way(self) -> bool:
        if self._admitted is None:
            return True
        return self._admitted() > len(self._queue) + self._scoring

    def _plan(self) -> tuple[list[_Job], bool]:
        """The jobs the next batch would take (the oldest, then the oldest for the same detector that
        fit the bounds), and whether the batch is full (no further upload could join it)."""
        first = self._queue[0]
        budget = self.batch_seconds * first.detector.recognizer.sample_rate
        batch, longest = [], 0
        for job in self._queue:
            if job.detector is not first.detector or job.future.cancelled():
                continue
            if len(batch) == self.batch_size or (batch and (len(batch) + 1) * max(longest, len(job.waveform)) > budget):
                return batch, True
            batch.append(job)
            longest = max(longest, len(job.waveform))
        # one more upload of the current longest length would not fit: nothing else can join
        full = len(batch) == self.batch_size or (len(batch) + 1) * longest > budget
        return batch, full

    def _take(self) -> list[_Job]:
        planned, _ = self._plan()
        chosen = {id(job) for job in planned}
        self._queue = deque(job for job in self._queue if id(job) not in chosen)
        # False: the client went away between planning and now
        return [job for job in planned if job.future.set_running_or_notify_cancel()]

    def _score(self, batch: list[_Job]) -> None:
        start = time.perf_counter()
        for job in batch:
            self.metrics.stage.labels("queue").observe(start - job.queued_at)
        explain = _batch_explainer(batch[0].detector)
        try:
            results = explain([job.waveform for job in batch], [job.name for job in batch])
        except Exception as exc:  # noqa: BLE001 - handed to each request, which answers with its status
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            # one bad upload must not fail the others: score each alone, each with its own outcome
            log.warning("a batch of %d failed (%s); scoring its uploads one at a time", len(batch), exc)
            results = []
            for job in batch:
                try:
                    results.append(explain([job.waveform], [job.name])[0])
                except Exception as single:  # noqa: BLE001
                    results.append(single)
        seconds = time.perf_counter() - start
        self.metrics.batch_size.observe(len(batch))
        for job, result in zip(batch, results):
            self.metrics.stage.labels("score").observe(seconds)
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    # --- memory ----------------------------------------------------------------------
    def _trim_when_idle(self) -> None:
        """Trim now, or once the rate limit on trims allows (a burst's last request must not be missed)."""
        now = time.monotonic()
        if now - self._last_trim > TRIM_INTERVAL:
            self._last_trim = now
            release_memory()
            return
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(TRIM_INTERVAL, self._deferred_trim)
                self._timer.daemon = True
                self._timer.start()

    def _deferred_trim(self) -> None:
        with self._lock:
            self._timer = None
        if not self._queue and not self._scoring:
            self._last_trim = time.monotonic()
            release_memory()

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking uploads; the queued ones are still scored. ``wait``: until the last is done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if wait and self._thread is not None:
            self._thread.join()


__all__ = ["Scorer", "limit_malloc_arenas", "release_memory"]
