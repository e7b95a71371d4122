"""The systems being compared, each built from a JSON spec inside its own worker process.

A spec (``{"type": ..., ...}``) names what to build; ``build(spec)`` returns a ``System``
whose ``run(x)`` maps an input batch to the system's output. Types:

- ``keras``: Keras ``predict``, or Keras under ``tf.function`` (the fair TensorFlow
  baseline: no per-call ``predict`` overhead), on the model the files were exported from
  (``load_keras``). TensorFlow is imported only here.
- ``edge``: edge-classify's ``Classifier`` on one exported file with one engine, so the
  rows time the runner the product uses (``clf.runner``).
- ``ort``: plain ``onnxruntime.InferenceSession`` with default options (a peer).
- ``openvino``: the OpenVINO runtime with default config on an ONNX or IR file (a peer),
  one compiled model per batch size, each reshaped to that static batch.
- ``preprocess``: the image pipeline alone (OpenCV path or Keras' PIL path), for the spec's
  ``preprocess`` (the model contract's ``PreprocessSpec`` as a dict); ``x`` is ignored.

The spec's ``name`` and ``kind`` (keras | edge | peer | peer-extra | preprocess) label the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class System:
    name: str
    kind: str
    precision: str  # what really computes: fp32 | fp16 | int8 | bf16 | bf16 (emulated)
    run: Callable[[np.ndarray], np.ndarray]
    create_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # engine, device, ... as JSON
    prepare: Callable[[int], float] | None = None  # compile for a batch size ahead of timing; seconds


def build(spec: dict) -> System:
    builder = {"keras": keras, "edge": edge, "ort": ort_plain, "openvino": openvino,
               "preprocess": preprocess}[spec["type"]]
    t0 = time.perf_counter()
    s = builder(spec)
    s.create_s = time.perf_counter() - t0
    return s


# --- Keras -----------------------------------------------------------------------------
def keras(spec: dict) -> System:
    from edge_classify.export.keras_model import import_tensorflow

    tf = import_tensorflow()
    if spec.get("threads"):
        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
    import keras as k

    model = load_keras(spec)
    _check_input_shape(model, tuple(spec["input_shape"]))
    info = {"engine": "tensorflow", "device": "CPU", "tensorflow": tf.__version__, "keras": k.__version__}
    if spec["mode"] == "predict":
        return System(spec["name"], "keras", "fp32", lambda x: model.predict(x, verbose=0), info=info)
    sig = tf.TensorSpec((None, *spec["input_shape"]), tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[sig])
    fn.get_concrete_function()  # trace now, so tracing is creation time, not first inference
    return System(spec["name"], "keras", "fp32", lambda x: fn(tf.constant(x)).numpy(), info=info)


def load_keras(spec: dict):
    """The user's model (``keras_model``: .keras / .h5 via ``keras.models.load_model(path,
    compile=False)``, or a SavedModel folder), else the keras.applications ``application``
    (e.g. ResNet50) with ``weights``."""
    if spec.get("keras_model"):
        from edge_classify.export.user_model import load

        return load(Path(spec["keras_model"]))
    import keras as k

    model = getattr(k.applications, spec["application"])(weights=None)
    model.load_weights(spec["weights"])
    return model


def _check_input_shape(model, want: tuple) -> None:
    """A clear error when the Keras model's input does not fit the exported files' (a wrong
    --keras-model), instead of a traceback from inside the first call."""
    try:
        got = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):  # not built yet: nothing to compare
        return
    if len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want)):
        raise ValueError(f"the Keras model takes {got} inputs, the exported files {want}: "
                         "is it the model they were exported from?")


# --- edge-classify -----------------------------------------------------------------------
def edge(spec: dict) -> System:
    """edge-classify's ``Classifier`` as a user runs it: ``clf.run`` on a preprocessed batch.

    On a GPU provider, loading is where the one-time work happens: the Classifier builds a
    TensorRT engine while creating its session (minutes on a Jetson, announced through
    ``on_status``; a cached engine is loaded instead), so it lands in ``create_s``, never in
    a timed call. What runs do lazily (cuDNN's algorithm search per input shape, first-run
    allocations) is ``prepare``: ``clf.warmup`` at each batch size before it is timed.
    """
    import sys

    from edge_classify.runtime import Classifier, EngineOptions
    from edge_classify.runtime.engines.providers import GPU_PROVIDERS

    status: list[str] = []

    def on_status(message: str) -> None:
        status.append(message)
        print(f"edge-classify: {message}", file=sys.stderr, flush=True)  # the worker's log

    options = EngineOptions(engine=spec.get("engine") or "auto", providers=spec.get("providers", "cpu"),
                            threads=spec.get("threads"))
    clf = Classifier(spec["model"], options, batch_size=1024, on_status=on_status)
    runner, report = clf.runner, clf.report
    info = {"file_precision": spec["file_precision"], "provider": runner.provider,
            "provider_requested": options.providers, "engine": runner.engine, "device": runner.device,
            "cache": runner.cache_status, "engine_reason": report.engine_choice.reason}
    if report.engine_built is not None:  # TensorRT: built at this load, or loaded from its cache
        info.update(tensorrt_engine_built=report.engine_built, tensorrt_engine_build_s=report.engine_build_s)
    precision = runner.precision
    prepare = None
    if runner.device in GPU_PROVIDERS:
        def prepare(batch: int) -> float:
            return sum(clf.warmup([batch]).values()) / 1e3

    s = System(spec["name"], "edge", precision, clf.run, info=info, prepare=prepare)
    s.notes.append(f"{info['engine']} on {info['device']}, computes {precision}, cache {info['cache']}")
    s.notes += status + [w for w in (report.cache_warning, report.provider_warning) if w] + report.notes
    return s


def engine_choice(spec: dict) -> dict:
    """What ``engine="auto"`` picks for a file, and why (it may time both engines once)."""
    from edge_classify.runtime import Classifier, EngineOptions

    t0 = time.perf_counter()
    clf = Classifier(spec["model"], EngineOptions(threads=spec.get("threads")))
    choice = clf.report.engine_choice
    # A choice still being measured changes the next runs (they measure too); `settled`
    # says whether it is final.
    return {"engine": clf.runner.engine, "device": clf.runner.device, "precision": clf.runner.precision,
            "reason": choice.reason, "settled": choice.settled,
            "measured_now": choice.reason.startswith("measured now"), "create_s": time.perf_counter() - t0}


# --- peers -----------------------------------------------------------------------------
def ort_plain(spec: dict) -> System:
    """ONNX Runtime as its documentation shows it: default session options, CPU provider."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if spec.get("threads"):
        so.intra_op_num_threads = spec["threads"]
    session = ort.InferenceSession(str(spec["model"]), so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    s = System(spec["name"], spec.get("kind", "peer"), spec.get("precision", "fp32"),
               lambda x: session.run(None, {name: x})[0],
               info={"engine": "onnxruntime", "device": "CPUExecutionProvider", "provider": "CPUExecutionProvider",
                     "onnxruntime": ort.__version__})
    s.notes.append(f"onnxruntime {ort.__version__}, default SessionOptions")
    return s


def openvino(spec: dict) -> System:
    """OpenVINO, default compile config, one static-batch compiled model per batch size.

    ``precision`` in the spec is the file's (``int8`` for quantized models); the float
    precision OpenVINO really computes in is read back from the compiled model: it is bf16
    by default on CPUs with AMX, which a row labelled "fp32" would hide.
    """
    import openvino as ov

    from edge_classify.runtime.engines.openvino_runner import computed_precision, type_name
    from edge_classify.runtime.host.facts import openvino_native_bf16

    core = ov.Core()
    source = core.read_model(str(spec["model"]))
    port = source.inputs[0]
    dims = [d.get_length() for d in list(port.partial_shape)[1:]]
    config = {"INFERENCE_NUM_THREADS": spec["threads"]} if spec.get("threads") else {}
    requests: dict[int, object] = {}
    info: dict = {"engine": "openvino", "device": "CPU", "provider": "OpenVINO CPU", "openvino": ov.__version__,
                  "config": config or "default"}

    def compile_for(batch: int) -> float:
        t0 = time.perf_counter()
        model = source.clone()
        model.reshape({port.any_name: [batch] + dims})
        compiled = core.compile_model(model, "CPU", config)
        info["inference_precision_hint"] = type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        info["performance_hint"] = str(compiled.get_property("PERFORMANCE_HINT"))
        info["num_threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        requests[batch] = compiled.create_infer_request()
        return time.perf_counter() - t0

    def run(x):
        request = requests.get(len(x))
        if request is None:
            compile_for(len(x))
            request = requests[len(x)]
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    compile_for(1)
    file_precision = spec.get("precision", "fp32")
    precision = computed_precision(file_precision, info["inference_precision_hint"], openvino_native_bf16())
    s = System(spec["name"], spec.get("kind", "peer"), precision, run, info=info, prepare=compile_for)
    s.notes.append(f"openvino {ov.__version__}, default config, static batch per size; "
                   f"INFERENCE_PRECISION_HINT {info['inference_precision_hint']}"
                   + (" (for its non-quantized ops)" if file_precision == "int8" else ""))
    return s


def nncf_quantize(spec: dict) -> dict:
    """Post-training INT8 of the FP32 ONNX file with NNCF, on the calibration photos,
    saved as OpenVINO IR: the peer's own INT8, next to ours on the same photos."""
    import nncf
    import openvino as ov

    from edge_classify.runtime.images.preprocess import preprocess as prep
    from edge_classify.runtime.model.contract import PreprocessSpec

    t0 = time.perf_counter()
    x = prep([Path(p) for p in spec["calib"]], PreprocessSpec.from_dict(spec["preprocess"]))
    model = ov.Core().read_model(str(spec["model"]))
    quantized = nncf.quantize(model, nncf.Dataset([x[i:i + 1] for i in range(len(x))]), subset_size=len(x))
    Path(spec["save"]).parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, spec["save"])
    return {"path": spec["save"], "quantize_s": time.perf_counter() - t0, "calibration_images": len(x),
            "nncf": nncf.__version__}


# --- preprocessing -------------------------------------------------------------------
def preprocess(spec: dict) -> System:
    from edge_classify.runtime.model.contract import PreprocessSpec

    photos = [Path(p) for p in spec["photos"]]
    pspec = PreprocessSpec.from_dict(spec["preprocess"])
    if spec["impl"] == "opencv":
        from edge_classify.runtime.images import preprocess as prep

        return System(spec["name"], "preprocess", "fp32", lambda _x: prep.preprocess(photos, pspec))

    from edge_classify.export.keras_model import import_tensorflow
    from edge_classify.export.verify import keras_inputs

    import_tensorflow()  # keras_inputs: load_img, the contract's resize, the mode's preprocess_input
    return System(spec["name"], "preprocess", "fp32", lambda _x: keras_inputs(photos, pspec))


# --- what is installed ---------------------------------------------------------------
def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def nncf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def ort_openvino_ep_available() -> bool:
    """True when onnxruntime is the onnxruntime-openvino build (OpenVINO execution provider)."""
    import onnxruntime as ort

    from edge_classify.runtime.engines.providers import ALIASES

    return ALIASES["openvino"] in ort.get_available_providers()
