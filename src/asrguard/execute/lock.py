"""One writer per output folder: a lock file that names its owner.

A second run started on a folder that a live run is writing to is refused with the owner's
pid, host and start time. A lock left by a run that died (its pid is gone on this host) is
taken over, so ``kill -9`` never leaves a folder that needs hand cleaning.

Example:
    >>> with RunLock("runs/cw") as lock:   # doctest: +SKIP
    ...     lock.owner                       # shards of this run are named after it
    '3f9c1a2b'
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from ..errors import ConfigError

LOCK_NAME = ".asrguard.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """An exclusive lock on ``folder`` (the file ``folder/.asrguard.lock``), held while a run writes."""

    def __init__(self, folder: str | os.PathLike, name: str = LOCK_NAME):
        self.path = Path(folder) / name
        self.owner = uuid.uuid4().hex[:8]
        self.held = False

    def _claim(self) -> bool:
        document = {"owner": self.owner, "pid": os.getpid(), "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            if self._claim():
                self.held = True
                return self
            try:
                holder = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}  # a lock being written this instant, or a torn one: treat as held
            same_host = holder.get("host") == socket.gethostname()
            if same_host and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                self.path.unlink(missing_ok=True)  # its owner died: take it over
                continue
            raise ConfigError(
                f"{self.path.parent}: another run is writing here (pid {holder.get('pid')} on "
                f"{holder.get('host')}, started {holder.get('started')}); wait for it to finish, or delete "
                f"{self.path} if that run is gone")
        raise ConfigError(f"{self.path}: could not take the lock")

    def release(self) -> None:
        if self.held:
            try:
                if json.loads(self.path.read_text()).get("owner") == self.owner:
                    self.path.unlink()
            except (OSError, json.JSONDecodeError):
                pass
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK_NAME", "RunLock"]
