"""Temporaries named with their writer's PID, and the one rule for when they are orphans.

A process killed with SIGKILL (or by the OOM killer) runs no cleanup, so what it was
writing stays behind. Both the optimised-graph cache and ``export-model`` put the
writer's PID in their temporaries' names, so a later run can tell a dead writer's file
from one another process is writing right now.
"""

from __future__ import annotations

import os
import time

PID_REUSE_S = 24 * 3600  # a PID-named temporary this old is stale even if its PID is in use again


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` may still be running; True whenever that cannot be told safely."""
    if pid == os.getpid():
        return True
    if pid <= 0 or os.name != "posix":  # os.kill(pid, 0) terminates the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, under another user
        return True
    return True


def orphaned(pid: int, mtime: float, now: float | None = None) -> bool:
    """Whether a temporary written by ``pid`` (last modified at ``mtime``) was abandoned."""
    return ((time.time() if now is None else now) - mtime) > PID_REUSE_S or not pid_alive(pid)
