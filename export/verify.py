"""Parity of an exported model against Keras' own pipeline, before export calls it done.

The reference is exactly what a Keras user runs: ``keras.utils.load_img`` ->
``img_to_array`` -> the model's preprocessing -> ``model.predict``, turned into
probabilities by the contract's head (runtime/model/heads.py). The candidate is the runtime end
to end (OpenCV decode, preprocessing from the model's contract, ONNX Runtime). So the
check covers conversion *and* the preprocessing contract.

``resize="bilinear"`` references ``tf.image.resize(..., "bilinear")`` on the pixels
``load_img`` decoded (what ``image_dataset_from_directory`` and ``Resizing`` do), so the
comparison isolates conversion and resize from decoder differences.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from edge_classify.runtime.model.compare import Comparison, compare
from edge_classify.runtime.model.contract import PreprocessSpec

from .formats import gate


def sample_images() -> list[Path]:
    """The real photos shipped with the package (export/samples, scikit-image CC0/PD)."""
    folder = resources.files(__package__).joinpath("samples")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".jpg"))


def keras_inputs(paths, spec: PreprocessSpec) -> np.ndarray:
    """The float32 batch a Keras user feeds ``model.predict`` for ``spec``."""
    import keras

    h, w = spec.input_size
    if spec.resize == "nearest":
        arrays = [keras.utils.img_to_array(keras.utils.load_img(str(p), target_size=(h, w))) for p in paths]
    else:
        import tensorflow as tf

        arrays = [tf.image.resize(keras.utils.img_to_array(keras.utils.load_img(str(p))), (h, w),
                                  method="bilinear").numpy() for p in paths]
    return keras_preprocess(np.stack(arrays).astype(np.float32), spec)


def keras_preprocess(x: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """RGB float32 pixels 0..255 -> the model input, as Keras' ``preprocess_input`` would."""
    if spec.mode in ("caffe", "tf", "torch"):
        from keras.applications import imagenet_utils

        return imagenet_utils.preprocess_input(x, mode=spec.mode)
    if spec.mode == "meanstd":
        ordered = x if spec.color_order == "RGB" else x[..., ::-1]  # the spec's constants are in its order
        return (ordered - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return x  # raw


def keras_reference(model, paths, spec: PreprocessSpec) -> np.ndarray:
    """The model's raw outputs (before the contract's head) on ``paths``."""
    return np.asarray(model.predict(keras_inputs(paths, spec), verbose=0), dtype=np.float32)


def check(reference: np.ndarray, candidate: np.ndarray, precision: str) -> Comparison:
    g = gate(precision)
    return compare(reference, candidate, atol=g.atol, topk=5, require=g.require)
