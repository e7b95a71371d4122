"""The parts that read a user's model: labels files and folders, the head from the last
layer or the outputs, custom-code errors, what is stripped or rebuilt before conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_classify.export import keras_head, labels, user_model
from edge_classify.runtime.errors import EdgeClassifyError
from edge_classify.runtime.model import heads


# --- labels ---------------------------------------------------------------------------------
def test_labels_file_lines_and_json(tmp_path):
    lines = tmp_path / "l.txt"
    lines.write_text("\ufeffcat\n dog \nbird\n\n", encoding="utf-8")  # BOM, padding, trailing blank
    assert labels.from_file(lines).names == ("cat", "dog", "bird")
    js = tmp_path / "l.json"
    js.write_text(json.dumps(["zwölf", "b"]), encoding="utf-8")
    assert labels.from_file(js).names == ("zwölf", "b")


@pytest.mark.parametrize("text,needle", [
    ("a\n\nb\n", "empty"), ("a\nb\na\n", "twice"), ("[1, 2]", "list of strings"), ("[oops", "does not parse"),
])
def test_bad_labels_files_are_usage_errors(tmp_path, text, needle):
    f = tmp_path / "l.txt"
    f.write_text(text)
    with pytest.raises(EdgeClassifyError, match=needle) as e:
        labels.from_file(f)
    assert e.value.exit_code == 2


def test_labels_from_dir_follow_image_dataset_from_directory(tmp_path):
    """Keras' own class order is the reference, not a copy of ours."""
    keras = pytest.importorskip("keras")
    from PIL import Image

    for name in ("zebra", "Apple", "mango", "_x", ".hidden", "10", "9"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "a.png")
    (tmp_path / "notes.txt").write_text("a file, not a class")
    ds = keras.utils.image_dataset_from_directory(tmp_path, image_size=(8, 8), verbose=False)
    assert list(labels.from_dir(tmp_path).names) == ds.class_names


def test_label_count_mismatch_names_both_numbers():
    with pytest.raises(EdgeClassifyError, match="gives 3 labels but the model outputs 5 scores") as e:
        labels.check_count(labels.generic(3), 5, "softmax", "--labels l.txt")
    assert e.value.exit_code == 2
    with pytest.raises(EdgeClassifyError, match="binary head"):
        labels.check_count(labels.generic(3), 2, "binary", "--labels l.txt")


# --- heads ----------------------------------------------------------------------------------
def test_runtime_heads_turn_outputs_into_probabilities():
    logits = np.array([[2.0, -1.0, 0.5], [-800.0, 0.0, 800.0]], np.float32)
    p = heads.probabilities(logits, "softmax", "logits")
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[0], np.exp(logits[0]) / np.exp(logits[0]).sum(), rtol=1e-6)
    s = heads.probabilities(logits, "sigmoid", "logits")
    np.testing.assert_allclose(s[0], 1 / (1 + np.exp(-logits[0].astype(np.float64))), rtol=1e-6)
    assert np.isfinite(s).all() and s[1, 0] == 0.0 and s[1, 2] == 1.0  # no overflow at +-800
    b = heads.probabilities(np.array([[0.2], [0.9]], np.float32), "binary")
    np.testing.assert_allclose(b, [[0.8, 0.2], [0.1, 0.9]], rtol=1e-6)


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _model(keras, last, nested=False, extra=()):
    x = keras.Input((8, 8, 3))
    h = keras.layers.GlobalAveragePooling2D()(x)
    if nested:
        h = keras.Sequential([last] + list(extra), name="head")(h)
    else:
        h = last(h)
        for layer in extra:
            h = layer(h)
    return keras.Model(x, h)


def test_final_activation_seen_through_dropout_nesting_and_float32_casts(keras):
    L = keras.layers
    assert keras_head.final_activation(_model(keras, L.Dense(4, activation="softmax")))[0] == "softmax"
    assert keras_head.final_activation(_model(keras, L.Dense(4), extra=[L.Softmax()]))[0] == "softmax"
    assert keras_head.final_activation(_model(keras, L.Dense(4, activation="sigmoid"), nested=True,
                                              extra=[L.Dropout(0.3)]))[0] == "sigmoid"
    assert keras_head.final_activation(_model(keras, L.Dense(4), extra=[L.Activation("linear", dtype="float32")]))[0] \
        == "linear"
    assert keras_head.final_activation(_model(keras, L.Dense(4), extra=[L.Lambda(lambda t: t * 2)]))[0] is None


