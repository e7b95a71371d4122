"""The one exception type for user-facing errors, and the exit codes it maps to.

CLIs print ``error: <message>`` (and ``hint: <hint>``) and exit with ``exit_code``;
no traceback is shown for these. Anything else escaping is a bug: the shell
(apps/shell.py) saves its traceback to a file and the CLI exits with ``EXIT_INTERNAL``, so
a script can tell a crash from "some inputs failed".
"""

from __future__ import annotations

# Exit codes of every command line. EXIT_CODES says what each means for each command; the
# commands' --help and the README's "Exit codes" lines say the same (tests/test_docs.py).
EXIT_OK = 0
EXIT_INPUTS_FAILED = 1  # some inputs could not be classified (edge-doctor: a check failed)
EXIT_USAGE = 2  # bad command line (argparse uses 2 as well)
EXIT_MODEL = 3  # model / provider / weights problem: nothing could run
EXIT_PARITY = 4  # export-model: exported model disagrees with Keras beyond tolerance
EXIT_INTERNAL = 70  # a bug (EX_SOFTWARE in sysexits.h); the traceback is saved
EXIT_OUTPUT = 74  # edge-classify -o: the results file cannot be written (disk full, ...): --resume later
EXIT_STREAM_LOST = 75  # EX_TEMPFAIL (sysexits.h): a live source went away; running again may work
EXIT_STALLED = 75  # EX_TEMPFAIL as well: edge-classify-bulk's cluster cannot schedule the job
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # stdout closed by the reader (`| head`): 128 + SIGPIPE, as shells report it

_INTERNAL = "internal error (a bug: the message says where the traceback was saved)"
EXIT_CODES = {
    "export-model": {EXIT_OK: "written", EXIT_USAGE: "usage (incl. labels that do not fit the model)",
                     EXIT_MODEL: "weights or model error (incl. missing custom code)",
                     EXIT_PARITY: "parity or agreement check failed (nothing written)", EXIT_INTERNAL: _INTERNAL,
                     EXIT_INTERRUPTED: "interrupted (nothing partial is left at the output path)",
                     EXIT_BROKEN_PIPE: "stdout was closed by its reader"},
    "edge-classify": {EXIT_OK: "all classified",
                      EXIT_INPUTS_FAILED: "some inputs failed (or a stream was lost while others went on)",
                      EXIT_USAGE: "usage",
                      EXIT_MODEL: "model or provider error", EXIT_INTERNAL: _INTERNAL,
                      EXIT_OUTPUT: "cannot write --output (the rows so far are kept: --resume later)",
                      EXIT_STREAM_LOST: "every live stream was lost (--stop-on-loss: one)",
                      EXIT_INTERRUPTED: "interrupted",
                      EXIT_BROKEN_PIPE: "stdout was closed by its reader"},
    "edge-classify-bulk": {EXIT_OK: "all classified", EXIT_INPUTS_FAILED: "some images failed (their rows say why)",
                           EXIT_USAGE: "usage", EXIT_MODEL: "model or engine error", EXIT_INTERNAL: _INTERNAL,
                           EXIT_STALLED: "stalled (no results while the cluster cannot schedule the job) or the "
                                         "cluster failed (finished parts are kept: run again to resume)",
                           EXIT_INTERRUPTED: "interrupted (finished parts are kept: run again to resume)",
                           EXIT_BROKEN_PIPE: "stdout was closed by its reader"},
    "edge-serve": {EXIT_OK: "stopped by SIGTERM after answering the requests in flight", EXIT_USAGE: "usage",
                   EXIT_MODEL: "a model could not be loaded (the server stops)", EXIT_INTERNAL: _INTERNAL,
                   EXIT_INTERRUPTED: "interrupted (Ctrl-C; requests in flight were answered)",
                   EXIT_BROKEN_PIPE: "stdout was closed by its reader"},
    "edge-doctor": {EXIT_OK: "nothing failed (warnings and notes do not fail)",
                    EXIT_INPUTS_FAILED: "something failed (each failure has a fix: line)", EXIT_USAGE: "usage",
                    EXIT_INTERNAL: _INTERNAL,
                    EXIT_INTERRUPTED: "interrupted", EXIT_BROKEN_PIPE: "stdout was closed by its reader"},
}


def exit_codes_help(command: str) -> str:
    """The ``exit codes:`` paragraph of a command's --help, from ``EXIT_CODES``."""
    import textwrap

    text = ", ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES[command].items())
    return textwrap.fill("exit codes: " + text, width=100, subsequent_indent="            ")


class EdgeClassifyError(Exception):
    """An error the user can act on: ``message`` says what, ``hint`` says what to do."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_MODEL):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for error lines."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class InputError(EdgeClassifyError):
    """One input image could not be read or decoded; the others can still be classified."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=EXIT_INPUTS_FAILED)
