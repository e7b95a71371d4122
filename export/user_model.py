"""A user's own Keras model file, loaded and made ready to convert.

Sources: a Keras 3 ``.keras`` file, a legacy full-model ``.h5``, or a SavedModel folder
(``model.export()`` / ``tf.saved_model.save``, wrapped in ``keras.layers.TFSMLayer``).
What fine-tuned models carry and conversion must not (``inference_copy``):

* data-augmentation layers (``RandomFlip`` ... ``RandAugment``): identity at inference;
  replaced by ``Identity`` so no random op or seed state reaches the converter;
* a ``mixed_float16`` / ``mixed_bfloat16`` policy: every layer rebuilt in float32 with
  the same weights (mixed-precision variables are float32 already). The export gate then
  compares the ONNX model with this float32 copy, and the copy with the original;
* what tf2onnx cannot convert, rewritten exactly: depthwise convolutions written as grouped
  ``Conv2D`` (ConvNeXt), exact GELU (``Erfc``).

Also found here: in-model normalization (``Rescaling`` / ``Normalization``), and the
keras.applications backbone a model was fine-tuned from, whose ``preprocess_input`` the
user most likely trained with.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path

from edge_classify.runtime.errors import EXIT_MODEL, EXIT_USAGE, EdgeClassifyError, first_line

from .keras_model import ARCHS, import_tensorflow

# Not identity at inference (RandomCrop crops/resizes), so left in the graph.
_KEPT_RANDOM = {"RandomCrop"}
_AUGMENTATION = {"AugMix", "CutMix", "MixUp", "RandAugment"}
NORMALIZING = ("Rescaling", "Normalization")
_ARITHMETIC = {"TrueDivide", "Divide", "Subtract", "Multiply", "Add"}
_SCOPE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*")  # TensorFlow's root name scope pattern


def check_path(path: str) -> Path:
    """Before TensorFlow is imported: the file or folder exists and looks like a model."""
    p = Path(path).expanduser()
    if not p.exists():
        raise EdgeClassifyError(f"--keras-model {path}: not found", exit_code=EXIT_USAGE)
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise EdgeClassifyError(f"--keras-model {path}: a folder, but not a SavedModel (no saved_model.pb)",
                                    hint="pass a .keras or .h5 file, or a SavedModel folder", exit_code=EXIT_USAGE)
    elif p.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise EdgeClassifyError(f"--keras-model {path}: not a .keras, .h5 or SavedModel",
                                hint="save it with model.save('model.keras')", exit_code=EXIT_USAGE)
    return p


def load_custom_objects(files: list[str]) -> dict:
    """Python files with the user's custom layers/functions -> ``custom_objects``.

    A file may define ``CUSTOM_OBJECTS`` (a dict); otherwise every public class and
    function it defines is offered under its own name. Classes registered with
    ``@keras.saving.register_keras_serializable`` are found by importing the file at all.
    """
    found: dict = {}
    for f in files:
        p = Path(f).expanduser()
        if not p.is_file():
            raise EdgeClassifyError(f"--custom-objects {f}: not found", exit_code=EXIT_USAGE)
        name = "edge_classify_custom_%d_%s" % (len(found), re.sub(r"\W", "_", p.stem))
        spec = importlib.util.spec_from_file_location(name, p)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise EdgeClassifyError(f"--custom-objects {f} failed to import: {type(exc).__name__}: {first_line(exc)}",
                                    exit_code=EXIT_USAGE) from None
        objects = getattr(module, "CUSTOM_OBJECTS", None)
        if objects is None:
            objects = {k: v for k, v in vars(module).items()
                       if not k.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
                       and getattr(v, "__module__", None) == name}
        found.update(objects)
    return found


_MISSING = (re.compile(r"Could not locate (?:class|function) '([^']+)'"),
            re.compile(r"Unknown (?:layer|activation|loss|metric|object)[^:]*: '?([^'\s.]+)"),
            re.compile(r"'registered_name': '([^']+)'"))


def missing_custom_name(message: str) -> str | None:
    for pattern in _MISSING:
        m = pattern.search(message)
        if m:
            return m.group(1)
    return None


def load(path: Path, custom_objects: dict | None = None, allow_lambda: bool = False):
    """The Keras model in ``path`` (not compiled; its training configuration is not needed).

    ``allow_lambda`` lets Keras rebuild ``Lambda`` layers from the Python bytecode stored in
    the file (``safe_mode=False``): only for files you trust, and the same Python version."""
    import_tensorflow()
    import keras

    if path.is_dir():
        return _saved_model(path)
    try:
        model = keras.models.load_model(str(path), compile=False, custom_objects=custom_objects or None,
                                        safe_mode=not allow_lambda)
    except Exception as exc:  # Keras raises TypeError / ValueError / KeyError for a file it cannot rebuild
        text = str(exc)
        missing = missing_custom_name(text)
        if missing:
            raise EdgeClassifyError(
                f"{path.name} uses custom code that is not available here: {missing!r}",
                hint=f"pass --custom-objects FILE.py, a Python file that defines or imports {missing.split('>')[-1]} "
                     "(or a CUSTOM_OBJECTS dict); classes registered with @keras.saving.register_keras_serializable "
                     "are found by importing the file",
                exit_code=EXIT_MODEL) from None
        if "safe_mode" in text:
            raise EdgeClassifyError(f"{path.name} contains a Python lambda (a Lambda layer), which Keras does "
                                    "not load from a file by default (it runs code stored in the file)",
                                    hint="if you trust the file, pass --allow-lambda; or replace the Lambda layer "
                                         "with a custom layer class and pass --custom-objects",
                                    exit_code=EXIT_MODEL) from None
        raise EdgeClassifyError(f"cannot load Keras model {path}: {type(exc).__name__}: {first_line(exc)}",
                                exit_code=EXIT_MODEL) from None
    if not _SCOPE_NAME.fullmatch(model.name):  # TensorFlow cannot run "Cat vs Dog (v2)" (a name scope)
        model.name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", model.name).strip("_") or "model"
    return model


def _saved_model(path: Path):
    """A SavedModel's ``serving_default`` signature as a one-input, one-output Keras model."""
    import keras
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        sig = loaded.signatures["serving_default"]
    except (KeyError, OSError, ValueError) as exc:
        raise EdgeClassifyError(f"cannot load SavedModel {path}: {first_line(exc)}",
                                hint="it needs a serving_default signature (model.export() writes one)",
                                exit_code=EXIT_MODEL) from None
    inputs = sig.structured_input_signature[1]
    outputs = sig.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise EdgeClassifyError(f"SavedModel {path}: serving_default has {len(inputs)} inputs and {len(outputs)} "
                                "outputs; an image classifier has one of each", exit_code=EXIT_MODEL)
    (in_spec,) = inputs.values()
    (out_key,) = outputs
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    x = keras.Input(tuple(in_spec.shape[1:]), dtype=in_spec.dtype.name)
    y = layer(x)
    return keras.Model(x, y[out_key] if isinstance(y, dict) else y, name=path.name)


