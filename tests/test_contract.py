"""The contract survives the trip into ONNX metadata and back, for more than ImageNet."""

from __future__ import annotations

import json

import pytest

from edge_classify.runtime.errors import EdgeClassifyError
from edge_classify.runtime.model.contract import (
    PREFIX,
    LabelSet,
    ModelContract,
    ModelInfo,
    PreprocessSpec,
)


def custom_contract(**overrides) -> ModelContract:
    labels = LabelSet(("cat", "dog", "ferret"), (None, None, None), "my labels")
    pre = PreprocessSpec("meanstd", "RGB", (120.0, 110.0, 100.0), (60.0, 58.0, 57.0), (160, 192))
    info = ModelInfo("my-net", "fp32", num_classes=3, output="logits", batch=4)
    fields = dict(preprocess=pre, labels=labels, model=info, provenance={"weights": {"origin": "file"}})
    fields.update(overrides)
    return ModelContract(**fields)


def test_roundtrip_custom_model():
    c = custom_contract(parity={"max_abs_diff": 1e-7})
    meta = c.to_metadata()
    assert all(k.startswith(PREFIX) and isinstance(v, str) for k, v in meta.items())
    back = ModelContract.from_metadata(meta)
    assert back == c
    assert back.preprocess.input_size == (160, 192)
    assert back.labels.names[2] == "ferret" and back.labels.wnids[2] is None


def test_imagenet_labels_are_keras_names():
    labels = LabelSet.imagenet1k()
    assert len(labels) == 1000
    assert (labels.wnids[386], labels.names[386]) == ("n02504458", "African_elephant")
    assert labels.wnids == tuple(sorted(labels.wnids))  # Keras indices follow sorted wnids
    assert labels.names[134] == labels.names[517] == "crane"  # Keras' known duplicate


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_keras_modes(mode):
    spec = PreprocessSpec.keras(mode)
    assert spec.color_order == ("BGR" if mode == "caffe" else "RGB")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "inception"},
        {"mode": "torch", "std": None},
        {"resize": "bicubic"},
        {"layout": "NCWH"},
        {"input_size": (224,)},
    ],
)
def test_invalid_specs_rejected(kwargs):
    with pytest.raises(EdgeClassifyError):
        PreprocessSpec(**kwargs)


def test_label_count_must_match_model():
    with pytest.raises(EdgeClassifyError, match="3 labels"):
        custom_contract(model=ModelInfo("x", "fp32", num_classes=10))


def test_missing_and_newer_contracts_are_explained():
    with pytest.raises(EdgeClassifyError, match="no edge-classify contract") as e:
        ModelContract.from_metadata({}, "plain.onnx")
    assert "export-model" in e.value.hint
    meta = custom_contract().to_metadata()
    meta[PREFIX + "schema"] = "99"
    with pytest.raises(EdgeClassifyError, match="schema 99"):
        ModelContract.from_metadata(meta)
    meta = custom_contract().to_metadata()
    meta[PREFIX + "labels"] = "{not json"
    with pytest.raises(EdgeClassifyError, match="malformed"):
        ModelContract.from_metadata(meta)


def test_unknown_fields_from_newer_exporters_are_ignored():
    meta = custom_contract().to_metadata()
    pre = json.loads(meta[PREFIX + "preprocess"])
    pre["future_field"] = 1
    meta[PREFIX + "preprocess"] = json.dumps(pre)
    assert ModelContract.from_metadata(meta).preprocess == custom_contract().preprocess
