"""FP32 ONNX -> static INT8 (QDQ), calibrated on real images through the runtime's own
preprocessing, and the fidelity of the result against FP32 on held-out images.

QDQ (QuantizeLinear/DequantizeLinear pairs around float ops) is the format both ONNX
Runtime and TensorRT consume, so one INT8 file serves CPU boxes and Jetsons. Weights are
per-channel symmetric int8; activations are int8 (``s8``, symmetric: what TensorRT
requires) or uint8 (``u8``). An ``s8`` model keeps its biases in float (``bias_kind``):
TensorRT's ONNX parser rejects ``DequantizeLinear`` on the int32 biases ONNX Runtime's
quantizer writes by default (NVIDIA's own tooling quantizes with ``QuantizeBias: False``).
ONNX Runtime still fuses such a Conv into ``QLinearConv`` on the CPU (measured with ORT
1.32, six 3x3 convolutions at 112x112: 15.05 ms with int32 biases, 14.99 ms without).
"""

from __future__ import annotations

import glob
import logging
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_classify.runtime.apps.shell import Progress
from edge_classify.runtime.errors import EXIT_USAGE, EdgeClassifyError
from edge_classify.runtime.images import preprocess
from edge_classify.runtime.images.files import images_in, is_image_name
from edge_classify.runtime.model.contract import PreprocessSpec

from . import partials

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_MAX_IMAGES = 200  # calibration statistics settle long before this on ResNets
MIN_IMAGES = 8


@dataclass(frozen=True)
class CalibrationSet:
    calibrate: list[Path]
    holdout: list[Path]
    found: int


def find_images(spec: str) -> list[Path]:
    """A directory (recursive) or a glob pattern -> sorted image files."""
    if os.path.isdir(spec):
        return images_in(spec)
    return sorted(Path(p) for p in glob.glob(spec, recursive=True) if is_image_name(p))


def split(spec: str, max_images: int = DEFAULT_MAX_IMAGES, holdout_fraction: float = 0.2, seed: int = 0) -> CalibrationSet:
    """Sample at most ``max_images`` (seeded), and hold ``holdout_fraction`` of them out.

    Held-out images never calibrate; fidelity is measured on them only.
    """
    files = find_images(spec)
    if len(files) < MIN_IMAGES:
        raise EdgeClassifyError(
            f"--calib {spec}: found {len(files)} image(s), need at least {MIN_IMAGES}",
            hint="point --calib at a folder or glob of real photos like the ones you will classify",
            exit_code=EXIT_USAGE,
        )
    rng = random.Random(seed)
    chosen = rng.sample(files, min(max_images, len(files)))
    n_hold = max(2, int(round(len(chosen) * holdout_fraction)))
    return CalibrationSet(sorted(chosen[n_hold:]), sorted(chosen[:n_hold]), len(files))


def bias_kind(activations: str) -> str:
    """How an INT8 model's biases are stored: ``float`` for TensorRT's s8 models, else ``int32``."""
    return "float" if activations == "s8" else "int32"


def onnx_to_int8(fp32_model: bytes, images: list[Path], spec: PreprocessSpec, input_name: str = "input",
                 method: str = "minmax", activations: str = "s8", progress=None) -> bytes:
    """Static INT8 quantization (QDQ, per-channel weights) calibrated on ``images``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in METHODS:
        raise EdgeClassifyError(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})", exit_code=EXIT_USAGE)
    bar = progress or Progress("export-model", enabled=False)  # apps/shell.py: a bar under the stage
    bar.count(len(images), f"calibrating ({method})")

    class Reader(CalibrationDataReader):
        # One image at a time through the runtime's preprocessing: the calibration
        # statistics see exactly the tensors the runtime will feed.
        def __init__(self):
            self._it = iter(images)

        def get_next(self):
            path = next(self._it, None)
            if path is None:
                return None
            bar.step()
            return {input_name: preprocess.preprocess([path], spec)}

    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    act = QuantType.QInt8 if activations == "s8" else QuantType.QUInt8
    # quantize_static logs advice on the root logger ("consider pre-processing"): the
    # graph tf2onnx writes is already folded, so keep the export output readable.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # PID in the name: a later export removes it if this process is killed (partials.py).
        with tempfile.TemporaryDirectory(prefix=partials.int8_dir_prefix()) as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(fp32_model)
            # quantize_static keeps its own ~100 MB augmented model in an ort.quant.* folder
            # of the temp dir, which a kill -9 left there too (measured: 98 MB beside our
            # 98 MB); nested in our folder, the sweep removes both. tempfile.tempdir is
            # process-wide, so this holds only while quantize_static runs.
            saved, tempfile.tempdir = tempfile.tempdir, tmp
            try:
                quantize_static(
                    str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=act, weight_type=QuantType.QInt8, calibrate_method=calib,
                    extra_options={"ActivationSymmetric": activations == "s8", "WeightSymmetric": True,
                                   "QuantizeBias": bias_kind(activations) == "int32"},
                )
            finally:
                tempfile.tempdir = saved
            return dst.read_bytes()
    finally:
        root.setLevel(level)


def fidelity(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """How closely a reduced-precision model follows FP32 on the same (held-out) images."""
    from edge_classify.runtime.model.compare import compare

    return compare(reference, candidate).fidelity()
