"""The runtime's OpenCV preprocessing must equal Keras' pipeline bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import SKIMAGE_DATA, TARGET, encode, keras_pipeline
from edge_classify.runtime.images import preprocess
from edge_classify.runtime.images.preprocess import DecodeOptions
from edge_classify.runtime.model.contract import PreprocessSpec

SPEC = PreprocessSpec.keras("caffe", TARGET)


def ours(paths, options=preprocess.DEFAULT_DECODE) -> np.ndarray:
    return preprocess.preprocess(list(paths), SPEC, options)


def test_real_photos_bit_exact(photos):
    got, want = ours(photos), keras_pipeline(photos)
    assert got.dtype == want.dtype == np.float32
    assert got.shape == want.shape == (len(photos), 224, 224, 3)
    assert np.abs(got - want).max() == 0.0


def test_every_format_bit_exact(format_variants):
    """JPEG baseline/progressive/gray, PNG RGB/RGBA/palette/gray, BMP, TIFF, WebP, GIF."""
    kinds = {name.split("-", 1)[-1].rsplit(".", 1)[0] for name in format_variants}
    assert {"jpeg-baseline", "jpeg-progressive", "jpeg-gray", "png-rgb", "png-rgba", "png-palette",
            "png-gray", "bmp", "tiff", "webp-lossy", "webp-lossless", "gif"} <= kinds  # fmt: skip
    mismatched = {}
    for name, path in format_variants.items():
        d = np.abs(ours([path]) - keras_pipeline([path])).max()
        if d != 0.0:
            mismatched[name] = float(d)
    assert not mismatched


def test_bytes_and_arrays_match_paths(photos):
    paths = photos[:3]
    from_bytes = ours([p.read_bytes() for p in paths])
    rgb_arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    from_rgb = ours(rgb_arrays)
    from_bgr = preprocess.preprocess(
        [a[:, :, ::-1] for a in rgb_arrays], SPEC, DecodeOptions(array_color_order="BGR")
    )
    from_float = ours([a.astype(np.float32) for a in rgb_arrays])  # img_to_array output
    want = keras_pipeline(paths)
    for got in (from_bytes, from_rgb, from_bgr, from_float):
        assert np.abs(got - want).max() == 0.0


def test_grayscale_array_is_replicated():
    gray = (np.arange(50 * 40) % 256).astype(np.uint8).reshape(50, 40)
    a = preprocess.from_array(gray)
    assert a.shape == (50, 40, 3) and (a[:, :, 0] == gray).all() and (a[:, :, 2] == gray).all()


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.full((4, 4, 3), 300.0), np.zeros((0, 5, 3), np.uint8)])
def test_bad_arrays_are_input_errors(bad):
    from edge_classify.runtime.errors import InputError

    with pytest.raises(InputError):
        preprocess.from_array(bad)


def test_resize_matches_pil_nearest_for_many_sizes():
    """PIL NEAREST == OpenCV INTER_NEAREST_EXACT for down- and up-scaling, odd ratios."""
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (3, 7), (223, 225), (224, 300), (450, 224), (1000, 999), (2048, 1365)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(img).resize((224, 224), Image.NEAREST))
        assert np.array_equal(preprocess.resize(img, SPEC), want), (h, w)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_normalize_modes_match_keras(mode, photos):
    """Every Keras preprocessing mode the contract names is reproduced exactly."""
    import keras
    from keras.applications import imagenet_utils

    paths = photos[:4]
    arrays = np.stack([keras.utils.img_to_array(keras.utils.load_img(str(p), target_size=TARGET)) for p in paths])
    want = imagenet_utils.preprocess_input(arrays.copy(), mode=mode)
    got = preprocess.preprocess(paths, PreprocessSpec.keras(mode, TARGET))
    assert np.abs(got - want).max() == 0.0


def test_meanstd_and_nchw():
    spec = PreprocessSpec("meanstd", "RGB", (10.0, 20.0, 30.0), (2.0, 4.0, 8.0), (8, 6), layout="NCHW")
    img = np.random.default_rng(1).integers(0, 256, (8, 6, 3), dtype=np.uint8)  # RGB
    got = preprocess.preprocess([img], spec)
    want = ((img.astype(np.float32) - np.float32([10, 20, 30])) / np.float32([2, 4, 8])).transpose(2, 0, 1)
    assert got.shape == (1, 3, 8, 6)
    assert np.array_equal(got[0], want)


# --- Keras quirks: documented choices ------------------------------------------------


@pytest.fixture(scope="module")
def rotated_jpeg(tmp_path_factory):
    """A JPEG stored landscape with EXIF orientation 6 (display rotated 90 degrees)."""
    img = Image.open(SKIMAGE_DATA / "chelsea.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path_factory.mktemp("exif") / "rotated.jpg"
    img.save(p, "JPEG", quality=90, exif=exif)
    return p


def test_exif_orientation_ignored_by_default_like_keras(rotated_jpeg):
    assert np.abs(ours([rotated_jpeg]) - keras_pipeline([rotated_jpeg])).max() == 0.0


def test_exif_orientation_applied_on_request(rotated_jpeg, tmp_path):
    upright = ImageOps.exif_transpose(Image.open(rotated_jpeg)).convert("RGB")
    assert upright.size[0] < upright.size[1]  # the tag really rotates it
    ref = tmp_path / "upright.png"
    upright.save(ref)  # lossless copy of the decoded, rotated pixels
    got = ours([rotated_jpeg], DecodeOptions(exif_orientation=True))
    assert np.abs(got - keras_pipeline([ref])).max() == 0.0
    assert np.abs(got - ours([rotated_jpeg])).max() > 0


@pytest.fixture(scope="module")
def gray16_png(tmp_path_factory):
    import cv2

    gray = np.asarray(Image.open(SKIMAGE_DATA / "camera.png").convert("L")).astype(np.uint16)
    g16 = gray * 257 + np.uint16(3)  # full 16-bit range, low byte not a copy of the high byte
    p = tmp_path_factory.mktemp("g16") / "camera16.png"
    assert cv2.imwrite(str(p), g16)
    return p, g16


def test_16bit_gray_clip_mode_reproduces_keras(gray16_png):
    path, _ = gray16_png
    got = ours([path], DecodeOptions(sixteen_bit="clip"))
    assert np.abs(got - keras_pipeline([path])).max() == 0.0


def test_16bit_gray_default_scales_instead_of_clipping(gray16_png):
    path, g16 = gray16_png
    img = preprocess.load(path)
    assert np.array_equal(img[:, :, 0], (g16 >> 8).astype(np.uint8))
    assert np.array_equal(img[:, :, 0], img[:, :, 2])
    # Keras (PIL) saturates nearly everything: the documented reason not to copy it.
    keras_u8 = keras_pipeline([path])[0] + np.float32([103.939, 116.779, 123.68])
    assert (np.round(keras_u8) >= 255).mean() > 0.9


def test_cmyk_jpeg_within_one_level(tmp_path):
    img = Image.open(SKIMAGE_DATA / "coffee.png").convert("RGB").convert("CMYK")
    p = tmp_path / "cmyk.jpg"
    img.save(p, "JPEG", quality=90)
    import keras

    want = np.asarray(keras.utils.load_img(str(p)), dtype=np.int16)  # RGB
    got = preprocess.load(p)[:, :, ::-1].astype(np.int16)
    d = np.abs(got - want)
    assert d.max() == 1  # rounding of CMYK->RGB differs (OpenCV /256, PIL /255): documented


def test_decode_rejects_truncated_and_garbage(photos):
    from edge_classify.runtime.errors import InputError

    jpeg = encode(Image.open(photos[1]).convert("RGB"), "JPEG", quality=90)
    png = (SKIMAGE_DATA / "coffee.png").read_bytes()
    for data in (jpeg[: len(jpeg) // 2], jpeg[:-200], png[: len(png) // 2], b"not an image at all", b"\x89PNG\r\n"):
        with pytest.raises(InputError):
            preprocess.decode(data)
    with pytest.raises(InputError):
        preprocess.decode(b"")
