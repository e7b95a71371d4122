"""Exported ONNX vs Keras on real photos, and what the exported file carries."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from conftest import keras_pipeline
from edge_classify.runtime import Classifier, EngineOptions
from edge_classify.runtime.images.preprocess import DecodeOptions
from edge_classify.runtime.model.compare import topk_indices


@pytest.fixture(scope="module")
def parity_images(photos, format_variants):
    # Real photos plus format variants of them (none of which calibrated the stand-in
    # except the originals); input-sensitivity is checked on exactly these.
    return list(photos) + [p for n, p in sorted(format_variants.items()) if "chelsea" in n or "astronaut" in n]


@pytest.fixture(scope="module")
def keras_probs(standin, parity_images):
    model, _ = standin
    return np.asarray(model.predict(keras_pipeline(parity_images), verbose=0))


def test_standin_is_input_sensitive(keras_probs):
    """Without this, identical top-k lists would prove nothing."""
    top1 = keras_probs.argmax(1)
    print(f"stand-in top-1 classes over {len(top1)} images: {sorted(set(top1.tolist()))}")
    assert len(set(top1.tolist())) >= 5, f"stand-in predicts too few classes: {sorted(set(top1.tolist()))}"
    assert keras_probs.max(1).min() < 0.99  # not saturated: the ranking below top-1 is meaningful


def test_fp32_matches_keras(exported, parity_images, keras_probs):
    got = Classifier(exported["fp32"], EngineOptions(providers="cpu")).predict(parity_images)
    assert got.shape == keras_probs.shape == (len(parity_images), 1000)
    assert np.abs(got - keras_probs).max() <= 1e-5
    assert np.array_equal(topk_indices(got, 5), topk_indices(keras_probs, 5))


def test_fp16_top1_and_bounded(exported, parity_images, keras_probs):
    got = Classifier(exported["fp16"], EngineOptions(providers="cpu")).predict(parity_images)
    diff = np.abs(got - keras_probs).max()
    print(f"fp16 max abs probability difference vs Keras: {diff:.3g}")
    assert np.array_equal(got.argmax(1), keras_probs.argmax(1))
    assert diff <= 2e-2


def test_fp16_file_keeps_float32_io_and_is_smaller(exported):
    import onnx

    m = onnx.load(str(exported["fp16"]), load_external_data=False)
    f32 = onnx.TensorProto.FLOAT
    assert m.graph.input[0].type.tensor_type.elem_type == f32
    assert m.graph.output[0].type.tensor_type.elem_type == f32
    assert exported["fp16"].stat().st_size < 0.6 * exported["fp32"].stat().st_size
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")  # dynamic batch by default
    assert [d.dim_value for d in dims[1:]] == [224, 224, 3]


def test_metadata_contract(exported, standin):
    _, weights = standin
    for precision, path in exported.items():
        c = Classifier(path, EngineOptions(providers="cpu")).contract
        assert c.model.arch == "resnet50" and c.model.precision == precision
        assert c.preprocess.mode == "caffe" and c.preprocess.color_order == "BGR"
        assert c.preprocess.mean == (103.939, 116.779, 123.68) and c.preprocess.layout == "NHWC"
        assert c.preprocess.input_size == (224, 224) and c.preprocess.resize == "nearest"
        assert len(c.labels) == 1000 and c.labels.names[386] == "African_elephant"
        w = c.provenance["weights"]
        assert w["origin"] == "file"
        assert w["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
        assert {"tensorflow", "tf2onnx", "onnx", "keras"} <= set(c.provenance["tools"])
        if precision == "int8":  # judged against FP32 on held-out images (tests/test_int8.py)
            assert c.parity["reference"].startswith("fp32") and c.parity["passed"]
            continue
        assert c.parity["reference"].startswith("keras") and c.parity["passed"] and c.parity["images"] >= 4
        assert c.parity["max_abs_diff"] < (1e-4 if precision == "fp32" else 5e-2)


def test_every_file_carries_the_fast_decode_figure(exported):
    """Measured once on FP32 in the verify stage (export/fast_decode.py), carried by every file;
    ``auto`` decides from it (the stand-in's near-flat probabilities may well fail the bar)."""
    from edge_classify.runtime.images import fast_decode

    figures = []
    for path in exported.values():
        clf = Classifier(path, EngineOptions(providers="cpu"), decode=DecodeOptions(decode="auto"))
        f = clf.contract.parity["fast_decode"]
        assert f["model"] == "fp32" and f["margin"] == fast_decode.MARGIN
        assert set(f["scales"]) == {"fast 1/2", "fast 1/4", "fast 1/8"} and f["images"] >= 12
        assert clf.decode_options.decode == ("fast" if fast_decode.passes(f)[0] else "exact")
        figures.append(f)
    assert all(f == figures[0] for f in figures)


def test_classify_returns_typed_predictions(exported, photos, keras_probs, parity_images):
    clf = Classifier(exported["fp32"], EngineOptions(providers="cpu"), batch_size=3)
    results = clf.classify(parity_images[:7], top_k=5)
    assert [r.source for r in results] == [str(p) for p in parity_images[:7]]
    for r, ref in zip(results, keras_probs[:7]):
        assert r.ok and len(r.predictions) == 5
        assert [p.index for p in r.predictions] == topk_indices(ref[None], 5)[0].tolist()
        top = r.predictions[0]
        assert top.label == clf.labels.names[top.index] and top.wnid == clf.labels.wnids[top.index]
        assert abs(top.probability - float(ref[top.index])) <= 1e-5
    single = clf.classify(parity_images[0].read_bytes(), top_k=1)
    assert len(single) == 1 and single[0].predictions[0].index == results[0].predictions[0].index


def test_static_batch_and_custom_contract(tmp_path):
    """A non-ImageNet model: 7 classes, `tf` mode, 64x48 input, batch fixed at 2."""
    import keras

    from edge_classify.export import convert
    from edge_classify.runtime.model.contract import LabelSet, ModelContract, ModelInfo, PreprocessSpec

    keras.utils.set_random_seed(7)
    inp = keras.Input((64, 48, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(x))
    proto = convert.keras_to_onnx(model, (64, 48), static_batch=2)
    labels = LabelSet(tuple(f"class_{i}" for i in range(7)), (None,) * 7, "test")
    contract = ModelContract(PreprocessSpec.keras("tf", (64, 48)), labels, ModelInfo("tiny", "fp32", num_classes=7, batch=2), {})
    convert.attach_contract(proto, contract)
    path = tmp_path / "tiny.onnx"
    convert.atomic_write(path, proto.SerializeToString())

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (90 + i, 70, 3), dtype=np.uint8) for i in range(5)]  # 5: pads to 6
    clf = Classifier(path, EngineOptions(providers="cpu"))
    got = clf.predict(images)
    resized = np.stack([np.asarray(Image.fromarray(a).resize((48, 64), Image.NEAREST)) for a in images])
    want = model.predict(keras.applications.imagenet_utils.preprocess_input(resized.astype(np.float32), mode="tf"), verbose=0)
    assert got.shape == (5, 7)
    assert np.abs(got - want).max() <= 1e-5
    assert clf.classify(images[0], top_k=2)[0].predictions[0].label.startswith("class_")
