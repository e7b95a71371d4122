"""Which files count as images when a directory or glob is given (CLI inputs, calibration)."""

from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
    ".ppm", ".pgm", ".pbm", ".pnm",
})  # fmt: skip


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def images_in(directory: str | Path) -> list[Path]:
    """Image files under ``directory``, recursively, sorted."""
    return sorted(p for p in Path(directory).rglob("*") if is_image_name(p) and p.is_file())
