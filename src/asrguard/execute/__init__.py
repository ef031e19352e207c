"""Running units of work in this process or on a Ray cluster, and one writer per output folder.

See :mod:`asrguard.execute.executors` and :mod:`asrguard.execute.lock`.
"""

from .executors import (EXECUTORS, LocalExecutor, RayExecutor, Unit, append_results, make_executor,
                        move_recognizer, threads_for)
from .lock import RunLock

__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "RunLock", "Unit", "append_results", "make_executor",
           "move_recognizer", "threads_for"]
