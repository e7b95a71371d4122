"""The one exception type for user-facing errors, and the exit codes it maps to.

CLIs print ``error: <message>`` (and ``hint: <hint>``) and exit with ``exit_code``;
no traceback is shown for these. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

# Exit codes, shared by both CLIs and documented in the README.
EXIT_OK = 0
EXIT_INPUTS_FAILED = 1  # edge-classify: some inputs could not be classified
EXIT_USAGE = 2  # bad command line (argparse uses 2 as well)
EXIT_MODEL = 3  # model / provider / weights problem: nothing could run
EXIT_PARITY = 4  # export-model: exported model disagrees with Keras beyond tolerance
EXIT_INTERRUPTED = 130


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
