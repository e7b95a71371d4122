"""Micro benchmarks (pytest-benchmark): preprocessing and batch-1 inference.

Compare within a group: ``pytest benchmarks/ --benchmark-group-by=group``.
Nothing here asserts a time; each benchmark checks only that it computed something real.
"""

from __future__ import annotations

import numpy as np
import pytest
from edge_classify.runtime import preprocess
from edge_classify.runtime.contract import PreprocessSpec

SPEC = PreprocessSpec.keras("caffe")


@pytest.mark.benchmark(group="preprocess (all sample photos)")
def test_preprocess_edge_opencv(benchmark, photos):
    out = benchmark(preprocess.preprocess, photos, SPEC)
    assert out.shape == (len(photos), 224, 224, 3)


@pytest.mark.benchmark(group="preprocess (all sample photos)")
def test_preprocess_keras_pil(benchmark, photos):
    keras = pytest.importorskip("keras")
    from keras.applications.resnet50 import preprocess_input

    def keras_path():
        arrays = [keras.utils.img_to_array(keras.utils.load_img(str(p), target_size=(224, 224))) for p in photos]
        return preprocess_input(np.stack(arrays))

    out = benchmark(keras_path)
    assert np.array_equal(out, preprocess.preprocess(photos, SPEC))


@pytest.fixture(scope="module")
def x1():
    return np.random.default_rng(0).uniform(-120, 150, (1, 224, 224, 3)).astype(np.float32)


@pytest.mark.benchmark(group="inference batch 1")
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_edge_batch1(benchmark, model_paths, x1, precision, engine):
    from edge_classify.runtime import Classifier

    if not model_paths.get(precision):
        pytest.skip(f"no {precision} model")
    if engine == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO not installed (pip install openvino)")
    clf = Classifier(model_paths[precision], providers="cpu", engine=engine)
    out = benchmark(clf.run, x1)
    assert out.shape == (1, 1000) and abs(float(out.sum()) - 1) < 1e-2


@pytest.mark.benchmark(group="inference batch 1")
def test_openvino_batch1(benchmark, model_paths, x1):
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install openvino)")
    from edge_classify.benchmarks.systems import openvino

    s = openvino({"name": "OpenVINO default", "model": str(model_paths["fp32"])})
    out = benchmark(s.run, x1)
    assert out.shape == (1, 1000)
