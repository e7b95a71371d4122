"""Fast decode's fidelity, measured at export: the evidence ``--decode auto`` needs.

A reduced JPEG decode (runtime/images/fast_decode.py) changes the pixels the model sees, so
the runtime uses it by default only for a model that carries a figure saying it keeps the
predictions: ``parity["fast_decode"]``. ``measure`` makes that figure the way INT8 and BF16
are measured against FP32 (``compare(...).fidelity()``: top-1 agreement, top-5 overlap,
max and mean |dp|), here the same model with fast decoding against exact decoding.

The photos are camera-size versions of the export's verification photos (and calibration
photos, when there are some: decoding is not calibrated on them): each upscaled, with sharpening and sensor-like
grain, and encoded as a JPEG (``camera_jpeg``) at three sizes, one per DCT scale, so the
figure covers 1/2, 1/4 and 1/8 (``sizes``); sizes above ``MAX_PIXELS`` are skipped (a big
input size at 1/8). The JPEGs are made and decoded one at a time, in memory. The 32x32
MobileNetV2 trained in tests (30 verification photos, 8 used: 24 pairs): 1.7 s of a 22.5 s
export on 2 busy cores.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from edge_classify.runtime.images import fast_decode
from edge_classify.runtime.images import preprocess
from edge_classify.runtime.images.preprocess import DecodeOptions
from edge_classify.runtime.model.compare import compare

MAX_PIXELS = 24_000_000  # a 24 MP camera; bigger sizes are skipped
CAMERA_SHORT_SIDE = 2448  # an 8 MP 4:3 phone photo (3264x2448): the 1/8 size when the model allows it
MAX_PHOTOS = 34  # x 3 sizes: the 100 comparisons the bar asks for (runtime/images/fast_decode.BAR)


def camera_jpeg(bgr: np.ndarray, width: int, height: int, *, quality: int = 90, grain: float = 7.0,
                seed: int = 0, progressive: bool = False, restart_rows: int = 0) -> bytes:
    """A BGR photo as a camera-size JPEG of ``width`` x ``height``: sharpened at its own size
    (detail), upscaled bilinearly, sensor-like grain of ``grain`` levels (standard deviation)
    added, encoded at ``quality``. Grain 7 at quality 85-95 makes 12 MP files of 2-4 MB, like
    phone photos (1.0 MB without it: the entropy decode that no scaling removes would be too
    cheap). ``restart_rows``: a restart marker every that many MCU rows (0: none)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = cv2.addWeighted(bgr, 1.5, cv2.GaussianBlur(bgr, (0, 0), 1.0), -0.5, 0)
    out = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if grain > 0:
        # One tile of Gaussian grain, repeated (a prime size, so no 8x8 block repeats in
        # step): 12 MP of fresh normal samples took 1.5 s here, this 0.1 s.
        tile = np.clip(rng.normal(0.0, grain, (521, 523, 3)), -3 * grain, 3 * grain)
        reps = (-(-height // 521), -(-width // 523), 1)
        cv2.add(out, np.tile(np.clip(tile, 0, None).astype(np.uint8), reps)[:height, :width], dst=out)
        cv2.subtract(out, np.tile(np.clip(-tile, 0, None).astype(np.uint8), reps)[:height, :width], dst=out)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if progressive:
        params += [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    if restart_rows:
        # OpenCV's interval counts MCUs; an MCU row of a 4:2:0 JPEG is ceil(width / 16) of them.
        params += [cv2.IMWRITE_JPEG_RST_INTERVAL, restart_rows * -(-width // 16)]
    ok, buf = cv2.imencode(".jpg", out, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {width}x{height} JPEG")
    return buf.tobytes()


def sizes(input_size: tuple[int, int], i: int) -> list[tuple[int, int]]:
    """The (width, height) of photo ``i``'s camera-size versions: one per DCT scale 2, 4, 8,
    each in that scale's range for this input size (short side between scale and 2 x scale
    times the input, spread over the photos), 4:3, every other photo portrait. The 1/8 one is
    at least an 8 MP phone photo. Sizes above ``MAX_PIXELS`` are left out."""
    t = max(input_size)
    out = []
    for s in fast_decode.SCALES[::-1]:
        short = math.ceil(s * t * (1.05 + 0.85 * ((i * 0.618) % 1.0)))
        if s == fast_decode.SCALES[0]:
            short = max(short, CAMERA_SHORT_SIDE)
        long = math.ceil(short * 4 / 3)
        if short * long <= MAX_PIXELS:
            out.append((short, long) if i % 2 else (long, short))
    return out


def measure(run, spec, photos: list[Path], seed: int = 0, max_photos: int = MAX_PHOTOS) -> dict | None:
    """``run`` (a preprocessed batch -> probabilities: ``Classifier.run``) with fast decoding
    against exact decoding, on camera-size JPEGs made from ``photos`` (at most ``max_photos``):
    the figure stored as ``parity["fast_decode"]``, or None when no size fits."""
    t0 = time.perf_counter()
    exact, fast = DecodeOptions(decode="exact"), DecodeOptions(decode="fast")
    ref, cand, scales = [], [], []
    photos = list(photos)[:max_photos]
    for i, p in enumerate(photos):
        bgr = preprocess.load(p)
        for w, h in sizes(spec.input_size, i):
            # one JPEG at a time: camera-size files add up (200 photos: ~1 GB)
            data = camera_jpeg(bgr, w, h, quality=85 + (i * 3) % 11, seed=seed + i)
            ref.append(preprocess.prepare(data, spec, exact))
            cand.append(preprocess.prepare(data, spec, fast))
            scales.append(fast_decode.scale_for(w, h, spec.input_size))
    if not ref:
        return None
    ref_p = np.concatenate([run(preprocess.normalize(np.stack(ref[i:i + 32]), spec)) for i in range(0, len(ref), 32)])
    cand_p = np.concatenate([run(preprocess.normalize(np.stack(cand[i:i + 32]), spec))
                             for i in range(0, len(cand), 32)])
    scales = np.asarray(scales)
    figure = {
        "reference": "exact decode, same model (ONNX Runtime CPU)",
        "method": "libjpeg DCT scaling (OpenCV IMREAD_REDUCED_COLOR_2/4/8), then the contract's resize",
        "margin": fast_decode.MARGIN,
        **compare(ref_p, cand_p).fidelity(),
        "scales": {fast_decode.label(int(s)): compare(ref_p[scales == s], cand_p[scales == s]).fidelity()
                   for s in sorted(set(scales.tolist()))},
        "photos": [Path(p).name for p in photos],
        "bar": dict(fast_decode.BAR),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    figure["passed"] = fast_decode.passes(figure)[0]
    return figure


def describe(figure: dict) -> str:
    per = ", ".join(f"{k}: {v['top1_agreement']:.1%} of {v['images']}" for k, v in figure["scales"].items())
    return (f"fast decode vs exact on {figure['images']} camera-size JPEGs: top-1 agreement "
            f"{figure['top1_agreement']:.1%} ({per}), mean|dp| {figure['mean_abs_diff']:.3g}, "
            f"max|dp| {figure['max_abs_diff']:.3g} [{'auto uses it' if figure['passed'] else 'below the bar: auto decodes exactly'}]")
