"""Fast decode (runtime/images/fast_decode.py): big JPEGs decoded at 1/2, 1/4 or 1/8 scale
in the DCT domain, never below the model's input size, orientation as in exact mode, said in
every row, used by ``auto`` only on the model's evidence, and behind the same guards as the
exact decode (the hostile-input corpus is refused with the same messages)."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import fuzzing
import tiny_models
from conftest import SKIMAGE_DATA
from edge_classify.export import fast_decode as export_fast_decode
from edge_classify.runtime import Classifier, EngineOptions
from edge_classify.runtime.apps.classify import main
from edge_classify.runtime.errors import InputError
from edge_classify.runtime.images import fast_decode, formats, preprocess
from edge_classify.runtime.images.preprocess import DecodeOptions
from test_hostile_inputs import cut_with_end_marker, hole_in_scan

EXACT, FAST = DecodeOptions(decode="exact"), DecodeOptions(decode="fast")
PASSING = {"images": 120, "top1_agreement": 1.0, "top5_overlap": 1.0, "max_abs_diff": 0.01, "mean_abs_diff": 1e-4,
           "margin": fast_decode.MARGIN, "passed": True}


def picture(width: int, height: int) -> np.ndarray:
    """An asymmetric BGR picture (a photo, resized): any rotation or flip shows."""
    photo = cv2.imread(str(SKIMAGE_DATA / "astronaut.png"))[:400, :300]
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_LINEAR)


def jpeg(img: np.ndarray, orientation: int | None = None, **kw) -> bytes:
    rgb = Image.fromarray(np.ascontiguousarray(img[:, :, ::-1]))
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("fast-tiny")
    return {"none": tiny_models.make(d / "plain.onnx"),
            "passing": tiny_models.make(d / "passing.onnx", parity={"fast_decode": PASSING}),
            "failing": tiny_models.make(d / "failing.onnx",
                                        parity={"fast_decode": {**PASSING, "top1_agreement": 0.95, "passed": False}})}


# --- the scale: the largest that keeps the input size ------------------------------------
TARGETS = [(224, 224), (224, 160), (160, 224), (32, 32), (299, 299), (17, 23)]


def edge_sizes(t: int) -> list[int]:
    """Sizes at and around each scale's boundary for a target side ``t``, odd ones included."""
    out = {t, t + 1, 2 * t - 1}
    for s in fast_decode.SCALES:
        out |= {s * t - 1, s * t, s * t + 1, s * (t - 1) + 1, s * t + s - 1, s * t + s + 1}
    return sorted(v for v in out if v > 0)


