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


def _per_channel(a, channels: int) -> bool:
    """Whether constant ``a`` multiplies or shifts an NCHW tensor per channel (or uniformly):
    a scalar, or shaped (1, C, 1, 1) / (C, 1, 1). A (C,) vector would broadcast along W."""
    if a is None:
        return False
    if a.size == 1:
        return True
    return a.ndim in (3, 4) and a.shape[-3:] == (channels, 1, 1) and (a.ndim == 3 or a.shape[0] == 1)


def fold_batchnorm(proto) -> int:
    """Fold a BatchNorm that tf2onnx left as ``Conv -> Mul(scale) -> Add(shift)`` into the
    convolution's weights and bias, in place; returns how many were folded.

    tf2onnx folds BatchNorm into most convolutions but leaves it after Keras'
    DepthwiseConv2D (MobileNets, EfficientNets). Quantized as it stands, the convolution's
    output is rounded to int8, then scaled and shifted in float and rounded again; folded,
    the scale lives in the per-channel int8 weights and there is one rounding. Not an exact
    rewrite (the float products round differently, ~1e-7 relative), so it is applied only
    to the graph that is quantized, never to the FP32 file.
    """
    from onnx import numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def const(node, other: str):
        names = [i for i in node.input if i != other]
        if len(names) != 1 or names[0] not in inits:
            return None
        return numpy_helper.to_array(inits[names[0]]).astype(np.float64)

    folded, dropped = 0, []
    for conv in list(g.node):
        if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in inits:
            continue
        out = conv.output[0]
        mul = users.get(out, [])
        if len(mul) != 1 or mul[0].op_type != "Mul" or out in outputs:
            continue
        mul = mul[0]
        add = users.get(mul.output[0], [])
        if len(add) != 1 or add[0].op_type != "Add" or mul.output[0] in outputs:
            continue
        add = add[0]
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        scale, shift = const(mul, out), const(add, mul.output[0])
        if w.ndim != 4 or not (_per_channel(scale, w.shape[0]) and _per_channel(shift, w.shape[0])):
            continue
        channels = w.shape[0]
        scale, shift = np.broadcast_to(scale.reshape(-1), channels), np.broadcast_to(shift.reshape(-1), channels)
        bias = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
                if len(conv.input) > 2 and conv.input[2] else np.zeros(channels))
        w_name, b_name = f"{out}_bn_folded_weights", f"{out}_bn_folded_bias"  # the output's name is unique
        g.initializer.extend([
            numpy_helper.from_array((w * scale.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32), w_name),
            numpy_helper.from_array((bias * scale + shift).astype(np.float32), b_name)])
        conv.input[1] = w_name
        if len(conv.input) > 2:
            conv.input[2] = b_name
        else:
            conv.input.append(b_name)
        conv.output[0] = add.output[0]
        dropped += [mul, add]
        folded += 1
    for n in dropped:
        g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    return folded


_WEIGHTED = ("Conv", "MatMul", "Gemm")


def float_head(proto) -> list:
    """The nodes after the last convolution or matrix product (the Dense layer's bias, the
    softmax): they stay float. Quantized, the logits were rounded again after the bias and
    the probabilities users read were rounded to 1/255 steps (u8); kept float, the only
    rounding left there is the matrix product's output. They are a few hundred flops."""
    last = None
    for node in proto.graph.node:
        if node.op_type in _WEIGHTED:
            last = node
    if last is None:
        return []
    reached, head = set(last.output), []
    for node in proto.graph.node:  # ONNX graphs are topologically sorted
        if reached & set(node.input):
            head.append(node)
            reached |= set(node.output)
    return head


def prepare(proto) -> dict:
    """Get the graph to be quantized ready, in place: BatchNorm folded (``fold_batchnorm``),
    every node named (ONNX Runtime excludes nodes by name), the float head found
    (``float_head``). Returns what the contract records, and ``exclude``: the head's node names
    for ``onnx_to_int8``.

    Measured with benchmarks/int8_fidelity.py on three 5-class MobileNetV2s trained here
    (seeds 7, 3, 2112; 120 calibration, 140 held-out crops, minmax; mean |dp| against FP32,
    ONNX Runtime / OpenVINO): u8 0.0121/0.0103 -> 0.0025/0.0040, 0.0014/0.0008 ->
    0.0003/0.0008 and 0.0021/0.0022 -> 0.0010/0.0012; s8 0.0064/0.0073 -> 0.0043/0.0031,
    0.0021/0.0017 -> 0.0006/0.0006 and 0.0015/0.0015 -> 0.0015/0.0012. NNCF's on the same
    models: 0.0166/0.0162, 0.0009/0.0008, 0.0084/0.0086. On the tests' 32x32 digits
    MobileNetV2, s8 top-1 agreement went from 0.735 to 0.990 (mean |dp| 0.056 -> 0.0022). The
    fold does most of it; the float head alone moved mean |dp| by +0.0001 to -0.0010.
    Also measured, and not kept: quantizing only convolutions and matrix products (NNCF's
    placement) was about as faithful but ran ResNet50 u8 at 0.62x [0.54-0.73] the images/s
    on OpenVINO (its residual Adds then compute in float); a bias correction of our own
    (NNCF's fast bias correction, computed exactly per layer from the mean input) made mean
    |dp| worse in 6 of 8 cells on two of these models (0.0015 -> 0.0030 on one); and NNCF's
    own file was as far from FP32 with its fast bias correction off as on (seed 7).
    """
    folded = fold_batchnorm(proto)
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    head = float_head(proto)
    return {"batchnorm_folded": folded, "float_ops": [n.op_type for n in head], "exclude": [n.name for n in head]}


def bias_kind(activations: str) -> str:
    """How an INT8 model's biases are stored: ``float`` for TensorRT's s8 models, else ``int32``."""
    return "float" if activations == "s8" else "int32"


def onnx_to_int8(fp32_model: bytes, images: list[Path], spec: PreprocessSpec, input_name: str = "input",
                 method: str = "minmax", activations: str = "s8", progress=None,
                 exclude: list[str] | None = None) -> bytes:
    """Static INT8 quantization (QDQ, per-channel weights) calibrated on ``images``; the nodes
    named in ``exclude`` stay float (``prepare`` says which)."""
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
                    nodes_to_exclude=list(exclude or []),
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
