"""The systems being compared, each wrapped as ``run(batch) -> probabilities``.

One row per system: Keras ``predict``, Keras under ``tf.function`` (the fair TensorFlow
baseline: no per-call ``predict`` overhead), edge-classify's ONNX Runtime sessions per
precision, and OpenVINO on the same ONNX file when it is installed. Creation time and
first-inference time are recorded as each system is built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class System:
    name: str
    kind: str  # keras | edge | peer
    precision: str
    run: Callable[[np.ndarray], np.ndarray]
    create_s: float = 0.0
    first_inference_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    def warm(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = np.asarray(self.run(x))
        if self.first_inference_ms is None:
            self.first_inference_ms = (time.perf_counter() - t0) * 1e3
        return out


def keras_predict(model) -> System:
    return System("keras predict", "keras", "fp32", lambda x: model.predict(x, verbose=0))


def keras_tf_function(model, input_shape=(224, 224, 3)) -> System:
    import tensorflow as tf

    t0 = time.perf_counter()
    spec = tf.TensorSpec((None,) + tuple(input_shape), tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    fn.get_concrete_function()  # trace now, so tracing is creation time, not first inference
    return System("keras tf.function", "keras", "fp32", lambda x: fn(tf.constant(x)).numpy(),
                  create_s=time.perf_counter() - t0)


def edge(path: Path, precision: str, threads: int | None = None, provider: str = "cpu") -> System:
    """edge-classify's own session (optimised-graph cache, provider policy).

    ``provider`` is ``cpu`` (the ORT CPU provider) or ``openvino`` (ORT's OpenVINO
    execution provider, present only with the onnxruntime-openvino distribution).
    """
    from edge_classify.runtime import Classifier

    t0 = time.perf_counter()
    clf = Classifier(path, providers=provider, threads=threads, batch_size=1024)
    name = f"edge-classify ORT {precision}" if provider == "cpu" else f"edge-classify ORT+{provider} EP {precision}"
    s = System(name, "edge", precision, clf.run, create_s=time.perf_counter() - t0)
    s.notes.append(f"provider {clf.provider}, optimised-graph cache {clf.cache_status}")
    return s


def ort_openvino_ep_available() -> bool:
    """True when onnxruntime is the onnxruntime-openvino build (OpenVINO execution provider)."""
    import onnxruntime as ort

    from edge_classify.runtime.providers import ALIASES

    return ALIASES["openvino"] in ort.get_available_providers()


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def openvino(path: Path, batch: int, threads: int | None = None, precision_hint: str | None = None,
             label: str | None = None) -> System:
    """OpenVINO on the same ONNX file, compiled for a static batch with the latency hint.

    ``label`` names the row (e.g. ``int8`` for the QDQ model, which OpenVINO runs in int8).
    """
    import openvino as ov

    t0 = time.perf_counter()
    core = ov.Core()
    model = core.read_model(str(path))
    dims = [d.get_length() for d in list(model.inputs[0].partial_shape)[1:]]
    model.reshape({model.inputs[0].any_name: [batch] + dims})
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if precision_hint:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def run(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    if label is None:
        label = precision_hint or compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        label = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(label, label)
    s = System(f"OpenVINO {label}", "peer", label, run, create_s=time.perf_counter() - t0)
    s.notes.append(f"openvino {ov.__version__}, static batch {batch}, LATENCY hint")
    return s
