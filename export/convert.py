"""Format conversions, one function each (source_to_target), and the atomic writer.

Which format uses which converter, gate and file name: formats.py.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import tempfile
import warnings
from pathlib import Path

from edge_classify.runtime.model.contract import ModelContract

from . import partials

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

    with _collect_cyclic_garbage_promptly():
        if _captured_constants(serve, spec):
            return _from_function_with_constants(serve, spec, opset)
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    return proto


def _captured_constants(fn, spec) -> bool:
    """Does the traced model capture plain tensors (not variables)? Keras 3's Normalization
    layer does (EfficientNet's, a fine-tuned model's): ``tf2onnx.convert.from_function``
    lists every non-resource input of the concrete function, captures included, as a
    graph input, so the ONNX model would need 3 inputs instead of 1."""
    import tensorflow as tf

    concrete = fn.get_concrete_function(*spec)
    return any(t.dtype != tf.dtypes.resource for t in concrete.inputs[len(spec):])


def _from_function_with_constants(fn, spec, opset: int):
    """``tf2onnx.convert.from_function`` with only the signature's tensors as inputs: the
    freezing step (``convert_variables_to_constants_v2``) turns the captured tensors into
    constants. The same steps as tf2onnx 1.16-1.17's own from_function otherwise."""
    import tensorflow as tf
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common, tensor_names_from_structed

    concrete = fn.get_concrete_function(*spec)
    inputs = [t.name for t in concrete.inputs[: len(spec)]]
    outputs = [t.name for t in concrete.outputs if t.dtype != tf.dtypes.resource]
    renames = tensor_names_from_structed(concrete, inputs, outputs)
    with tf.device("/cpu:0"):
        frozen = tf_loader.from_function(concrete, inputs, outputs)
        proto, _ = _convert_common(frozen, name=concrete.name, continue_on_error=True, opset=opset,
                                   input_names=inputs, output_names=outputs, tensors_to_rename=renames)
    return proto


@contextlib.contextmanager
def _collect_cyclic_garbage_promptly():
    """Let Python's cycle collector keep up with tf2onnx's graph copies.

    tf2onnx's ``optimize_graph`` deep-copies the whole graph, weights included, before
    each of its ~12 optimizers, over several rounds; every discarded copy is a reference
    cycle (nodes point at their graph), so only a full collection frees it. With
    TensorFlow's ~350k long-lived objects tracked, CPython runs a full collection only
    once the survivors of younger generations reach a quarter of that, so dozens of
    ~100 MB copies pile up first. Measured on ResNet50 (2-core AMD EPYC, Python 3.11,
    tf2onnx 1.17): ``optimize_graph`` took RSS from 1.4 to 6.4 GiB and made the whole
    export peak at 7.2-7.6 GiB; with the objects that exist before conversion frozen
    out of the collector and a full collection allowed at every second-generation pass,
    conversion peaks at 2.5-2.8 GiB (TensorFlow's own freezing and grappler reach about
    that too) and the export at 2.7-2.8 GiB. The exported files are byte-identical.
    """
    if not gc.isenabled() or gc.get_freeze_count():  # the caller manages the collector: leave it be
        yield
        return
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()  # what exists now outlives the conversion: keep it out of the scans
    gc.collect()  # resets the long-lived count the 25% rule compares against
    gc.set_threshold(threshold[0], 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def onnx_to_fp16(proto):
    """FP32 ONNX -> FP16 weights and compute, float32 inputs/outputs (``keep_io_types``).

    Callers feed the same float32 tensor to either model; the casts sit inside the graph.
    """
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        # Tiny weights flushing to fp16's range is expected; the parity check judges it.
        warnings.simplefilter("ignore")
        return float16.convert_float_to_float16(proto, keep_io_types=True)


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
    """Write next to ``path`` and rename into place: readers never see a partial file.

    The temporary is ``.<name>.<pid>.<random>.partial``; partials that killed writers
    left in the folder are swept first (``partials.sweep_stale``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partials.sweep_stale(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=partials.partial_prefix(path.name), suffix=".partial", dir=path.parent)
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
