"""Build the Keras model to export: architecture table and weight loading."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from edge_classify.runtime.errors import EdgeClassifyError, first_line

from .weights import WeightsSpec, download

# arch -> (keras.applications constructor, preprocess_input mode, input size)
ARCHS = {
    "resnet50": ("ResNet50", "caffe", (224, 224)),
    "resnet101": ("ResNet101", "caffe", (224, 224)),
    "resnet152": ("ResNet152", "caffe", (224, 224)),
}


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
            import tensorflow as tf  # noqa: F401
            import keras  # noqa: F401
    except ImportError as exc:
        raise EdgeClassifyError(
            f"TensorFlow is not installed ({exc})",
            hint="install the export extra: pip install 'edge-classify[export]'",
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
