"""The scoring stage: decoded uploads are scored one at a time on one thread.

One thread because the recogniser keeps its dropout state per instance, and because the
realisation pass already uses every core through torch; more threads would only contend.
Requests wait for it in a queue whose depth is bounded by the gate's in-flight limit.

After a burst the process hands freed memory back to the system (``malloc_trim``, glibc
only): without it the allocator's per-thread arenas keep the peak for good.

Example:
    >>> scorer = Scorer(detector, Metrics())                                   # doctest: +SKIP
    >>> result = await scorer.explain(waveform, "x.wav")                       # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .metrics import Metrics

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


class Scorer:
    """Runs ``detector.explain`` for one upload at a time, off the event loop."""

    def __init__(self, detector, metrics: Metrics):
        self.detector = detector
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="asrguard-score")
        self._lock = threading.Lock()
        self._waiting = 0
        self._last_trim = 0.0
        self._timer: threading.Timer | None = None

    @property
    def waiting(self) -> int:
        return self._waiting

    def _set_waiting(self, delta: int) -> None:
        with self._lock:
            self._waiting += delta
            self.metrics.queue_depth.set(self._waiting)

    async def explain(self, waveform, name: str) -> dict:
        self._set_waiting(+1)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, waveform, name)

    def _run(self, waveform, name: str) -> dict:
        self._set_waiting(-1)
        try:
            start = time.perf_counter()
            result = self.detector.explain(waveform, name=name)
            self.metrics.batch_size.observe(1)
            self.metrics.stage.labels("score").observe(time.perf_counter() - start)
            return result
        finally:
            if self._waiting == 0:
                self._trim_when_idle()

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
        if self._waiting == 0:
            self._last_trim = time.monotonic()
            release_memory()

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._pool.shutdown(wait=wait)


__all__ = ["Scorer", "limit_malloc_arenas", "release_memory"]
