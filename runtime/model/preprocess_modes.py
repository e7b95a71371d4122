"""Command-line syntax for a preprocessing mode: ``caffe|tf|torch|raw|mean=R,G,B:std=R,G,B``.

Kept apart from contract.py (the stored format) because this is user text: it is parsed
strictly, rejected with a usage error (exit 2) that lists the accepted forms, and checked
for the one mistake that silently ruins accuracy (0..1 constants, below).
"""

from __future__ import annotations

import math

from ..errors import EXIT_USAGE, EdgeClassifyError
from .contract import PreprocessSpec

FORMS = ("caffe, tf, torch, raw, or mean=R,G,B:std=R,G,B (RGB order, pixel scale 0..255; "
         "one number applies to all three channels, e.g. mean=127.5:std=127.5)")


def parse_preprocess(text: str, input_size=(224, 224), resize: str = "nearest") -> PreprocessSpec:
    """``caffe``/``tf``/``torch`` (Keras ``preprocess_input`` modes), ``raw`` (pixels 0..255,
    RGB: the model normalises) or ``mean=R,G,B:std=R,G,B`` -> a :class:`PreprocessSpec`.

    Raises ``EdgeClassifyError`` with ``exit_code=2`` on anything else. Call
    :func:`meanstd_scale_warning` on the result to catch 0..1 constants.
    """
    s = str(text).strip()
    try:
        if s.lower() in ("caffe", "tf", "torch", "raw"):
            return PreprocessSpec.keras(s.lower(), input_size, resize)
        parts = dict(_key_values(s))
        return PreprocessSpec.meanstd(parts["mean"], parts["std"], input_size, resize)
    except (EdgeClassifyError, ValueError) as exc:
        why = getattr(exc, "message", None) or str(exc)
        raise EdgeClassifyError(f"invalid preprocessing {text!r}: {why}; accepted: {FORMS}",
                                exit_code=EXIT_USAGE) from None


def _key_values(s: str):
    seen = set()
    for part in s.split(":"):
        key, eq, values = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in ("mean", "std"):
            raise ValueError(f"{part.strip()!r} is not mean=... or std=...")
        if key in seen:
            raise ValueError(f"{key} is given twice")
        seen.add(key)
        nums = tuple(_number(v) for v in values.split(","))
        if len(nums) not in (1, 3):
            raise ValueError(f"{key} needs 1 or 3 numbers, not {len(nums)}")
        yield key, nums
    if seen != {"mean", "std"}:
        raise ValueError(f"{({'mean', 'std'} - seen).pop()} is missing")


def _number(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise ValueError(f"{v.strip()!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{v.strip()!r} is not a finite number")
    return x


def meanstd_scale_warning(spec: PreprocessSpec) -> str | None:
    """A warning when every meanstd constant is <= 1: they apply to pixels in 0..255, so
    torchvision-style 0..1 constants (0.485, ... / 0.229, ...) would feed the model values
    in the hundreds. Accepted (a model may really want that), but almost always a mistake."""
    if spec.mode != "meanstd" or max(spec.mean + spec.std) > 1:
        return None
    return ("mean/std values are all <= 1 but are applied to pixels in 0..255; for constants "
            "on the 0..1 scale (torchvision's) multiply them by 255, or use `torch` "
            "(x/255, then ImageNet mean/std)")
