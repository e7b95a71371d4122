"""Which files count as images when a directory or glob is given (CLI inputs, calibration),
and the command lines' inputs expanded into files.

Only a first sieve: whether a file is accepted is decided by its content
(``formats.read_header``), whatever its name, also for files named explicitly.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Callable

# The formats the decoder accepts (formats.ALLOWED); Netpbm and others are refused by content.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
})  # fmt: skip


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def images_in(directory: str | Path, on_error: Callable[[OSError], None] | None = None) -> list[Path]:
    """Image files under ``directory``, recursively, sorted; symbolic links to folders are
    not followed (no loops). A folder that cannot be read, or that vanishes during the walk,
    is reported to ``on_error`` (when given) and skipped."""
    found = []
    for root, dirs, files in os.walk(directory, onerror=on_error, followlinks=False):
        dirs.sort()
        for name in files:
            p = Path(root) / name
            if is_image_name(p):
                try:
                    if p.is_file():
                        found.append(p)
                except OSError as exc:
                    if on_error:
                        on_error(exc)
    return sorted(found)


def expand_inputs(args: list[str], warn: Callable[[str], None] | None = None) -> list[str]:
    """Files as given; directories -> their image files (recursive, sorted); globs expanded.

    A name that matches nothing is kept, so that it is reported as missing. ``warn`` hears
    of unreadable folders and empty ones.
    """
    out: list[str] = []
    warn = warn or (lambda message: None)

    def unreadable(exc: OSError) -> None:
        warn(f"skipped {exc.filename}: {exc.strerror or exc}")

    for arg in args:
        if os.path.isdir(arg):
            found = [str(p) for p in images_in(arg, on_error=unreadable)]
            out.extend(found)
            if not found:
                warn(f"no images in directory {arg}")
        elif not os.path.lexists(arg) and glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            out.extend(matches if matches else [arg])
        else:
            out.append(arg)
    return out