def test_decide_heads():
    probs = np.array([[0.7, 0.2, 0.1]], np.float32)
    assert keras_head.decide("softmax", "d", 3, None, False, probs)[:2] == ("softmax", "probabilities")
    assert keras_head.decide("linear", "d", 3, None, False, probs * 9)[:2] == ("softmax", "logits")
    assert keras_head.decide("linear", "d", 3, None, True, probs * 9)[:2] == ("sigmoid", "logits")
    assert keras_head.decide("sigmoid", "d", 3, None, False, probs)[:2] == ("sigmoid", "probabilities")
    assert keras_head.decide("sigmoid", "d", 1, None, False, probs[:, :1])[:2] == ("binary", "probabilities")
    assert keras_head.decide("linear", "d", 1, None, False, probs[:, :1] * 9)[:2] == ("binary", "logits")
    # hidden activation: read from the outputs where they are unambiguous, else ask for --head
    assert keras_head.decide(None, "x", 3, None, False, probs)[:2] == ("softmax", "probabilities")
    with pytest.raises(EdgeClassifyError, match="--head") as e:
        keras_head.decide(None, "x", 3, None, False, probs * 9)
    assert e.value.exit_code == 2
    with pytest.raises(EdgeClassifyError, match="outside 0..1"):  # a declared head the outputs contradict
        keras_head.decide(None, "x", 3, "softmax", False, probs * 9)
    with pytest.raises(EdgeClassifyError, match="exclude"):
        keras_head.decide("softmax", "d", 3, None, True, probs)


# --- custom code, augmentation, mixed precision ----------------------------------------------
def test_missing_custom_class_is_named():
    assert user_model.missing_custom_name("... Could not locate class 'Scale'. Make sure ...") == "Scale"
    assert user_model.missing_custom_name("Unknown layer: 'my>Scale'. Please ensure ...") == "my>Scale"


def test_inference_copy_strips_augmentation_and_rebuilds_mixed_precision_in_float32(keras):
    L = keras.layers
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = keras.Input((16, 16, 3))
        h = keras.Sequential([L.RandomFlip("horizontal"), L.RandomRotation(0.1)], name="augment")(x)
        h = L.Rescaling(1 / 255)(h)
        h = L.Conv2D(4, 3)(h)
        h = L.GlobalAveragePooling2D()(h)
        h = L.Dense(3)(h)
        model = keras.Model(x, L.Activation("softmax", dtype="float32")(h))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copy, changes = user_model.inference_copy(model)
    kinds = [type(lyr).__name__ for lyr in user_model.walk(copy)]
    assert "RandomFlip" not in kinds and "RandomRotation" not in kinds
    assert all(lyr.dtype_policy.compute_dtype == "float32" for lyr in user_model.walk(copy))
    assert any("mixed_float16" in c for c in changes) and sum("augmentation" in c for c in changes) == 2
    batch = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=5e-3)
    found, _ = user_model.normalizing_layers(copy)
    assert len(found) == 1 and found[0].endswith("(Rescaling)")
    plain = _model(keras, L.Dense(2))
    assert user_model.inference_copy(plain) == (plain, [])


def test_preprocess_input_inside_the_model_counts_as_normalization(keras):
    """TensorFlow's transfer-learning tutorial calls mobilenet_v2.preprocess_input inside the
    model: raw pixels go in, and the backbone's name must not add its mode on top."""
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35)
    x = keras.Input((32, 32, 3))
    h = base(keras.applications.mobilenet_v2.preprocess_input(x), training=False)
    model = keras.Model(x, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(h)))
    found, _ = user_model.normalizing_layers(model)
    assert any("TrueDivide" in f for f in found) and any("Subtract" in f for f in found)
    assert user_model.backbone(model) == "mobilenetv2"  # recognised, but normalization inside wins (sources.py)
    # A ResNet's residual Adds come after its first convolution: not normalization.
    resnet = keras.applications.ResNet50(input_shape=(32, 32, 3), include_top=False, weights=None)
    assert user_model.normalizing_layers(resnet) == ([], [])
    assert user_model.backbone(resnet) == "resnet50"


def test_lambda_before_the_network_means_asking_for_the_preprocessing(keras, tmp_path):
    """A Lambda(preprocess_input) in front of a recognised backbone: guessing the backbone's
    mode would normalize twice, so the export asks; the file loads only with --allow-lambda."""
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35)
    x = keras.Input((32, 32, 3))
    h = base(keras.layers.Lambda(lambda t: t / 127.5 - 1.0)(x))
    keras.Model(x, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))).save(
        tmp_path / "l.keras")
    with pytest.raises(EdgeClassifyError, match="--allow-lambda") as e:
        user_model.load(tmp_path / "l.keras")
    assert e.value.exit_code == 3
    from edge_classify.export import sources

    src = sources.from_file(tmp_path / "l.keras", allow_lambda=True)
    assert src.mode is None and "Lambda" in src.mode_reason
