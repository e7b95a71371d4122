"""Temporary names that carry their writer's PID, and the sweep that clears what killed
exports left behind.

``atomic_write`` writes ``.<name>.<pid>.<random>.partial`` beside its target and INT8
quantization works in ``<tmp>/edge-int8-<pid>-<random>/``. A normal failure removes
them, but ``kill -9`` (or the OOM killer, a lost container) runs no cleanup: each such
death left ~100 MB of partial model next to the output, or ~125 MB of models in /tmp,
that nothing ever removed. With the PID in the name, a later export can tell an
orphan (its writer is gone) from a file another export is writing right now.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

from edge_classify.runtime.cache.orphans import orphaned

LEGACY_S = 3600  # entries named before PIDs were (older versions): stale after an hour

_RAND = r"[a-z0-9_]{8}"  # tempfile's random part
_PATTERNS = (
    # (regex, what the entry must be): ``pid`` absent means a pre-PID name
    (re.compile(rf"^\..+\.(?P<pid>\d+)\.{_RAND}\.partial$"), stat.S_ISREG),
    (re.compile(rf"^\..+\.onnx\.{_RAND}\.partial$"), stat.S_ISREG),
    (re.compile(rf"^edge-int8-(?P<pid>\d+)-{_RAND}$"), stat.S_ISDIR),
    (re.compile(rf"^edge-int8-{_RAND}$"), stat.S_ISDIR),
)


def partial_prefix(name: str) -> str:
    """``mkstemp`` prefix for a partial ``name`` written by this process."""
    return f".{name}.{os.getpid()}."


def int8_dir_prefix() -> str:
    """``TemporaryDirectory`` prefix for this process's INT8 work folder."""
    return f"edge-int8-{os.getpid()}-"


def sweep_stale(directory: str | os.PathLike | None = None, now: float | None = None) -> list[Path]:
    """Remove export temporaries in ``directory`` (default: the temp dir) whose writer died.

    Why: a process killed with SIGKILL runs no cleanup, so its partial model files and
    INT8 work folder stay forever unless a later export removes them; this runs at the
    start of each export (output folder and temp dir) and before each atomic write.

    Removed: entries named by our own patterns (see ``_PATTERNS``), owned by this user,
    that are a regular file (partials) or a real directory (INT8 folders), and whose
    PID no longer exists or which are older than a day (the PID may have been reused);
    pre-PID names from older versions once they are over an hour old. Symlinks are
    never followed or removed, anything else is left alone, and errors are swallowed:
    cleanup must never fail an export. Returns what was removed.
    """
    directory = Path(tempfile.gettempdir() if directory is None else directory)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        for pattern, is_kind in _PATTERNS:
            m = pattern.match(entry.name)
            if m:
                break
        else:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not is_kind(st.st_mode) or (hasattr(os, "geteuid") and st.st_uid != os.geteuid()):
                continue
            pid = m.groupdict().get("pid")
            if pid is None:
                stale = now - st.st_mtime > LEGACY_S
            else:
                stale = orphaned(int(pid), st.st_mtime, now)
            if not stale:
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(entry.path)  # fd-based on Linux: refuses symlinks, never follows them
            else:
                os.unlink(entry.path)  # removes a name, never what a symlink points at
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed
