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

from .. import __version__
from ..errors import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED, EdgeClassifyError, exit_codes_help, first_line

REPORT_TO = "the edge-classify issue tracker (README: Reporting bugs)"

__all__ = ["run", "Progress", "exit_codes_help", "report_internal_error"]


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


def report_internal_error(prog: str, exc: BaseException, stream) -> int:
    """Print a short message for an unexpected exception, save the traceback; return the exit code."""
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    where = "(could not be saved)"
    try:
        fd, where = tempfile.mkstemp(prefix=f"{prog}-crash-", suffix=".txt")
        with open(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"{prog} {__version__}\n{text}")
    except OSError:
        pass
    print(f"{prog}: internal error: {type(exc).__name__}: {first_line(exc)}", file=stream)
    print(f"{prog}: this is a bug in {prog} {__version__}, not a problem with your inputs; the traceback is in "
          f"{where}: please attach it to a report on {REPORT_TO}", file=stream)
    return EXIT_INTERNAL


class Progress:
    """Long work, reported on stderr (``enabled=False``: silent, timings still kept).

    Stages: ``plan(names)``, then ``with progress.stage(name, detail):`` prints ``[i/n] name:
    detail ...`` and, when the stage succeeds, ``done in 1.2 s``; ``say(line)`` prints a
    detail line under the stage. Counted items: ``count(total, label)``, then ``step()`` per
    item. With a label, a bar under the current stage (``calibrating [####....] 5/10``,
    rewritten in place on a terminal, else a line per fifth); without, a whole run's rate
    (``12/100 images, 0 failed, 3.1 img/s``: a line every 10 s, every 0.5 s in place on a
    terminal) and ``finish(...)``'s summary.
    """

    def __init__(self, prog: str, enabled: bool = True, stream=None):
        self.prog, self.enabled = prog, enabled
        self.stream = stream or sys.stderr
        self.stages: list[str] = []
        self.timings: dict[str, float] = {}
        self.tty = enabled and self.stream.isatty()
        self.total = self.n = 0
        self.label: str | None = None
        self.t0 = self.last = time.monotonic()

    def plan(self, stages: list[str]) -> None:
        self.stages = list(stages)

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
    def count(self, total: int, label: str | None = None) -> None:
        self.total, self.n, self.label = total, 0, label
        self.t0 = self.last = time.monotonic()

    def step(self, failed: int = 0) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self.label is not None:
            self._bar()
            return
        now = time.monotonic()
        if now - self.last < (0.5 if self.tty else 10.0):
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

    def _bar(self) -> None:
        if self.tty:
            done = int(30 * self.n / self.total)
            print(f"\r      {self.label} [{'#' * done}{'.' * (30 - done)}] {self.n}/{self.total}", end="",
                  file=self.stream, flush=True)
            if self.n == self.total:
                print(file=self.stream)
        elif self.n == self.total or self.n % max(1, self.total // 5) == 0:
            self._print(f"      {self.label} {self.n}/{self.total}")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
