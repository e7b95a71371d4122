"""Fixtures for the pytest-benchmark micro suite (``pytest benchmarks/``).

Set ``EDGE_BENCH_MODEL=path/to/model.onnx`` to time an existing export (any classifier:
input size, classes and preprocessing come from its contract); otherwise a ResNet50 with
random weights is exported once per session (about a minute).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_paths(tmp_path_factory) -> dict:
    given = os.environ.get("EDGE_BENCH_MODEL")
    if given:
        fp32 = Path(given)
        fp16 = fp32.with_name(fp32.name.replace(".onnx", ".fp16.onnx"))
        return {"fp32": fp32, "fp16": fp16 if fp16.is_file() else None}
    from edge_classify.export.pipeline import export_model
    from edge_classify.export.request import ExportRequest

    out = tmp_path_factory.mktemp("bench-model") / "resnet50.onnx"
    result = export_model(ExportRequest(out, weights="random", fp16=True))
    return {f.precision: f.path for f in result.files}


@pytest.fixture(scope="session")
def contract(model_paths):
    """The timed model's contract (input size, classes, head, preprocessing)."""
    from edge_classify.benchmarks.model_files import read_contract

    return read_contract(model_paths["fp32"])


@pytest.fixture(scope="session")
def preprocess_spec():
    """EDGE_BENCH_MODEL's preprocessing, else the default export's (ResNet50: caffe, 224x224,
    nearest), without exporting a model for the preprocessing benchmarks."""
    given = os.environ.get("EDGE_BENCH_MODEL")
    if given:
        from edge_classify.benchmarks.model_files import read_contract

        return read_contract(Path(given)).preprocess
    from edge_classify.runtime.model.contract import PreprocessSpec

    return PreprocessSpec.keras("caffe")


@pytest.fixture(scope="session")
def photos():
    from edge_classify.benchmarks.run import sample_photos

    return sample_photos()
