"""Which files count as images when a directory or glob is given (CLI inputs, calibration).

Only a first sieve: whether a file is accepted is decided by its content
(``formats.read_header``), whatever its name, also for files named explicitly.
"""

from __future__ import annotations

from pathlib import Path

# The formats the decoder accepts (formats.ALLOWED); Netpbm and others are refused by content.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
})  # fmt: skip


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def images_in(directory: str | Path) -> list[Path]:
    """Image files under ``directory``, recursively, sorted."""
    return sorted(p for p in Path(directory).rglob("*") if is_image_name(p) and p.is_file())
