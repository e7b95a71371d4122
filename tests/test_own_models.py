"""Users' own fine-tuned Keras models, end to end: export with their labels and training
preprocessing, then ``edge-classify --json`` against Keras' own prediction.

The models (tests/trained_models.py) are really trained on scikit-learn's digits, tinted
and saved in class folders as PNG/JPEG, so their predictions are confident and vary; each
test first checks that they vary before trusting a top-k comparison. Keras' reference is
computed here from the raw model output with numpy (softmax / sigmoid written out), not
with the runtime's own head code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import trained_models as tm
from edge_classify.export import cli as export_cli
from edge_classify.runtime import EngineOptions
from edge_classify.runtime.apps import classify as classify_cli

FP32_ATOL = 1e-5
# Keras runs a mixed_float16 model in float16; the export is float32 (what the parity gate
# compares it with exactly is its float32 rebuild), so against the model as given the
# difference is float16 rounding: measured up to 2.1e-3 over 200 photos.
MIXED_ATOL = 1e-2


@pytest.fixture(scope="session")
def workdir(trained_workdir):
    return trained_workdir


def _np_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def keras_probabilities(built, paths) -> np.ndarray:
    raw = np.asarray(tm.keras_reference(built, paths), np.float64)
    if built.head == "logits":
        return _np_softmax(raw)
    if built.head == "binary":
        return np.concatenate([1 - raw, raw], axis=1)
    return raw  # softmax or sigmoid probabilities, as the model outputs them


def export(built, out, *extra, capsys=None):
    argv = ["--keras-model", str(built.path), "-o", str(out), "-q", *extra]
    rc = export_cli.main(argv)
    return rc, (capsys.readouterr() if capsys else None)


def classify_json(capsys, model, paths, top_k):
    capsys.readouterr()
    rc = classify_cli.main(["--model", str(model), "--json", "-q", "--top-k", str(top_k), *map(str, paths)])
    out = capsys.readouterr().out
    assert rc == 0, out
    return [json.loads(line) for line in out.splitlines()]


# How each model is exported: only what its file cannot tell (the test of "read from the model"
# is that the rest is not passed): mobilenetv2/mixed/augmented normalize inside (raw), the
# last layer shows softmax / none (logits) / sigmoid. The ResNet50 here is flattened into one
# functional model (no nested "resnet50" to recognise), so its caffe mode is given.
FLAGS = {
    "mobilenetv2_rescaling": ["--resize", "bilinear"],
    "resnet50_logits": ["--resize", "bilinear", "--preprocess", "caffe"],
    "multilabel_sigmoid": ["--resize", "bilinear", "--preprocess", "tf"],
    "mixed_float16": ["--resize", "bilinear"],
    "augmented": ["--resize", "bilinear"],
    "binary_sigmoid": ["--preprocess", "torch"],
}


@pytest.mark.parametrize("name", list(tm.BUILDERS))
def test_own_model_export_then_classify_matches_keras(name, workdir, tmp_path, capsys):
    built = tm.BUILDERS[name](workdir)
    assert built.accuracy >= 0.5, f"{name} did not train: held-out accuracy {built.accuracy}"
    labels_args = ["--labels-from-dir", str(built.data_dir)]
    if built.head == "sigmoid":  # attribute names, not the digit folders
        (tmp_path / "labels.txt").write_text("\n".join(built.labels) + "\n")
        labels_args = ["--labels", str(tmp_path / "labels.txt")]
    out = tmp_path / f"{name}.onnx"
    rc, _ = export(built, out, *labels_args, *FLAGS[name], "--verify-images", *map(str, built.heldout[::7]))
    assert rc == 0

    paths = built.heldout
    ref = keras_probabilities(built, paths)
    classes = ref.shape[1]
    assert len(set(np.argmax(ref, axis=1))) >= min(classes, 3), "predictions do not vary: top-k parity is meaningless"
    k = min(5, classes)
    atol = MIXED_ATOL if name == "mixed_float16" else FP32_ATOL
    rows = classify_json(capsys, out, paths, k)
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    for r, want in zip(rows, ref):
        got_idx = [p["index"] for p in r["predictions"]]
        want_idx = list(np.argsort(-want, kind="stable")[:k])
        gaps = np.abs(want[got_idx] - want[want_idx])
        assert got_idx == want_idx or gaps.max() <= atol, (r["path"], got_idx, want_idx)
        got_p = np.array([p["probability"] for p in r["predictions"]])
        assert np.abs(got_p - want[got_idx]).max() <= atol
        assert [p["label"] for p in r["predictions"]] == [built.labels[i] for i in got_idx]
        if built.head == "sigmoid":  # every score, and the labels above the threshold
            assert list(r["scores"]) == built.labels
            np.testing.assert_allclose(list(r["scores"].values()), want, atol=FP32_ATOL)
            above = {built.labels[i] for i in np.flatnonzero(want > 0.5)}
            assert {p["label"] for p in r["labels_above_threshold"]} == above
    from edge_classify.runtime.classifier import Classifier

    parity = Classifier(out).contract.parity
    assert parity["passed"] and parity["max_abs_diff"] <= FP32_ATOL  # the gate: vs the model that was converted
    if name in ("mixed_float16", "augmented"):  # converted from a rebuilt copy, checked against the original
        assert parity["original"]["passed"] and parity["original"]["changes"]


def test_multilabel_text_output_lists_labels_above_threshold(workdir, tmp_path, capsys):
    built = tm.BUILDERS["multilabel_sigmoid"](workdir)
    (tmp_path / "labels.txt").write_text("\n".join(built.labels) + "\n")
    out = tmp_path / "m.onnx"
    assert export(built, out, "--labels", str(tmp_path / "labels.txt"), *FLAGS["multilabel_sigmoid"])[0] == 0
    path = built.heldout[0]
    want = keras_probabilities(built, [path])[0]
    for threshold in (0.5, 0.05):
        capsys.readouterr()
        assert classify_cli.main(["--model", str(out), "-q", "--threshold", str(threshold), str(path)]) == 0
        lines = capsys.readouterr().out.splitlines()
        shown = {line.split(":")[0] for line in lines if not line.startswith("(")}
        assert shown == {built.labels[i] for i in np.flatnonzero(want > threshold)}


def test_int8_fidelity_on_a_trained_model(workdir, tmp_path, capsys):
    """A confident model makes INT8 fidelity meaningful: agreement with FP32 and accuracy on
    held-out photos filed by class (the calibration folder's own held-out split)."""
    built = tm.BUILDERS["augmented"](workdir)
    out = tmp_path / "a.onnx"
    rc, _ = export(built, out, "--labels-from-dir", str(built.data_dir), *FLAGS["augmented"], "--int8",
                   "--calib", str(built.data_dir), "--calib-max", "100")
    assert rc == 0
    from edge_classify.runtime.classifier import Classifier

    parity = Classifier(out.with_name("a.int8.onnx"), EngineOptions(providers="cpu")).contract.parity
    # The figures were measured on ONNX Runtime; `auto` may pick OpenVINO here, whose INT8
    # kernels round differently (engines.unverified): recompute them on the engine that measured them.
    int8 = Classifier(out.with_name("a.int8.onnx"), EngineOptions(engine=parity["engine"], providers="cpu"))
    fp32 = Classifier(out, EngineOptions(engine=parity["engine"], providers="cpu"))
    acc = parity["accuracy"]
    assert acc["images"] == parity["images"] == 20 and set(acc) >= {"fp32", "int8"}
    # The figures say what they claim: recompute them on the held-out files the contract names.
    held = [p for p in sorted(built.data_dir.glob("*/*")) if p.name in set(parity["quantization"]["heldout_images"])]
    truth = np.array([built.labels.index(p.parent.name) for p in held])
    p32, p8 = fp32.predict(held), int8.predict(held)
    assert acc["fp32"] == pytest.approx(np.mean(p32.argmax(1) == truth))
    assert acc["int8"] == pytest.approx(np.mean(p8.argmax(1) == truth))
    assert parity["top1_agreement"] == pytest.approx(np.mean(p32.argmax(1) == p8.argmax(1)))
    assert acc["fp32"] >= 0.7 and parity["top1_agreement"] >= 0.8  # a trained model survives INT8
    capsys.readouterr()
    rows = classify_json(capsys, out.with_name("a.int8.onnx"), built.heldout[:4], 3)
    assert all(r["predictions"][0]["label"] in built.labels for r in rows)


def test_double_normalization_is_a_warning_naming_the_layer(workdir, tmp_path, capsys):
    built = tm.BUILDERS["mobilenetv2_rescaling"](workdir)
    rc, cap = export(built, tmp_path / "d.onnx", "--preprocess", "tf", "--labels-from-dir", str(built.data_dir),
                     capsys=capsys)
    assert rc == 0
    assert "double normalization" in cap.err and "(Rescaling)" in cap.err


def test_label_count_mismatch_exits_2_naming_both_numbers(workdir, tmp_path, capsys):
    built = tm.BUILDERS["binary_sigmoid"](workdir)
    (tmp_path / "l.txt").write_text("a\nb\nc\n")
    rc, cap = export(built, tmp_path / "x.onnx", "--labels", str(tmp_path / "l.txt"), "--preprocess", "torch",
                     capsys=capsys)
    assert rc == 2 and "3 labels" in cap.err and "2 classes" in cap.err and "Traceback" not in cap.err
    assert not (tmp_path / "x.onnx").exists()


def test_unknown_custom_layer_is_one_clear_error_then_loads_with_custom_objects(tmp_path, capsys):
    import keras

    code = tmp_path / "my_layers.py"
    code.write_text(
        "import keras\n\n"
        "@keras.saving.register_keras_serializable(package='shop')\n"
        "class TimesTwo(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return x * 2.0\n")
    ns: dict = {}
    exec(compile(code.read_text(), str(code), "exec"), ns)
    x = keras.Input((16, 16, 3))
    h = keras.layers.GlobalAveragePooling2D()(ns["TimesTwo"]()(x))
    keras.Model(x, keras.layers.Dense(3, activation="softmax")(h)).save(tmp_path / "c.keras")
    keras.saving.get_custom_objects().pop("shop>TimesTwo")  # a fresh process would not know it
    argv = ["--keras-model", str(tmp_path / "c.keras"), "--preprocess", "tf", "-q", "-o", str(tmp_path / "c.onnx")]
    rc = export_cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 3 and "TimesTwo" in err and "--custom-objects" in err and "Traceback" not in err
    assert export_cli.main(argv + ["--custom-objects", str(code)]) == 0
    assert (tmp_path / "c.onnx").is_file()


def test_savedmodel_and_h5_sources(workdir, tmp_path, capsys):
    """The same trained model saved as a legacy .h5 and exported as a SavedModel folder."""
    import keras

    built = tm.BUILDERS["binary_sigmoid"](workdir)
    model = keras.models.load_model(built.path, compile=False)
    model.save(tmp_path / "b.h5")
    model.export(str(tmp_path / "b_saved"), verbose=False)
    ref = keras_probabilities(built, built.heldout[:6])
    for src in (tmp_path / "b.h5", tmp_path / "b_saved"):
        out = tmp_path / f"{src.stem}.onnx"
        argv = ["--keras-model", str(src), "--labels-from-dir", str(built.data_dir), "--preprocess", "torch",
                "-q", "-o", str(out)]
        assert export_cli.main(argv) == 0, capsys.readouterr().err
        rows = classify_json(capsys, out, built.heldout[:6], 2)
        got = np.array([[{p["index"]: p["probability"] for p in r["predictions"]}[i] for i in (0, 1)] for r in rows])
        np.testing.assert_allclose(got, ref, atol=FP32_ATOL)


def test_normalization_layer_constants_stay_inside_the_graph(tmp_path, photos, capsys):
    """Keras 3's Normalization layer is traced as captured tensors, which tf2onnx's
    from_function would turn into extra graph inputs (EfficientNet has one)."""
    import keras

    x = keras.Input((24, 24, 3))
    h = keras.layers.Normalization(mean=[120.0, 110.0, 100.0], variance=[3600.0, 3000.0, 2500.0])(x)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, activation="relu")(h))
    model = keras.Model(x, keras.layers.Dense(4, activation="softmax")(h))
    model.save(tmp_path / "n.keras")
    out = tmp_path / "n.onnx"
    assert export_cli.main(["--keras-model", str(tmp_path / "n.keras"), "-q", "-o", str(out)]) == 0
    import onnx

    assert [i.name for i in onnx.load(out).graph.input] == ["input"]
    rows = classify_json(capsys, out, photos[:6], 4)
    arrays = np.stack([keras.utils.img_to_array(keras.utils.load_img(str(p), target_size=(24, 24))) for p in photos[:6]])
    want = model.predict(arrays, verbose=0)
    got = np.array([[{p["index"]: p["probability"] for p in r["predictions"]}[i] for i in range(4)] for r in rows])
    np.testing.assert_allclose(got, want, atol=FP32_ATOL)


