"""``resize="bilinear"`` equals ``tf.image.resize``; ``raw``/``meanstd`` and the Keras modes
normalise as their formulas say; ``parse_preprocess`` accepts the CLI forms and rejects others.

Tolerance for bilinear vs TensorFlow: BILINEAR_TOL = 1e-3 on the 0..255 scale. Measured max
abs difference: 0.0 (TF 2.21, x86-64) on all 25 photos below at every size tested, down,
up, non-square and same size. 1e-3 leaves room for a TF build that rounds the lerps in
another order (a few float32 ulps of 255, ~1e-4) but is far below what computing the sample
positions differently costs: OpenCV's float32 INTER_LINEAR is off by 0.005-0.012
(``test_tolerance_rejects_opencv_bilinear``).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SKIMAGE_DATA
from edge_classify.runtime.errors import EXIT_USAGE, EdgeClassifyError
from edge_classify.runtime.images import preprocess
from edge_classify.runtime.model.contract import LabelSet, ModelContract, ModelInfo, PreprocessSpec
from edge_classify.runtime.model.preprocess_modes import meanstd_scale_warning, parse_preprocess

BILINEAR_TOL = 1e-3  # measured max 0.0; see the module docstring
SAMPLES = sorted((Path(__file__).resolve().parents[1] / "export" / "samples").glob("*.jpg"))
SIZES = [(224, 224), (96, 96), (32, 32), (224, 160), (17, 1000), (600, 700), (1, 1)]


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def decoded(photos) -> dict[str, np.ndarray]:
    """Every test photo as the runtime decodes it (uint8 HxWx3 BGR)."""
    assert len(SAMPLES) >= 4, "export/samples/*.jpg missing"
    return {p.name if p in photos else f"samples/{p.name}": preprocess.load(p) for p in [*photos, *SAMPLES]}


def tf_bilinear(tf, bgr: np.ndarray, size) -> np.ndarray:
    """TF's resize on the same pixels, RGB in and back to BGR for comparison."""
    out = tf.image.resize(bgr[:, :, ::-1], size, method="bilinear", antialias=False).numpy()
    return out[:, :, ::-1]


def bilinear(size) -> PreprocessSpec:
    return PreprocessSpec.keras("raw", size, resize="bilinear")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bilinear_matches_tf_image_resize(tf, decoded, size):
    worst = {}
    for name, img in decoded.items():
        got = preprocess.resize(img, bilinear(size))
        assert got.dtype == np.float32 and got.shape == (*size, 3)
        worst[name] = float(np.abs(got - tf_bilinear(tf, img, size)).max())
    assert max(worst.values()) <= BILINEAR_TOL, {k: v for k, v in worst.items() if v > BILINEAR_TOL}


def test_bilinear_same_size_is_the_pixels_as_float32(tf, decoded):
    img = decoded["chelsea.png"]
    got = preprocess.resize(img, bilinear(img.shape[:2]))
    assert got.dtype == np.float32 and np.array_equal(got, img)
    assert np.array_equal(got, tf_bilinear(tf, img, img.shape[:2]))  # TF does not skip it either
    assert not np.shares_memory(got, img)


@pytest.mark.parametrize("src,dst", [((1, 1), (5, 7)), ((2, 3), (9, 4)), ((7, 5), (3, 11)), ((40, 30), (41, 29))])
def test_bilinear_tiny_and_odd_shapes(tf, src, dst):
    img = np.random.default_rng(sum(src + dst)).integers(0, 256, (*src, 3), dtype=np.uint8)
    assert np.abs(preprocess.resize(img, bilinear(dst)) - tf_bilinear(tf, img, dst)).max() <= BILINEAR_TOL


def test_tolerance_rejects_opencv_bilinear(tf, decoded):
    """BILINEAR_TOL means something: the obvious OpenCV resize is outside it."""
    import cv2

    img = decoded["hubble_deep_field.jpg"]
    cv = cv2.resize(img.astype(np.float32), (224, 224), interpolation=cv2.INTER_LINEAR)
    assert np.abs(cv - tf_bilinear(tf, img, (224, 224))).max() > BILINEAR_TOL  # measured 0.0083


def test_prepare_dtype_follows_resize(photos):
    p = photos[1]
    assert preprocess.prepare(p, PreprocessSpec.keras("caffe", (64, 48))).dtype == np.uint8
    got = preprocess.prepare(p, PreprocessSpec.keras("caffe", (64, 48), "bilinear"))
    assert got.dtype == np.float32 and got.shape == (64, 48, 3)


# --- the whole image_dataset_from_directory path -----------------------------------------


def _dataset(tf, folder: Path, size):
    import keras

    ds = keras.utils.image_dataset_from_directory(str(folder), labels=None, image_size=size, shuffle=False,
                                                  batch_size=None, verbose=False)
    return [(Path(p), x.numpy()) for p, x in zip(ds.file_paths, ds)]