def walk(model):
    """Every layer, nested models' layers included, in order."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from walk(layer)


def _is_augmentation(layer) -> bool:
    name = type(layer).__name__
    return (name.startswith("Random") and name not in _KEPT_RANDOM) or name in _AUGMENTATION


def _reduced_precision(layer) -> bool:
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "compute_dtype", "float32") in ("float16", "bfloat16")


def _is_depthwise_as_grouped(layer) -> bool:
    """A ``Conv2D(filters=C, groups=C)`` on C channels (ConvNeXt's): Keras' TensorFlow
    backend runs grouped convolutions in an XLA-compiled function, which tf2onnx cannot
    convert (it stays a ``StatefulPartitionedCall``)."""
    if type(layer).__name__ != "Conv2D" or getattr(layer, "groups", 1) <= 1:
        return False
    return layer.groups == layer.filters and tuple(layer.kernel.shape[2:]) == (1, layer.filters)


def _uses_exact_gelu(layer) -> bool:
    """TensorFlow's exact GELU is built on ``Erfc``, an op tf2onnx does not convert."""
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") == "gelu" and not layer.get_config().get("approximate", False)


def _gelu_erf(x):
    """Exact GELU written with ``erf`` (ONNX has Erf): 0.5 x (1 + erf(x / sqrt 2))."""
    from keras import ops

    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


def inference_copy(model):
    """(model ready to convert, [what was changed]): augmentation stripped, float32
    throughout, and two exact rewrites tf2onnx needs (grouped-as-depthwise convolutions,
    exact GELU). Returns ``model`` itself when there is nothing to change."""
    import keras

    layers = list(walk(model))
    augment = [lyr for lyr in layers if _is_augmentation(lyr)]
    mixed = any(_reduced_precision(lyr) for lyr in layers)
    grouped = [lyr for lyr in layers if _is_depthwise_as_grouped(lyr)]
    gelu = [lyr for lyr in layers if _uses_exact_gelu(lyr)]
    if not (augment or mixed or grouped or gelu):
        return model, []
    rebuilt = []

    def clone(layer):
        if _is_augmentation(layer):
            return keras.layers.Identity(name=layer.name)
        cfg = layer.get_config()
        if mixed:
            cfg["dtype"] = "float32"
        if _uses_exact_gelu(layer):
            cfg["activation"] = _gelu_erf
        if _is_depthwise_as_grouped(layer):
            new = keras.layers.DepthwiseConv2D(
                cfg["kernel_size"], strides=cfg["strides"], padding=cfg["padding"], data_format=cfg["data_format"],
                dilation_rate=cfg["dilation_rate"], activation=cfg["activation"], use_bias=cfg["use_bias"],
                dtype=cfg["dtype"], name=layer.name)
            rebuilt.append((layer, new, lambda w: [w[0].reshape(*w[0].shape[:2], -1, 1)] + w[1:]))
            return new
        if cfg == layer.get_config():
            return layer  # shared, weights and all
        new = type(layer).from_config(cfg)
        rebuilt.append((layer, new, None))
        return new

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for old, new, reshape in rebuilt:
        weights = old.get_weights()
        new.set_weights(reshape(weights) if reshape else weights)
    changes = [f"removed augmentation layer {lyr.name} ({type(lyr).__name__}): identity at inference" for lyr in augment]
    if mixed:
        policy = next(lyr.dtype_policy.name for lyr in layers if _reduced_precision(lyr))
        changes.append(f"rebuilt in float32 from its {policy} policy (same weights)")
    if grouped:
        changes.append(f"{len(grouped)} grouped convolution(s) with one channel per group rebuilt as DepthwiseConv2D "
                       "(Keras runs grouped ones through XLA, which tf2onnx cannot convert)")
    if gelu:
        changes.append(f"exact GELU in {len(gelu)} layer(s) written with erf (tf2onnx cannot convert Erfc)")
    return copy, changes


def normalizing_layers(model) -> tuple[list[str], list[str]]:
    """(in-model normalization, opaque layers before the network), as ``name (Class)``.

    With the first, the input is raw pixels. The second are ``Lambda`` layers ahead of the
    first weighted layer: they may normalize, and nobody can tell without running them.

    ``Rescaling`` / ``Normalization`` layers, and arithmetic applied to the input before the
    first layer with weights: ``keras.applications.<model>.preprocess_input(x)`` called
    inside a functional model (TensorFlow's transfer-learning tutorial does this) becomes
    ``TrueDivide`` / ``Subtract`` operations that ``model.layers`` does not list.
    """
    found: list[str] = []
    opaque = []

    def visit(m) -> bool:  # True once a layer with weights is reached: the network proper
        for op in getattr(m, "operations", None) or m.layers:
            kind = type(op).__name__
            if kind in NORMALIZING:
                found.append(f"{op.name} ({kind})")
            elif hasattr(op, "layers"):
                if visit(op):
                    return True
            elif kind in _ARITHMETIC:
                found.append(f"{op.name} ({kind})")
            elif kind == "Lambda":
                opaque.append(f"{op.name} (Lambda)")
            elif getattr(op, "weights", None):
                return True
        return False

    visit(model)
    return found, opaque


def backbone(model) -> str | None:
    """The keras.applications arch a model was built on, from its nested model's name
    (``resnet50``, ``mobilenetv2_0.35_224``, ``efficientnetb0``...), or None."""
    names = [lyr.name.lower() for lyr in walk(model) if hasattr(lyr, "layers")] + [model.name.lower()]
    for name in names:
        flat = re.sub(r"[_\-]", "", name)
        for arch in ARCHS:  # "resnet50v2" is not resnet50 (a letter follows): another preprocessing
            if flat.startswith(arch) and not flat[len(arch):len(arch) + 1].isalpha():
                return arch
    return None


def input_shape(model) -> tuple:
    """(height, width, channels) of the model's single image input; None where dynamic."""
    if len(model.inputs) != 1:
        raise EdgeClassifyError(f"the model has {len(model.inputs)} inputs; an image classifier has one",
                                exit_code=EXIT_MODEL)
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise EdgeClassifyError(f"the model's input has shape {shape}; an image batch is (batch, height, width, "
                                "channels)", exit_code=EXIT_MODEL)
    return shape[1:]