def test_grouped_convolutions_and_exact_gelu_convert(tmp_path, photos, capsys):
    """ConvNeXt's building blocks: a depthwise convolution written as Conv2D(groups=C), which
    Keras runs through XLA, and exact GELU (TensorFlow's Erfc); tf2onnx converts neither as
    such, so export rewrites them exactly and checks the copy against the model as given."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(3)
    x = keras.Input((20, 20, 3))
    h = L.Conv2D(8, 1)(L.Rescaling(1 / 255)(x))
    h = L.Conv2D(8, 5, groups=8, padding="same")(h)
    h = L.Activation("gelu")(L.LayerNormalization()(h))
    h = L.Dense(12, activation="gelu")(L.GlobalAveragePooling2D()(h))
    model = keras.Model(x, L.Dense(5)(h))
    model.save(tmp_path / "g.keras")
    out = tmp_path / "g.onnx"
    assert export_cli.main(["--keras-model", str(tmp_path / "g.keras"), "-q", "-o", str(out)]) == 0
    import onnx

    graph = onnx.load(out).graph
    assert [i.name for i in graph.input] == ["input"]
    assert not {"StatefulPartitionedCall", "Erfc"} & {n.op_type for n in graph.node}
    arrays = np.stack([keras.utils.img_to_array(keras.utils.load_img(str(p), target_size=(20, 20))) for p in photos[:8]])
    want = _np_softmax(model.predict(arrays, verbose=0))
    assert len(set(want.argmax(1))) >= 2
    rows = classify_json(capsys, out, photos[:8], 5)
    got = np.array([[{p["index"]: p["probability"] for p in r["predictions"]}[i] for i in range(5)] for r in rows])
    np.testing.assert_allclose(got, want, atol=FP32_ATOL)
