"""Which files count as images when a directory or glob is given (CLI inputs, calibration).

Only a first sieve: whether a file is accepted is decided by its content
(``formats.read_header``), whatever its name, also for files named explicitly.
"""

from __future__ import annotations

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
