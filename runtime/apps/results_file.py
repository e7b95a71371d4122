"""A JSON Lines results file that a killed run can continue: nothing lost, nothing twice.

Each result is one whole line, written with a single ``write`` to a descriptor opened
with ``O_APPEND``, as soon as its image is classified. After ``kill -9`` the file holds
complete lines and at most one partial last line. ``--resume`` cuts that partial line,
reads which inputs already have a row *made by the same model* (rows carry the model's
sha256), and the run classifies only the others. A failed image's row (with its error)
is a result too: it is not retried.

Inputs are matched by their absolute path (rows keep the path as given, so resume from
the same directory; ``imgs/a.jpg`` and ``$PWD/imgs/a.jpg`` are the same input), by its
exact bytes when the name is not UTF-8 (``path_base64``).
"""

from __future__ import annotations

import base64
import json
import os

from ..errors import EXIT_OUTPUT, EXIT_USAGE, EdgeClassifyError


def input_key(path_bytes: bytes) -> bytes:
    return os.path.abspath(path_bytes)


def row_key(row: dict) -> bytes | None:
    if "path_base64" in row:
        try:
            return input_key(base64.b64decode(row["path_base64"], validate=True))
        except ValueError:
            return None
    path = row.get("path")
    return input_key(path.encode("utf-8")) if isinstance(path, str) else None


class ResultsFile:
    def __init__(self, path: str | os.PathLike, model_sha256: str, resume: bool):
        self.path = os.fspath(path)
        self.model_sha256 = model_sha256
        self.done: set[bytes] = set()
        self.other_model_rows = 0
        self.unreadable_lines = 0
        self.cut_partial_line = False
        exists = os.path.exists(self.path)
        if exists and not os.path.isfile(self.path):
            raise EdgeClassifyError(f"--output {self.path} is not a regular file", exit_code=EXIT_USAGE)
        if exists and os.path.getsize(self.path) and not resume:
            raise EdgeClassifyError(
                f"--output {self.path} already holds results",
                hint="pass --resume to continue that run (inputs already in it are skipped), or choose another file",
                exit_code=EXIT_USAGE,
            )
        if exists and resume:
            self._scan()
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise EdgeClassifyError(f"cannot write --output {self.path}: {exc.strerror or exc}",
                                    exit_code=EXIT_USAGE) from None

    def _scan(self) -> None:
        size = os.path.getsize(self.path)
        if size == 0:
            return
        keep = 0  # bytes up to the end of the last complete line
        rows = 0
        partial = b""
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    partial = line  # what a killed run left behind, if this is a results file
                    break
                keep += len(line)
                try:
                    row = json.loads(line)
                except ValueError:
                    self.unreadable_lines += 1
                    continue
                key = row_key(row) if isinstance(row, dict) else None
                if key is None:
                    self.unreadable_lines += 1
                    continue
                rows += 1
                if row.get("model_sha256") == self.model_sha256:
                    self.done.add(key)
                else:
                    self.other_model_rows += 1
        if not rows and (self.unreadable_lines or not partial.startswith(b'{"path"')):
            raise EdgeClassifyError(f"--output {self.path} is not an edge-classify results file; not touching it",
                                    hint="choose another --output file", exit_code=EXIT_USAGE)
        if keep < size:
            os.truncate(self.path, keep)
            self.cut_partial_line = True

    def pending(self, inputs: list[str]) -> tuple[list[str], int]:
        """(inputs without a row yet, each once; how many were skipped)."""
        seen, todo = set(self.done), []
        for name in inputs:
            key = input_key(os.fsencode(name))
            if key not in seen:
                seen.add(key)
                todo.append(name)
        return todo, len(inputs) - len(todo)

    def write(self, row: dict) -> None:
        data = (json.dumps(row) + "\n").encode("utf-8")
        start = None
        try:
            start = os.lseek(self.fd, 0, os.SEEK_END)
            while data:
                data = data[os.write(self.fd, data):]
        except OSError as exc:
            if start is not None:  # a disk that filled mid-row: leave only whole rows behind
                try:
                    os.ftruncate(self.fd, start)
                except OSError:
                    pass
            raise EdgeClassifyError(
                f"cannot write to --output {self.path}: {exc.strerror or exc}",
                hint="free some space, then rerun with --resume: the rows written so far are kept",
                exit_code=EXIT_OUTPUT) from None

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1