def test_png_pipeline_matches_image_dataset_from_directory(tf, tmp_path):
    """Lossless input: TF and OpenCV decode the same pixels, so only the resize could differ."""
    for name in ("astronaut.png", "coffee.png", "camera.png", "coins.png", "motorcycle_left.png", "ihc.png"):
        Image.open(SKIMAGE_DATA / name).convert("RGB").save(tmp_path / name)
    for size in [(224, 224), (96, 128), (600, 700)]:
        spec = bilinear(size)
        for path, want in _dataset(tf, tmp_path, size):
            got = preprocess.prepare(path, spec)[:, :, ::-1]
            assert np.abs(got - want).max() <= BILINEAR_TOL, (path.name, size)  # measured 0.0


def test_jpeg_pipeline_differs_only_by_tf_fast_dct(tf, tmp_path):
    """TF's decode_image uses libjpeg's INTEGER_FAST DCT by default; OpenCV (and PIL, and
    so load_img) the accurate one. With INTEGER_ACCURATE, TF's whole path equals ours."""
    import shutil

    jpegs = [*SAMPLES, SKIMAGE_DATA / "rocket.jpg", SKIMAGE_DATA / "hubble_deep_field.jpg", SKIMAGE_DATA / "retina.jpg"]
    for i, p in enumerate(jpegs):
        shutil.copy(p, tmp_path / f"{i:02d}-{p.name}")
    size = (224, 224)
    diffs = []
    for path, want in _dataset(tf, tmp_path, size):
        got = preprocess.prepare(path, bilinear(size))[:, :, ::-1]
        raw = tf.io.read_file(str(path))
        accurate = tf.image.resize(tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE"), size, "bilinear")
        assert np.abs(got - accurate.numpy()).max() <= BILINEAR_TOL, path.name  # measured 0.0
        diffs.append(np.abs(got - want))
    # Decoder noise, documented in preprocess.py: measured max 14.0, mean <= 1.14 per image.
    assert 0 < max(d.max() for d in diffs) <= 24
    assert max(d.mean() for d in diffs) <= 2.0


# --- normalisation: each mode against its formula, computed here in float64 ---------------

# Written out here, not imported from the code under test: Keras' imagenet_utils constants.
CAFFE_BGR = np.array([103.939, 116.779, 123.68])
TORCH_MEAN, TORCH_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
MS_MEAN, MS_STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])

FORMULAS = {  # float64 RGB pixels in 0..255 -> expected model input
    "raw": lambda rgb: rgb,
    "tf": lambda rgb: rgb / 127.5 - 1.0,
    "torch": lambda rgb: (rgb / 255.0 - TORCH_MEAN) / TORCH_STD,
    "caffe": lambda rgb: rgb[..., ::-1] - CAFFE_BGR,
    "meanstd": lambda rgb: (rgb - MS_MEAN) / MS_STD,
}
# float32 rounding: each float32 step rounds to half an ulp of its result; the largest
# intermediate is ~255 (ulp 1.5e-5) for caffe/meanstd, ~2 for tf, ~1 then /std for torch.
ATOL = {"raw": 0.0, "tf": 1e-6, "torch": 2e-6, "caffe": 3e-5, "meanstd": 2e-6}


def _spec(mode, size, resize):
    if mode == "meanstd":
        return PreprocessSpec.meanstd(tuple(MS_MEAN), tuple(MS_STD), size, resize)
    return PreprocessSpec.keras(mode, size, resize)


@pytest.mark.parametrize("resize", ["nearest", "bilinear"])
@pytest.mark.parametrize("mode", list(FORMULAS))
def test_normalize_matches_formula(mode, resize, decoded):
    size = (160, 192)
    spec = _spec(mode, size, resize)
    batch = np.stack([preprocess.resize(decoded[n], spec) for n in ("chelsea.png", "rocket.jpg", "camera.png")])
    before = batch.copy()
    got = preprocess.normalize(batch, spec)
    want = FORMULAS[mode](batch[..., ::-1].astype(np.float64))  # BGR -> RGB, exact in float64
    assert got.dtype == np.float32 and got.shape == (3, *size, 3)
    assert np.abs(got - want).max() <= ATOL[mode]
    assert np.array_equal(batch, before) and not np.shares_memory(got, batch)


def test_raw_is_rgb_pixels_and_a_fresh_array(decoded):
    img = decoded["coffee.png"]
    spec = PreprocessSpec.keras("raw", img.shape[:2])
    batch = img[None]
    out = preprocess.normalize(batch, spec)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable
    assert np.array_equal(out[0], img[:, :, ::-1])
    out += 1  # the caller's image must not change
    assert np.array_equal(batch[0], img)
    nchw = preprocess.normalize(batch, PreprocessSpec("raw", "RGB", None, None, img.shape[:2], layout="NCHW"))
    assert np.array_equal(nchw[0], img[:, :, ::-1].transpose(2, 0, 1))


# --- the spec and its command-line syntax --------------------------------------------------


