"""Parity of an exported model against Keras' own pipeline, before export calls it done.

The reference is exactly what a Keras user runs: ``keras.utils.load_img`` ->
``img_to_array`` -> ``preprocess_input`` -> ``model.predict``. The candidate is the
runtime end to end (OpenCV decode, preprocessing from the model's contract, ONNX
Runtime). So the check covers conversion *and* the preprocessing contract.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from edge_classify.runtime.compare import ParityReport, compare

# Export-time gates. FP32: ONNX Runtime and TensorFlow differ only in float rounding
# (measured ~5e-7 on ResNet50); 1e-4 leaves room for other CPUs' kernels, and top-5
# must agree. FP16: half-precision weights move probabilities by ~1e-3; only the top-1
# class is required to agree.
GATES = {
    "fp32": {"atol": 1e-4, "require": "topk"},
    "fp16": {"atol": 5e-2, "require": "top1"},
}


def sample_images() -> list[Path]:
    """The real photos shipped with the package (export/samples, scikit-image CC0/PD)."""
    folder = resources.files(__package__).joinpath("samples")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".jpg"))


def keras_reference(model, paths, mode: str = "caffe", input_size=(224, 224)) -> np.ndarray:
    import keras
    from keras.applications import imagenet_utils

    batch = np.stack(
        [keras.utils.img_to_array(keras.utils.load_img(str(p), target_size=tuple(input_size))) for p in paths]
    )
    x = imagenet_utils.preprocess_input(batch, mode=mode)
    return np.asarray(model.predict(x, verbose=0))


def check(reference: np.ndarray, candidate: np.ndarray, precision: str) -> ParityReport:
    gate = GATES.get(precision, GATES["fp16"])
    return compare(reference, candidate, atol=gate["atol"], topk=5, require=gate["require"])
