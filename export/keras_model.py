"""Build the Keras model to export: architecture table and weight loading."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from edge_classify.runtime.errors import EdgeClassifyError, first_line
from edge_classify.runtime.host.deps import install_hint

from .weights import WeightsSpec, download

# arch -> (keras.applications constructor, preprocess_input mode, input size). The mode is
# what that application's ``preprocess_input`` does; "raw" where it is a pass-through because
# the model normalizes inside (its own Rescaling/Normalization, include_preprocessing=True).
ARCHS = {
    "resnet50": ("ResNet50", "caffe", (224, 224)),
    "resnet101": ("ResNet101", "caffe", (224, 224)),
    "resnet152": ("ResNet152", "caffe", (224, 224)),
    "mobilenetv2": ("MobileNetV2", "tf", (224, 224)),
    "mobilenetv3small": ("MobileNetV3Small", "raw", (224, 224)),
    "mobilenetv3large": ("MobileNetV3Large", "raw", (224, 224)),
    "efficientnetb0": ("EfficientNetB0", "raw", (224, 224)),
    "efficientnetv2b0": ("EfficientNetV2B0", "raw", (224, 224)),
    "densenet121": ("DenseNet121", "torch", (224, 224)),
    "convnexttiny": ("ConvNeXtTiny", "raw", (224, 224)),
    "inceptionv3": ("InceptionV3", "tf", (299, 299)),
    "xception": ("Xception", "tf", (299, 299)),
}
DOWNLOAD_TIMEOUT_S = 30  # a stalled connection to the weights host fails instead of hanging


@contextlib.contextmanager
def quiet_stderr():
    """Silence fd 2 (TensorFlow's C++ start-up chatter); replay it if something fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not ok:
                tmp.seek(0)
                sys.stderr.write(tmp.read().decode(errors="replace"))


def import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_stderr():
            import keras  # noqa: F401
            import tensorflow as tf  # noqa: F401
    except ImportError as exc:
        raise EdgeClassifyError(
            f"TensorFlow is not installed ({exc})",
            hint=f"install the export extra: {install_hint('export')}",
        ) from None
    return tf


def build(arch: str, weights: WeightsSpec):
    """The Keras model with the requested weights (softmax head, 1000 classes)."""
    import_tensorflow()
    import keras

    ctor = getattr(keras.applications, ARCHS[arch][0])
    if weights.origin == "random":
        keras.utils.set_random_seed(weights.seed)
        return ctor(weights=None)
    if weights.origin == "imagenet" and weights.url is None:  # Keras' own download for this arch
        return _imagenet_via_keras(ctor, arch)
    if weights.origin == "imagenet":
        download(weights)
    model = ctor(weights=None)
    try:
        model.load_weights(str(weights.path))
    except Exception as exc:  # h5py / Keras raise many types for a wrong file
        raise EdgeClassifyError(
            f"cannot load weights from {weights.path}: {first_line(exc)}",
            hint=f"--weights PATH must be Keras weights for {ARCHS[arch][0]} with its 1000-class top "
            "(.h5 as keras.applications downloads, or .weights.h5 from model.save_weights)",
        ) from None
    return model


def _imagenet_via_keras(ctor, arch: str):
    """``ctor(weights="imagenet")``: Keras' own URL, hash check and cache for this arch, with
    a socket timeout so an offline machine fails in seconds rather than hanging."""
    import socket

    from .weights import offline_error

    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return ctor(weights="imagenet")
    except Exception as exc:  # get_file raises plain Exception on fetch failures
        raise offline_error(f"Keras' keras-applications storage (keras.applications.{ARCHS[arch][0]})", arch,
                            first_line(exc), weights_file=f"the ImageNet weights file Keras downloads for "
                            f"{ARCHS[arch][0]} (~/.keras/models/)") from None
    finally:
        socket.setdefaulttimeout(saved)
