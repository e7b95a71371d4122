"""Micro benchmarks (pytest-benchmark): preprocessing and batch-1 inference.

Compare within a group: ``pytest benchmarks/ --benchmark-group-by=group``.
Nothing here asserts a time; each benchmark checks only that it computed something real.
Shapes, input range and preprocessing come from the timed model's contract (conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_classify.benchmarks.inference import input_range, input_shape
from edge_classify.runtime.images import preprocess


@pytest.mark.benchmark(group="preprocess (all sample photos)")
def test_preprocess_edge_opencv(benchmark, photos, preprocess_spec):
    out = benchmark(preprocess.preprocess, photos, preprocess_spec)
    assert out.shape == (len(photos), *input_shape(preprocess_spec))


@pytest.mark.benchmark(group="preprocess (all sample photos)")
def test_preprocess_keras_pil(benchmark, photos, preprocess_spec):
    pytest.importorskip("keras")
    from edge_classify.export.verify import keras_inputs

    out = benchmark(keras_inputs, photos, preprocess_spec)
    assert np.array_equal(out, preprocess.preprocess(photos, preprocess_spec))


@pytest.fixture(scope="module")
def x1(contract):
    lo, hi = input_range(contract.preprocess)
    return np.random.default_rng(0).uniform(lo, hi, (1, *input_shape(contract.preprocess))).astype(np.float32)


@pytest.mark.benchmark(group="inference batch 1")
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_edge_batch1(benchmark, model_paths, contract, x1, precision, engine):
    from edge_classify.runtime import Classifier, EngineOptions

    if not model_paths.get(precision):
        pytest.skip(f"no {precision} model")
    if engine == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO not installed (pip install openvino)")
    clf = Classifier(model_paths[precision], EngineOptions(engine=engine, providers="cpu"))
    out = benchmark(clf.run, x1)
    assert out.shape == (1, contract.model.num_classes)
    if contract.model.head == "softmax":
        assert abs(float(out.sum()) - 1) < 1e-2


@pytest.mark.benchmark(group="inference batch 1")
def test_openvino_batch1(benchmark, model_paths, contract, x1):
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install openvino)")
    from edge_classify.benchmarks.systems import openvino

    s = openvino({"name": "OpenVINO default", "model": str(model_paths["fp32"])})
    out = benchmark(s.run, x1)
    assert out.shape == (1, contract.model.width)  # the graph's raw output: before the head
