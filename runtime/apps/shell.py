"""The one shell every command line runs in: errors, exit codes and progress, said the same way.

``run(prog, body)`` calls a command's body and maps what escapes it (errors.py holds the
codes): an ``EdgeClassifyError`` -> ``prog: error: message`` and ``hint:``, its own exit
code; Ctrl-C -> 130; a closed stdout (``| head``) -> 141, quietly; anything else is a bug ->
a short message, the traceback saved to a file, 70. ``Progress`` is the one reporter of
long work on stderr: numbered stages (``[2/5] convert to ONNX ...``, export-model) and
counted items with their rate (``edge-classify -o``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable

from ..errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EdgeClassifyError, exit_codes_help, report_internal_error

__all__ = ["run", "Progress", "exit_codes_help"]


def run(prog: str, body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """``body()``'s exit code, or the one for what escaped it. ``interrupted``: what Ctrl-C says
    (e.g. what was kept)."""
    if sys.stderr is None:  # started with stderr closed (2>&-): print() would fall back to stdout
        sys.stderr = open(os.devnull, "w")
    try:
        return body()
    except EdgeClassifyError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # a bug: short message, traceback saved, its own exit code
        return report_internal_error(prog, exc, sys.stderr)


class Progress:
    """Long work, reported on stderr (``enabled=False``: silent, timings still kept).

    Stages: ``with progress.stage(name, detail):`` prints ``[i/n] name: detail ...`` and,
    when the stage succeeds, ``done in 1.2 s``; ``say(line)`` prints a detail line under the
    stage. Counted items: ``count(total)``, then ``step(failed)`` per item (a line every
    ``10 s``, rewritten in place every 0.5 s on a terminal) and ``finish(...)``.
    """

    def __init__(self, prog: str, stages: list[str] | None = None, enabled: bool = True, stream=None):
        self.prog, self.stages, self.enabled = prog, list(stages or []), enabled
        self.stream = stream or sys.stderr
        self.timings: dict[str, float] = {}
        self.tty = enabled and self.stream.isatty()
        self.total = self.n = 0
        self.t0 = self.last = time.monotonic()

    # --- stages ----------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str, detail: str = ""):
        if self.enabled:
            i = self.stages.index(name) + 1
            self._print(f"[{i}/{len(self.stages)}] {name}" + (f": {detail}" if detail else "") + " ...")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 2)
        if self.enabled:  # only reached when the stage succeeded
            self._print(f"      done in {self.timings[name]:.1f} s")

    def say(self, line: str) -> None:
        if self.enabled:
            self._print(f"      {line}")

    # --- counted items ---------------------------------------------------------------
    def count(self, total: int) -> None:
        self.total, self.n = total, 0
        self.t0 = self.last = time.monotonic()

    def step(self, failed: int) -> None:
        self.n += 1
        now = time.monotonic()
        if not self.enabled or now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        rate = self.n / max(now - self.t0, 1e-9)
        line = f"{self.prog}: {self.n}/{self.total} images, {failed} failed, {rate:.1f} img/s"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=self.stream, flush=True)

    def finish(self, done: int, failed: int, skipped: int) -> None:
        if not self.enabled:
            return
        if self.tty:
            print(file=self.stream)
        secs = time.monotonic() - self.t0
        self._print(f"{self.prog}: classified {done - failed}, failed {failed}, skipped {skipped} (already done) "
                    f"in {secs:.1f} s ({done / max(secs, 1e-9):.1f} img/s)")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
