"""Shared, expensive fixtures (session scope): real photos, format variants, a stand-in
Keras model whose predictions depend on its input, and its exported ONNX models.

Real ImageNet weights cannot be downloaded here, and a freshly initialised ResNet50
predicts the same class for every image, which would make top-k parity meaningless.
The stand-in re-estimates every BatchNormalization layer's moving statistics on a batch
of real photos (one forward pass in training mode with momentum 0); its top-1 then
varies across inputs, which ``test_standin_is_input_sensitive`` checks before any top-k
comparison is trusted.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import skimage  # noqa: E402
from PIL import Image  # noqa: E402

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
# Real photographs shipped inside scikit-image (no download needed).
PHOTO_FILES = [
    "astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg",
    "hubble_deep_field.jpg", "retina.jpg", "camera.png", "brick.png", "grass.png",
    "gravel.png", "coins.png", "moon.png", "ihc.png", "clock_motion.png", "cell.png",
    "page.png", "text.png", "color.png", "logo.png", "horse.png",
]  # fmt: skip
# Half of them calibrate the stand-in's BatchNorm statistics; all are used for parity.
CALIBRATION_FILES = PHOTO_FILES[::2]

TARGET = (224, 224)


def script(name: str) -> str:
    """The installed console script (see benchmarks/cold_start.py); fails clearly when missing."""
    from edge_classify.benchmarks.cold_start import installed_script

    found = installed_script(name)
    assert found, f"console script {name!r} is not installed: pip install -e '.[cpu,export,test]'"
    return found


def keras_pipeline(paths) -> np.ndarray:
    """What a Keras user runs: load_img -> img_to_array -> resnet50.preprocess_input."""
    import keras
    from keras.applications.resnet50 import preprocess_input

    arrays = [keras.utils.img_to_array(keras.utils.load_img(str(p), target_size=TARGET)) for p in paths]
    return preprocess_input(np.stack(arrays))


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    """Default model location and optimised-graph cache in a temp dir, never ~/.cache."""
    home = tmp_path_factory.mktemp("edge-home")
    old = os.environ.get("EDGE_CLASSIFY_HOME")
    os.environ["EDGE_CLASSIFY_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("EDGE_CLASSIFY_HOME", None)
    else:
        os.environ["EDGE_CLASSIFY_HOME"] = old


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    paths = [SKIMAGE_DATA / f for f in PHOTO_FILES]
    missing = [p for p in paths if not p.is_file()]
    assert not missing, f"scikit-image is missing bundled photos: {missing}"
    return paths


def _save(img: Image.Image, path: Path, fmt: str, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


@pytest.fixture(scope="session")
def format_variants(tmp_path_factory) -> dict[str, Path]:
    """The same real photos in every 8-bit format/mode Keras users feed: name -> file."""
    d = tmp_path_factory.mktemp("formats")
    out: dict[str, Path] = {}
    for src in ("chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png"):
        stem = src.split(".")[0]
        rgb = Image.open(SKIMAGE_DATA / src).convert("RGB")
        w, h = rgb.size
        alpha = Image.fromarray((np.add.outer(np.arange(h), np.arange(w)) % 256).astype(np.uint8))
        rgba = rgb.copy()
        rgba.putalpha(alpha)
        gray = rgb.convert("L")
        pal_trns = rgb.quantize(64)
        variants = {
            "jpeg-baseline.jpg": (rgb, "JPEG", {"quality": 90}),
            "jpeg-progressive.jpg": (rgb, "JPEG", {"quality": 85, "progressive": True}),
            "jpeg-444.jpg": (rgb, "JPEG", {"quality": 95, "subsampling": 0}),
            "jpeg-gray.jpg": (gray, "JPEG", {"quality": 90}),
            "png-rgb.png": (rgb, "PNG", {}),
            "png-rgba.png": (rgba, "PNG", {}),
            "png-palette.png": (rgb.quantize(256), "PNG", {}),
            "png-palette-trns.png": (pal_trns, "PNG", {"transparency": 5}),
            "png-gray.png": (gray, "PNG", {}),
            "png-gray-alpha.png": (rgb.convert("LA"), "PNG", {}),
            "png-1bit.png": (rgb.convert("1"), "PNG", {}),
            "bmp.bmp": (rgb, "BMP", {}),
            "tiff.tif": (rgb, "TIFF", {}),
            "tiff-lzw.tif": (rgb, "TIFF", {"compression": "tiff_lzw"}),
            "webp-lossy.webp": (rgb, "WEBP", {"quality": 80}),
            "webp-lossless.webp": (rgb, "WEBP", {"lossless": True}),
            "gif.gif": (rgb, "GIF", {}),
        }
        for name, (img, fmt, kw) in variants.items():
            out[f"{stem}-{name}"] = _save(img, d / f"{stem}-{name}", fmt, **kw)
    # Images already at 224x224 (load_img skips the resize) and smaller than it (upscale).
    small = Image.open(SKIMAGE_DATA / "coffee.png").convert("RGB")
    out["exact-224.png"] = _save(small.resize(TARGET), d / "exact-224.png", "PNG")
    out["tiny-61x37.jpg"] = _save(small.resize((61, 37)), d / "tiny-61x37.jpg", "JPEG", quality=90)
    out["animated.gif"] = SKIMAGE_DATA / "no_time_for_that_tiny.gif"
    return out


@pytest.fixture(scope="session")
def standin(tmp_path_factory, photos):
    """(keras model, weights file): ResNet50 with BatchNorm statistics from real photos."""
    import keras

    keras.utils.set_random_seed(20261130)
    model = keras.applications.ResNet50(weights=None)
    calib = [p for p in photos if p.name in CALIBRATION_FILES]
    x = keras_pipeline(calib)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # moving stats := this batch's stats
    model(x, training=True)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.99
    # A random head spreads logits over ~5 units (top-1 ~1%, nearly flat). Make it a
    # nearest-prototype head instead: each calibration photo's centred feature vector
    # becomes one class's weights, so photos land on different classes with realistic,
    # peaked probabilities. Other classes keep small random weights.
    feats = np.asarray(keras.Model(model.input, model.get_layer("avg_pool").output)(x))
    mu = feats.mean(0)
    centred = feats - mu
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 1e-3, (feats.shape[1], 1000)).astype(np.float32)
    classes = np.linspace(0, 999, len(feats) + 2).astype(int)[1:-1]
    kernel[:, classes] = (centred / norms * (12.0 / np.median(norms))).T
    model.get_layer("predictions").set_weights([kernel, (-mu @ kernel).astype(np.float32)])
    path = tmp_path_factory.mktemp("standin") / "resnet50-standin.weights.h5"
    model.save_weights(str(path))
    return model, path


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory) -> Path:
    """Where tests/trained_models.py trains its classifiers: once per session, shared by modules."""
    return tmp_path_factory.mktemp("trained")


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory, photos) -> Path:
    """A folder of real photos for INT8 calibration (scikit-image's, copied)."""
    import shutil

    d = tmp_path_factory.mktemp("calib")
    for p in photos:
        shutil.copy(p, d / p.name)
    return d


@pytest.fixture(scope="session")
def exported(standin, calib_dir, tmp_path_factory):
    """FP32 + FP16 + INT8 ONNX exports of the stand-in, made by the product's own export stage."""
    from edge_classify.export.pipeline import export_model
    from edge_classify.export.request import ExportRequest

    _, weights = standin
    out = tmp_path_factory.mktemp("export") / "standin.onnx"
    result = export_model(ExportRequest(out, arch="resnet50", weights=str(weights), fp16=True, int8=True,
                                        calib=str(calib_dir)))
    return {f.precision: f.path for f in result.files}


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()