@pytest.mark.parametrize("target", TARGETS, ids=[f"{h}x{w}" for h, w in TARGETS])
def test_the_scale_never_leaves_the_image_below_the_target_and_is_the_largest_that_does(target):
    th, tw = target
    checked = 0
    for width in edge_sizes(tw) + edge_sizes(th):
        for height in edge_sizes(th) + edge_sizes(tw):
            for orientation in (1, 6):
                s = fast_decode.scale_for(width, height, target, orientation)
                w, h = (height, width) if orientation == 6 else (width, height)
                assert s == 1 or (-(-w // s) >= tw and -(-h // s) >= th), (width, height, orientation, s)
                bigger = [b for b in fast_decode.SCALES if b > s]
                assert all(-(-w // b) < tw or -(-h // b) < th for b in bigger), (width, height, orientation, s)
                checked += 1
    assert checked > 500  # scale 1 is the exact decode: a smaller image is upsampled as always


@pytest.mark.parametrize("target", [(32, 32), (17, 23), (224, 160)], ids=["32x32", "17x23", "224x160"])
def test_reduced_decodes_are_never_below_the_target(target):
    """The same rule, against what libjpeg really produces (it rounds scaled sizes up)."""
    th, tw = target
    sizes = [(w, h) for w in edge_sizes(tw)[::2] for h in edge_sizes(th)[1::3]]
    used = set()
    for w, h in sizes:
        d = preprocess.decode_at(jpeg(picture(w, h)), FAST, target)
        assert d.image.shape[0] >= th and d.image.shape[1] >= tw, (w, h, d.decode)
        s = fast_decode.scale_for(w, h, target)
        assert d.decode == fast_decode.label(s) and d.image.shape[:2] == (-(-h // s), -(-w // s))
        used.add(d.decode)
    assert used == {"exact", "fast 1/2", "fast 1/4", "fast 1/8"}


# --- orientation ---------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 7, 8])
def test_exif_orientation_is_handled_as_in_exact_mode(orientation):
    """Same picture, same way up: the fast decode, resized to the exact decode's size, is
    near it (a reduced decode averages blocks), and far from every other orientation."""
    data = jpeg(picture(1200, 800), orientation)
    target = (96, 64)  # not square: orientations 5-8 swap which side must cover which
    for exif in (True, False):
        opts = DecodeOptions(exif_orientation=exif)
        exact = preprocess.decode_at(data, opts, target).image
        fast = preprocess.decode_at(data, DecodeOptions(exif_orientation=exif, decode="fast"), target)
        assert fast.decode != "exact" and fast.image.shape[0] >= target[0] and fast.image.shape[1] >= target[1]
        assert (fast.image.shape[0] > fast.image.shape[1]) == (exact.shape[0] > exact.shape[1])
        small = cv2.resize(exact, fast.image.shape[1::-1], interpolation=cv2.INTER_AREA).astype(np.int16)
        same = np.abs(small - fast.image).mean()
        assert same < 4, (orientation, exif, same)
        for other in (cv2.rotate(small, cv2.ROTATE_180), small[::-1], small[:, ::-1]):
            assert np.abs(other - fast.image).mean() > 5 * same


def test_exif_orientation_parser_reads_what_the_decoder_applies():
    for o in range(1, 9):
        assert formats.jpeg_orientation(jpeg(picture(64, 48), o)) == o
    assert formats.jpeg_orientation(jpeg(picture(64, 48))) == 1
    assert formats.jpeg_orientation(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\xff\xff") == 1  # cut short
    assert formats.jpeg_orientation(b"not a jpeg") == 1


# --- which JPEGs, and which formats ----------------------------------------------------------
def test_progressive_and_restart_marker_jpegs_decode_fast():
    img = picture(1000, 750)
    target = (64, 64)
    baseline = preprocess.decode_at(jpeg(img), FAST, target)
    progressive = preprocess.decode_at(jpeg(img, progressive=True), FAST, target)
    ok, restart = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_RST_INTERVAL, 8])
    assert ok and b"\xff\xd0" in restart.tobytes()
    restarts = preprocess.decode_at(restart.tobytes(), FAST, target)
    assert baseline.decode == progressive.decode == restarts.decode == "fast 1/8"
    for d in (progressive, restarts):
        assert d.image.shape == baseline.image.shape and not d.notes
        assert np.abs(d.image.astype(np.int16) - baseline.image).mean() < 3


@pytest.mark.parametrize("kind", ["png", "webp", "small-jpeg", "bmp"])
def test_other_formats_and_small_jpegs_decode_exactly(kind):
    img = picture(1000, 700)
    if kind == "small-jpeg":
        data = jpeg(picture(447, 300))  # under twice 224 in width: no scale keeps 224x224
    else:
        ok, buf = cv2.imencode({"png": ".png", "webp": ".webp", "bmp": ".bmp"}[kind], img)
        data = buf.tobytes()
    fast = preprocess.decode_at(data, FAST, (224, 224))
    assert fast.decode == "exact"
    assert np.array_equal(fast.image, preprocess.decode_at(data, EXACT, (224, 224)).image)


def test_exact_mode_and_no_target_are_bit_exact():
    data = jpeg(picture(1000, 700))
    full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert np.array_equal(preprocess.decode_at(data, EXACT, (32, 32)).image, full)
    assert np.array_equal(preprocess.decode_at(data, FAST).image, full)  # no target: nothing to scale toward
    assert np.array_equal(preprocess.decode(data, FAST), full)


# --- the same guards ---------------------------------------------------------------------------
def outcome(data: bytes, options: DecodeOptions, target=(8, 8)) -> str:
    try:
        preprocess.decode_at(data, options, target)
    except InputError as exc:
        return f"refused: {exc.message}"
    return "ok"


def test_hostile_corpus_is_refused_exactly_as_before_in_fast_mode():
    """A tiny target makes every JPEG over 16 pixels a reduced decode."""
    rocket = (SKIMAGE_DATA / "rocket.jpg").read_bytes()
    cases = {p.name: p.read_bytes() for p in sorted(fuzzing.CORPUS.iterdir())}
    cases.update({"rocket-cut": cut_with_end_marker(rocket), "rocket-hole": hole_in_scan(rocket)})
    for name, data in cases.items():
        before = outcome(data, EXACT)
        assert outcome(data, FAST) == before, name
        assert before.split(":")[0] == ("refused" if name.startswith("rocket-") else name.split("-", 1)[0]), name
    assert preprocess.decode_at(rocket, FAST, (8, 8)).decode == "fast 1/8"
    # the pixel cap judges the declared size, not the reduced one
    with pytest.raises(InputError, match="--max-pixels"):
        preprocess.decode_at(rocket, DecodeOptions(decode="fast", max_pixels=100_000), (8, 8))


FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
JPEG_SEEDS = {n: d for n, d in fuzzing.seeds().items() if d[:3] == b"\xff\xd8\xff"}


@FUZZ
@given(name=st.sampled_from(sorted(JPEG_SEEDS)), rnd=st.randoms(use_true_random=False))
def test_mutated_jpegs_get_the_same_verdict_in_fast_mode(name, rnd):
    data = fuzzing.mutate(JPEG_SEEDS[name], rnd, list(JPEG_SEEDS.values()))
    assert outcome(data, FAST) == outcome(data, EXACT)


# --- the choice: auto on evidence only, and said in every row -------------------------------------
def test_auto_refuses_without_evidence_and_uses_fast_with_it(tiny):
    auto = DecodeOptions(decode="auto")
    cpu = EngineOptions(providers="cpu")
    none = Classifier(tiny["none"], cpu, decode=auto)
    assert none.decode_options.decode == "exact" and "no fast-decode fidelity figure" in none.decode_reason
    failing = Classifier(tiny["failing"], cpu, decode=auto)
    assert failing.decode_options.decode == "exact" and "below the bar" in failing.decode_reason
    passing = Classifier(tiny["passing"], cpu, decode=auto)
    assert passing.decode_options.decode == "fast" and "measured at export" in passing.decode_reason
    # what the user names wins, either way; the library's default is exact
    assert Classifier(tiny["passing"], cpu).decode_options.decode == "exact"
    assert Classifier(tiny["none"], cpu, decode=FAST).decode_options.decode == "fast"


@pytest.mark.parametrize("figure", [
    None, {}, {**PASSING, "images": 99}, {**PASSING, "mean_abs_diff": 0.05}, {**PASSING, "margin": 2.0},
    {**PASSING, "top1_agreement": "x"}, {k: v for k, v in PASSING.items() if k != "images"}])
def test_auto_needs_a_whole_figure_at_the_bar(figure):
    assert fast_decode.choose("auto", figure)[0] == "exact"
    assert fast_decode.choose("auto", PASSING)[0] == "fast"


def test_rows_say_which_decode_ran(tiny, tmp_path, capfd):
    big, small = tmp_path / "big.jpg", tmp_path / "small.jpg"
    big.write_bytes(jpeg(picture(2000, 1800)))
    small.write_bytes(jpeg(picture(300, 300)))
    png = tmp_path / "big.png"
    cv2.imwrite(str(png), picture(2000, 1800))
    clf = Classifier(tiny["none"], EngineOptions(providers="cpu"), decode=FAST)
    res = clf.classify([str(big), str(small), str(png), picture(50, 40)])
    assert [r.decode for r in res] == ["fast 1/8", "exact", "exact", None]
    assert clf.row(res[0])["decode"] == "fast 1/8" and "decode" not in clf.row(res[3])
    # the command line: auto (the default) on a model with evidence, and --decode exact
    for argv, want in ((["--model", tiny["passing"]], "fast 1/8"), (["--model", tiny["passing"], "--decode", "exact"],
                                                                     "exact"), (["--model", tiny["none"]], "exact")):
        assert main([str(a) for a in argv] + ["--json", str(big)]) == 0
        out, err = capfd.readouterr()
        assert json.loads(out)["decode"] == want
        assert ("decode: fast" in err) == (want != "exact")


def test_export_figure_on_a_model(tmp_path, photos):
    """export/fast_decode.measure: one comparison per photo and scale, and the figure auto reads."""
    small = tiny_models.make(tmp_path / "t32.onnx", graph_input_size=(32, 32), contract_input_size=(32, 32))
    clf = Classifier(small, EngineOptions(providers="cpu"))  # 32x32: the 1/2 and 1/4 sizes stay small
    figure = export_fast_decode.measure(clf.run, clf.contract.preprocess, photos[:3])
    assert figure["images"] == 9 and set(figure["scales"]) == {"fast 1/2", "fast 1/4", "fast 1/8"}
    assert all(v["images"] == 3 for v in figure["scales"].values())
    assert figure["top1_agreement"] == 1.0 and figure["passed"] is False  # 9 comparisons are no evidence
    assert fast_decode.choose("auto", figure)[0] == "exact"
    assert fast_decode.choose("auto", {**figure, "images": 120})[0] == "fast"
    json.dumps(figure)  # it goes into the contract as JSON


def test_camera_jpegs_are_camera_like():
    data = export_fast_decode.camera_jpeg(picture(320, 240), 3264, 2448, quality=90)
    h = formats.read_header(data)
    assert (h.width, h.height) == (3264, 2448) and 1.5e6 < len(data) < 8e6
    prog = export_fast_decode.camera_jpeg(picture(64, 48), 640, 480, progressive=True, restart_rows=2)
    assert prog.count(b"\xff\xda") > 1 and b"\xff\xd0" in prog
    assert export_fast_decode.sizes((224, 224), 0)[-1][0] * export_fast_decode.sizes((224, 224), 0)[-1][1] >= 7.9e6  # 8 MP
    assert [fast_decode.scale_for(w, h, (224, 224)) for w, h in export_fast_decode.sizes((224, 224), 1)] == [2, 4, 8]
    assert [fast_decode.scale_for(w, h, (600, 600)) for w, h in export_fast_decode.sizes((600, 600), 0)] == [2, 4]
