"""Fast decode of big JPEGs: libjpeg-turbo's DCT-domain scaling, chosen on evidence.

A camera photo is far bigger than a classifier's input: a 4000x3000 JPEG becomes 224x224.
libjpeg-turbo can decode it at 1/2, 1/4 or 1/8 of its size in the DCT domain (OpenCV's
``IMREAD_REDUCED_COLOR_2/4/8``): the Huffman decode stays, the inverse DCT, upsampling and
colour conversion shrink. The issue that asked for this measured a 4000x3000 q90 JPEG at
88 ms full, 58 / 49 / 38 ms at 1/2, 1/4, 1/8 (a 2-core Xeon), against ~8 ms of INT8 ResNet50
inference per image.

It changes pixels: a reduced decode averages each 2x2..8x8 block where the exact path
(Keras' ``load_img``) samples single pixels of the full image, so it is never silent:

* ``exact`` (the library's default): every image decoded as Keras does, bit for bit.
* ``fast``: a JPEG is decoded at the largest scale (1/2, 1/4, 1/8) that keeps it at least
  the model's input size in both dimensions (``MARGIN`` times it; EXIF orientations 5-8,
  when applied, swap width and height), then the contract's resize. PNG, WebP and every
  other format, and JPEGs under twice the input size, decode exactly.
* ``auto`` (the command lines' default): ``fast`` only when the model carries evidence,
  a ``parity["fast_decode"]`` figure measured at export (export/fast_decode.py) that clears
  ``BAR``; else ``exact``.

Each row says which decode ran (``decode``: ``exact`` or ``fast 1/4``).
"""

from __future__ import annotations

import math

MODES = ("exact", "fast", "auto")
SCALES = (8, 4, 2)  # what libjpeg's DCT scaling offers below 1 and OpenCV exposes, largest first
# The reduced image must be at least MARGIN x the input size in both dimensions. 1.0: the
# resize after it never upsamples, so no detail the model could see at its input size is
# lost; the fidelity figure is measured with this margin and names it (``margin``).
MARGIN = 1.0
# What ``auto`` needs from the export's figure. Top-1 agreement 0.99 is the bar
# ``--precision auto`` holds FP16, INT8 and BF16 to (export/precision.py,
# DEFAULT_AGREEMENT_BAR) and issue 21's target for fast decode. Mean |dp| 0.01: INT8 files
# that clear that agreement bar moved probabilities by 0.008-0.011 mean |dp| on the 5-class
# MobileNetV2 trained here (issue 21), so a faster decode may move them no more than the
# quantization the product already accepts. At least 100 comparisons (photo x size): with
# fewer, one disagreement is already below 0.99, so 100% of a handful says little. The
# digits model trained in tests scored 100% on its export's 24 comparisons and 98.7% on 600.
BAR = {"top1_agreement": 0.99, "mean_abs_diff": 0.01, "images": 100}


def scale_for(width: int, height: int, target: tuple[int, int], orientation: int = 1,
              margin: float = MARGIN) -> int:
    """The largest of ``SCALES`` whose decode of a ``width`` x ``height`` JPEG (as stored)
    is still at least ``margin`` x ``target`` (height, width) once oriented; 1 for none.

    libjpeg rounds a scaled dimension up (``ceil(width / scale)``); orientations 5-8 (when
    the decoder applies them) transpose the picture, so its width becomes the height.
    """
    th, tw = (math.ceil(v * margin) for v in target)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    for s in SCALES:
        if -(-width // s) >= tw and -(-height // s) >= th:
            return s
    return 1


def label(scale: int) -> str:
    """What a row's ``decode`` says: ``exact`` or ``fast 1/N``."""
    return "exact" if scale == 1 else f"fast 1/{scale}"


def passes(figure: dict | None) -> tuple[bool, str]:
    """Whether an export's figure is evidence for ``auto``, and the sentence that says why."""
    if not figure:
        return False, "no fast-decode fidelity figure in the model (export-model measures one)"
    try:
        agree, mean, n = float(figure["top1_agreement"]), float(figure["mean_abs_diff"]), int(figure["images"])
    except (KeyError, TypeError, ValueError):
        return False, "the model's fast-decode figure is malformed"
    if figure.get("margin") != MARGIN:
        return False, f"the model's fast-decode figure was measured with margin {figure.get('margin')}, not {MARGIN}"
    said = (f"fast decode's top-1 agreement with exact decode {agree:.3f}, mean |dp| {mean:.2g} "
            f"over {n} camera-size photos, measured at export")
    if n < BAR["images"]:
        return False, f"{said}: fewer than {BAR['images']} photos"
    if agree < BAR["top1_agreement"] or mean > BAR["mean_abs_diff"]:
        return False, f"{said}: below the bar (top-1 >= {BAR['top1_agreement']}, mean |dp| <= {BAR['mean_abs_diff']})"
    return True, said


def choose(requested: str, figure: dict | None) -> tuple[str, str]:
    """(``exact`` | ``fast``, why) for a model whose contract holds ``figure``
    (``parity["fast_decode"]``, or None)."""
    if requested not in MODES:
        raise ValueError(f"decode mode {requested!r} is not one of {MODES}")
    if requested != "auto":
        return requested, f"--decode {requested}"
    ok, why = passes(figure)
    return ("fast" if ok else "exact"), why
