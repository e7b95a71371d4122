"""Where `export-model` writes by default and `edge-classify` reads by default.

``EDGE_CLASSIFY_HOME`` overrides the folder (default ``$XDG_CACHE_HOME/edge-classify``,
i.e. ``~/.cache/edge-classify``), so ``export-model && edge-classify img.jpg`` works
from any directory.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_NAME = "model.onnx"


def home() -> Path:
    env = os.environ.get("EDGE_CLASSIFY_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edge-classify"


def default_model_path() -> Path:
    return home() / DEFAULT_MODEL_NAME


def variant_path(fp32_path: str | os.PathLike, precision: str) -> Path:
    """``m.onnx`` -> ``m.fp16.onnx``: where the other precisions of one export go."""
    p = Path(fp32_path)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.name
    return p.with_name(f"{stem}.{precision}.onnx")
