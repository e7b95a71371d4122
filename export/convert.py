"""Format conversions, one function each (source_to_target), and the atomic writer.

``FORMATS`` lists what export produces; later precisions slot in as rows.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

from edge_classify.runtime.contract import ModelContract

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
DEFAULT_OPSET = 17


def keras_to_onnx(model, input_size=(224, 224), static_batch: int | None = None, opset: int = DEFAULT_OPSET):
    """Keras model (NHWC float32 in, softmax out) -> ONNX ModelProto via tf2onnx.

    Converted from a ``tf.function`` with an explicit input signature, which names the
    tensors (``input`` / ``probabilities``) and sets the batch dimension: dynamic, or
    fixed for TensorRT when ``static_batch`` is given.
    """
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    h, w = input_size
    spec = (tf.TensorSpec((static_batch, h, w, 3), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(x):
        return {OUTPUT_NAME: model(x, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    return proto


def onnx_to_fp16(proto):
    """FP32 ONNX -> FP16 weights and compute, float32 inputs/outputs (``keep_io_types``).

    Callers feed the same float32 tensor to either model; the casts sit inside the graph.
    """
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        # Tiny weights flushing to fp16's range is expected; the parity check judges it.
        warnings.simplefilter("ignore")
        return float16.convert_float_to_float16(proto, keep_io_types=True)


FORMATS = {
    # precision: (conversion, what it is)
    "fp32": (keras_to_onnx, "float32 weights and compute"),
    "fp16": (onnx_to_fp16, "float16 weights and compute, float32 I/O"),
}


def attach_contract(proto, contract: ModelContract, doc: str = "") -> None:
    """Write the contract into ``metadata_props`` (replacing any edge_classify.* entries)."""
    meta = contract.to_metadata()
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    for k, v in keep + sorted(meta.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    if doc:
        proto.doc_string = doc


def atomic_write(path: Path, data: bytes) -> None:
    """Write next to ``path`` and rename into place: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a model file is not secret
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