def test_raw_and_meanstd_specs():
    raw = PreprocessSpec.keras("raw", (300, 260))
    assert (raw.mode, raw.color_order, raw.mean, raw.std, raw.resize) == ("raw", "RGB", None, None, "nearest")
    ms = PreprocessSpec.meanstd(127.5, (1, 2, 3), (8, 8), "bilinear")
    assert (ms.color_order, ms.mean, ms.std, ms.resize) == ("RGB", (127.5,) * 3, (1.0, 2.0, 3.0), "bilinear")
    assert PreprocessSpec.keras("tf", (224, 224)) == PreprocessSpec("tf", "RGB", None, None, (224, 224))


@pytest.mark.parametrize("kwargs", [
    {"mode": "raw"},  # default mean is caffe's: raw would silently ignore it
    {"mode": "meanstd", "color_order": "RGB", "mean": (1.0, 2.0, 3.0), "std": (1.0, 0.0, 1.0)},
    {"mode": "meanstd", "color_order": "RGB", "mean": (float("nan"), 2.0, 3.0), "std": (1.0, 1.0, 1.0)},
    {"resize": "area"},
])  # fmt: skip
def test_invalid_new_specs_rejected(kwargs):
    with pytest.raises(EdgeClassifyError):
        PreprocessSpec(**kwargs)


@pytest.mark.parametrize("spec", [
    PreprocessSpec.keras("raw", (300, 260), "bilinear"),
    PreprocessSpec.meanstd((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), (97, 131), "bilinear"),
    PreprocessSpec.keras("torch", (224, 224), "bilinear"),
])  # fmt: skip
def test_contract_roundtrip_keeps_resize_and_mode(spec):
    assert PreprocessSpec.from_dict(asdict(spec)) == spec
    labels = LabelSet(("a", "b", "c"), (None, None, None))
    c = ModelContract(spec, labels, ModelInfo("net", "fp32", num_classes=3))
    back = ModelContract.from_metadata(c.to_metadata()).preprocess
    assert back == spec and back.resize == "bilinear" and back.mode == spec.mode


@pytest.mark.parametrize("text,mode,mean,std", [
    ("caffe", "caffe", (103.939, 116.779, 123.68), None),
    (" TF ", "tf", None, None),
    ("torch", "torch", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("raw", "raw", None, None),
    ("mean=123.675,116.28,103.53:std=58.395,57.12,57.375", "meanstd", tuple(MS_MEAN), tuple(MS_STD)),
    ("mean=127.5:std=127.5", "meanstd", (127.5,) * 3, (127.5,) * 3),
    ("std = 2,4,8 : mean = 0", "meanstd", (0.0,) * 3, (2.0, 4.0, 8.0)),
    ("mean=-1e2,0,1e2:std=1.5", "meanstd", (-100.0, 0.0, 100.0), (1.5,) * 3),
])  # fmt: skip
def test_parse_preprocess_accepts(text, mode, mean, std):
    spec = parse_preprocess(text, (120, 90), "bilinear")
    assert (spec.mode, spec.mean, spec.std) == (mode, mean, std)
    assert spec.input_size == (120, 90) and spec.resize == "bilinear"
    assert spec.color_order == ("BGR" if mode == "caffe" else "RGB")
    assert meanstd_scale_warning(spec) is None


@pytest.mark.parametrize("text", [
    "", "inception", "Caffe2", "mean=1,2:std=3", "mean=1,2,3,4:std=1", "mean=1,2,3", "std=1",
    "mean=a:std=1", "mean=1:std=0", "mean=1:std=-2", "mean=nan:std=1", "mean=1:std=inf",
    "mean=1:std=1:mean=2", "mean=1;std=2", "caffe:std=1", "mean=:std=1", "mean=1,,2:std=1",
])  # fmt: skip
def test_parse_preprocess_rejects(text):
    with pytest.raises(EdgeClassifyError) as info:
        parse_preprocess(text, (224, 224))
    assert info.value.exit_code == EXIT_USAGE == 2
    assert "caffe, tf, torch, raw" in info.value.message and "mean=R,G,B:std=R,G,B" in info.value.message


def test_parse_preprocess_rejects_bad_resize():
    with pytest.raises(EdgeClassifyError) as info:
        parse_preprocess("tf", (224, 224), "bicubic")
    assert info.value.exit_code == 2


def test_zero_to_one_constants_accepted_with_a_warning():
    spec = parse_preprocess("mean=0.485,0.456,0.406:std=0.229,0.224,0.225", (224, 224))
    assert spec.mode == "meanstd" and spec.mean == (0.485, 0.456, 0.406)
    warning = meanstd_scale_warning(spec)
    assert warning and "255" in warning and "torch" in warning
    assert meanstd_scale_warning(parse_preprocess("mean=0.5:std=1", (8, 8))) is not None
    assert meanstd_scale_warning(parse_preprocess("mean=0.5:std=2", (8, 8))) is None  # not all <= 1
