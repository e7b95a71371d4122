"""Hostile inputs, as an upload folder or a camera share hands them: none may stop a run,
none may be classified from a broken picture, and none may cost unbounded time or memory.

Each test reproduces one defect found on the previous main (issue 8), with a model small
enough (tests/tiny_models.py) that the test is about the input, not the network.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tiny_models
from conftest import SKIMAGE_DATA, script
from edge_classify.runtime import Classifier, EngineOptions
from edge_classify.runtime.apps.classify import main
from edge_classify.runtime.errors import EXIT_INTERNAL
from edge_classify.runtime.images.preprocess import DecodeOptions, decode_with_notes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_models.make(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def run_cli(capfd, *argv):
    rc = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return rc, out, err


def rows(out: str) -> dict:
    return {o["path"]: o for o in map(json.loads, out.splitlines())}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header declares width x height (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to declare width x height."""
    data = bytearray(jpeg_bytes(Image.open(SKIMAGE_DATA / "chelsea.png").convert("RGB").resize((64, 48))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.fixture(scope="module")
def rocket() -> bytes:
    return (SKIMAGE_DATA / "rocket.jpg").read_bytes()  # 112 KB baseline JPEG, 640x427


def cut_with_end_marker(jpeg: bytes) -> bytes:
    return jpeg[: len(jpeg) // 2] + b"\xff\xd9"


def hole_in_scan(jpeg: bytes) -> bytes:
    mid = len(jpeg) // 2
    return jpeg[:mid] + jpeg[mid + 4096:]


# --- 1. one oversized image aborts the whole run -----------------------------------------
def test_oversized_png_does_not_stop_the_run(tiny, photos, tmp_path, capfd):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(40000, 40000))
    rc, out, err = run_cli(capfd, "--model", tiny, "--json", photos[0], bomb, photos[1])
    assert rc == 1 and "Traceback" not in err
    got = rows(out)
    assert "predictions" in got[str(photos[0])] and "predictions" in got[str(photos[1])]
    assert "40000x40000" in got[str(bomb)]["error"] and "--max-pixels" in got[str(bomb)]["error"]
    # The API with errors="collect" records it too, instead of raising.
    results = Classifier(tiny, EngineOptions(providers="cpu")).classify([photos[0], bomb], errors="collect")
    assert results[0].ok and not results[1].ok and "megapixels" in results[1].error


def test_pixel_cap_is_checked_before_decoding_and_configurable(tiny, photos, tmp_path, monkeypatch, capfd):
    from edge_classify.runtime.images import safe_decode

    bomb = jpeg_declaring(29867, 18304)  # 546.7 MP in a 2 KB file
    calls = []
    monkeypatch.setattr(safe_decode.codec_messages, "run", lambda fn: calls.append(fn) or pytest.fail("decoded"))
    with pytest.raises(Exception) as e:
        decode_with_notes(bomb)
    assert "29867x18304" in str(e.value) and not calls
    monkeypatch.undo()
    # 451x300 = 135,300 pixels: refused under a 100K cap (flag and API), accepted by default.
    img = photos[1]  # chelsea.png
    assert decode_with_notes(img.read_bytes())[0].shape == (300, 451, 3)
    with pytest.raises(Exception, match="0.1-megapixel limit"):
        decode_with_notes(img.read_bytes(), DecodeOptions(max_pixels=100_000))
    rc, _, err = run_cli(capfd, "--model", tiny, "--max-pixels", "100K", img)
    assert rc == 1 and "451x300" in err
    rc, _, _ = run_cli(capfd, "--model", tiny, "--max-pixels", "200K", img)
    assert rc == 0


def test_big_decodes_wait_for_each_other_so_memory_is_that_of_one():
    """A 20000x20000 PNG cost 2.45 GiB per decode thread: the pixel budget lets big decodes
    run one at a time (small ones still pass alongside, first come first served)."""
    import threading

    from edge_classify.runtime.images.safe_decode import _PixelBudget

    budget = _PixelBudget(100)
    entered = threading.Event()

    def second():
        with budget.reserve(80):
            entered.set()

    with budget.reserve(80):
        t = threading.Thread(target=second)
        t.start()
        assert not entered.wait(0.3)  # 80 + 80 > 100: the second waits for the first
    assert entered.wait(30)
    t.join()
    with budget.reserve(10), budget.reserve(80):  # 90 <= 100: together
        pass
    with budget.reserve(500):  # above the capacity (a raised --max-pixels): alone, not never
        pass


# --- 2./3. the optimised-graph cache: stale and planted entries ---------------------------
def _predict(model, photos, **env):
    return Classifier(model, EngineOptions(providers="cpu")).predict(photos)


def test_cache_follows_the_content_not_path_size_and_mtime(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    a = tiny_models.make(tmp_path / "a.onnx", seed=1)
    b = tiny_models.make(tmp_path / "b.onnx", seed=2)
    assert a.stat().st_size == b.stat().st_size  # same architecture, other weights
    m = tmp_path / "m.onnx"
    m.write_bytes(a.read_bytes())
    first = Classifier(m, EngineOptions(providers="cpu"))
    assert first.report.cache_status == "stored"
    pa = first.predict(photos[:6])
    # cp b m.new; touch -r m m.new; mv m.new m
    new = tmp_path / "m.onnx.new"
    new.write_bytes(b.read_bytes())
    st = m.stat()
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, m)
    assert (m.stat().st_size, m.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    second = Classifier(m, EngineOptions(providers="cpu"))
    assert second.report.cache_status == "stored"  # a new key, not the old entry
    pb = second.predict(photos[:6])
    assert not np.allclose(pa, pb)
    monkeypatch.setenv("EDGE_CLASSIFY_NO_CACHE", "1")
    assert np.array_equal(pb, Classifier(b, EngineOptions(providers="cpu")).predict(photos[:6]))
    monkeypatch.delenv("EDGE_CLASSIFY_NO_CACHE")
    third = Classifier(m, EngineOptions(providers="cpu"))
    assert third.report.cache_status == "hit" and np.array_equal(third.predict(photos[:6]), pb)


def test_remembered_digests_never_outlive_a_change_to_the_file(photos, tmp_path, monkeypatch):
    """The sha256 is remembered under (device, inode, size, mtime, ctime): a hit skips the
    hash, and the swap above (same size, mtime put back) changes the ctime, so no memo."""
    from edge_classify.runtime.cache import store

    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(store, "_STABLE_S", 0.0)  # test files are seconds old
    a = tiny_models.make(tmp_path / "a.onnx", seed=1)
    b = tiny_models.make(tmp_path / "b.onnx", seed=2)
    m = tmp_path / "m.onnx"
    m.write_bytes(a.read_bytes())
    first = Classifier(m, EngineOptions(providers="cpu"))
    hashed = []
    real_hash = store.sha256_fd
    monkeypatch.setattr(store, "sha256_fd", lambda fd: hashed.append(fd) or real_hash(fd))
    again = Classifier(m, EngineOptions(providers="cpu"))
    assert hashed == [] and again.model_sha256 == first.model_sha256 and again.report.cache_status == "hit"
    new = tmp_path / "m.onnx.new"
    new.write_bytes(b.read_bytes())
    st = m.stat()
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, m)
    swapped = Classifier(m, EngineOptions(providers="cpu"))
    assert len(hashed) == 1 and swapped.model_sha256 != first.model_sha256
    with open(m, "r+b") as f:  # rewritten in place, same size, mtime put back
        f.write(a.read_bytes())
    os.utime(m, ns=(st.st_atime_ns, st.st_mtime_ns))
    rewritten = Classifier(m, EngineOptions(providers="cpu"))
    assert len(hashed) == 2 and rewritten.model_sha256 == first.model_sha256
    assert np.array_equal(rewritten.predict(photos[:3]), first.predict(photos[:3]))


def _plant(model: Path, planted: Path) -> Path:
    """Write ``planted``'s bytes where ``model``'s cache entry will be looked up."""
    import onnxruntime as ort

    from edge_classify.runtime.cache import store

    fd = os.open(model, os.O_RDONLY)
    try:
        key = store.entry_key(store.sha256_fd(fd), ort.__version__, "all")
    finally:
        os.close(fd)
    d = store.cache_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    entry = d / f"{key}.onnx"
    entry.write_bytes(planted.read_bytes())
    return entry


def test_planted_cache_entries_are_never_served(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    real = tiny_models.make(tmp_path / "real.onnx", seed=1)
    evil = tiny_models.make(tmp_path / "evil.onnx", seed=2)
    monkeypatch.setenv("EDGE_CLASSIFY_NO_CACHE", "1")
    want, bad = _predict(real, photos[:6]), _predict(evil, photos[:6])
    monkeypatch.delenv("EDGE_CLASSIFY_NO_CACHE")
    assert not np.allclose(want, bad)

    # An entry another user could write (world-writable) is not loaded, and is replaced.
    entry = _plant(real, evil)
    entry.chmod(0o666)
    clf = Classifier(real, EngineOptions(providers="cpu"))
    assert clf.report.cache_status == "stored" and np.array_equal(clf.predict(photos[:6]), want)
    assert entry.stat().st_mode & 0o777 == 0o600

    # An entry owned by someone else: seen as another uid's file by pretending to be uid 4242.
    entry = _plant(real, evil)
    entry.chmod(0o600)
    real_uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    clf = Classifier(real, EngineOptions(providers="cpu"))  # the directory itself is now "someone else's"
    assert clf.report.cache_status == "off" and "owned by uid" in clf.report.cache_warning
    assert np.array_equal(clf.predict(photos[:6]), want)
    monkeypatch.setattr(os, "geteuid", lambda: real_uid)
    if real_uid == 0:  # as root the entry can really belong to another user
        os.chown(entry, 65534, -1)
        clf = Classifier(real, EngineOptions(providers="cpu"))
        assert clf.report.cache_status == "stored" and np.array_equal(clf.predict(photos[:6]), want)

    # A symlink planted as the entry is not followed.
    entry.unlink()
    entry.symlink_to(evil)
    clf = Classifier(real, EngineOptions(providers="cpu"))
    assert np.array_equal(clf.predict(photos[:6]), want) and not entry.is_symlink()


def test_cache_directory_is_private_and_refused_when_others_can_write(photos, tmp_path, monkeypatch):
    from edge_classify.runtime.cache import store

    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    real = tiny_models.make(tmp_path / "real.onnx", seed=1)
    Classifier(real, EngineOptions(providers="cpu"))
    d = store.cache_dir()
    assert d.stat().st_mode & 0o777 == 0o700
    evil = tiny_models.make(tmp_path / "evil.onnx", seed=2)
    for entry in d.glob("*.onnx"):
        entry.unlink()
    _plant(real, evil).chmod(0o600)  # looks like ours, but the directory was open to everyone
    d.chmod(0o777)
    clf = Classifier(real, EngineOptions(providers="cpu"))
    assert clf.report.cache_status == "off" and "writable by others" in clf.report.cache_warning
    monkeypatch.setenv("EDGE_CLASSIFY_NO_CACHE", "1")
    assert np.array_equal(clf.predict(photos[:4]), _predict(real, photos[:4]))


def test_cache_total_size_is_capped_least_recently_used_first(tmp_path, monkeypatch):
    from edge_classify.runtime.cache import store

    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    models = [tiny_models.make(tmp_path / f"m{i}.onnx", seed=i) for i in range(4)]
    Classifier(models[0], EngineOptions(providers="cpu"))
    entry_size = next(store.cache_dir().glob("*.onnx")).stat().st_size
    monkeypatch.setenv("EDGE_CLASSIFY_CACHE_MAX_MB", str(2.5 * entry_size / 2**20))  # room for two
    Classifier(models[1], EngineOptions(providers="cpu"))
    os.utime(next(iter(sorted(store.cache_dir().glob("*.onnx"), key=os.path.getmtime))), (1, 1))
    assert Classifier(models[0], EngineOptions(providers="cpu")).report.cache_status == "hit"  # m0 used again: m1 is now oldest
    Classifier(models[2], EngineOptions(providers="cpu"))
    with store.CacheDir() as cache:
        assert cache.total_bytes() <= 2.5 * entry_size
    assert len(list(store.cache_dir().glob("*.onnx"))) == 2
    assert Classifier(models[0], EngineOptions(providers="cpu")).report.cache_status == "hit"
    assert Classifier(models[1], EngineOptions(providers="cpu")).report.cache_status == "stored"  # it was evicted


def test_a_rejected_model_is_never_cached(tmp_path, monkeypatch, capfd):
    from edge_classify.runtime.cache import store

    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    bad = tiny_models.make(tmp_path / "bad.onnx", classes=5, labels=6)
    rc, _, err = run_cli(capfd, "--model", bad, SKIMAGE_DATA / "chelsea.png")
    assert rc == 3
    assert not [p for p in store.cache_dir().iterdir()]  # no entry, no partial


# --- 4. unbounded resources from one input ------------------------------------------------
def test_devices_fifos_and_sockets_are_refused_without_blocking(tiny, photos, tmp_path):
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    sock_path = tmp_path / "upload.png"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        # A subprocess, so that a hang fails the test instead of hanging the suite.
        p = subprocess.run([script("edge-classify"), "--model", str(tiny), "--json", str(photos[0]), "/dev/zero",
                            "/dev/urandom", str(fifo), str(sock_path), str(photos[1])],
                           capture_output=True, text=True, timeout=120)
    finally:
        sock.close()
    assert p.returncode == 1, p.stderr
    got = rows(p.stdout)
    assert "predictions" in got[str(photos[0])] and "predictions" in got[str(photos[1])]
    assert "character device" in got["/dev/zero"]["error"] and "character device" in got["/dev/urandom"]["error"]
    assert "FIFO" in got[str(fifo)]["error"] and "socket" in got[str(sock_path)]["error"]
    assert "Traceback" not in p.stderr and "MemoryError" not in p.stderr


def test_file_size_cap(tiny, photos, tmp_path, capfd):
    big = tmp_path / "huge.png"
    with open(big, "wb") as f:  # sparse: 300 MiB claimed, nothing read
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(300 * 2**20)
    rc, _, err = run_cli(capfd, "--model", tiny, big)
    assert rc == 1 and "above the 256.0 MiB limit" in err
    small = tmp_path / "coffee.jpg"
    small.write_bytes(jpeg_bytes(Image.open(SKIMAGE_DATA / "coffee.png").convert("RGB")))
    rc, _, err = run_cli(capfd, "--model", tiny, "--max-file-size", "1K", small)
    assert rc == 1 and "1024 bytes limit" in err


# --- 5. broken JPEGs are classified silently ----------------------------------------------
@pytest.mark.parametrize("damage", [cut_with_end_marker, hole_in_scan, lambda b: b[: len(b) * 2 // 3]],
                         ids=["cut-then-end-marker", "4k-hole-in-scan", "cut-short"])
def test_broken_jpegs_are_refused_not_classified(tiny, photos, rocket, tmp_path, capfd, damage):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(damage(rocket))
    rc, out, err = run_cli(capfd, "--model", tiny, "--json", photos[0], broken)
    assert rc == 1
    got = rows(out)
    assert "predictions" not in got[str(broken)]
    assert "corrupt" in got[str(broken)]["error"].lower() or "truncated" in got[str(broken)]["error"]
    # libjpeg's own stderr line is attributed to the image, never printed on its own.
    assert not [line for line in err.splitlines() if line.startswith(("Corrupt JPEG", "Premature end"))]


def test_allow_corrupt_classifies_with_a_warning(tiny, rocket, tmp_path, capfd):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(cut_with_end_marker(rocket))
    rc, out, err = run_cli(capfd, "--model", tiny, "--json", "--allow-corrupt", broken)
    assert rc == 0
    row = rows(out)[str(broken)]
    assert row["predictions"] and any("partly decoded" in n for n in row["notes"])
    assert f"{broken}: classified although partly decoded" in err


def test_corrupt_jpegs_are_attributed_exactly_under_parallel_decoding(rocket):
    from edge_classify.runtime.errors import InputError

    bad = {3, 4, 11, 17, 18, 19, 30}
    items = [cut_with_end_marker(rocket) if i in bad else rocket for i in range(40)]

    def verdict(data):
        try:
            decode_with_notes(data)
            return "ok"
        except InputError as exc:
            return str(exc)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(verdict, items))
    assert [i for i, v in enumerate(got) if v != "ok"] == sorted(bad)
    assert all("premature end of data segment" in got[i] for i in bad)


# --- 6. the lesser defects -----------------------------------------------------------------
@pytest.mark.parametrize("kwargs,needle", [
    ({"classes": 1000, "labels": 1001}, "1000 classes but the contract carries 1001 labels"),
    ({"contract_input_name": "image"}, "'image' is not a graph input"),
    ({"graph_input_size": (224, 224), "contract_input_size": (299, 299)}, "height 299"),
])
def test_contract_that_disagrees_with_its_graph_is_one_clear_error(tmp_path, kwargs, needle, capfd):
    model = tiny_models.make(tmp_path / "m.onnx", **kwargs)
    rc, out, err = run_cli(capfd, "--model", model, SKIMAGE_DATA / "chelsea.png")
    assert rc == 3 and out == ""
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 2  # error + hint


def test_non_finite_scores_are_an_error_for_that_image(tmp_path, capfd):
    model = tiny_models.make(tmp_path / "nan.onnx", nan_for_dark=True)
    dark, light = tmp_path / "dark.png", tmp_path / "light.png"
    Image.new("RGB", (64, 64), (5, 5, 5)).save(dark)
    Image.new("RGB", (64, 64), (250, 250, 250)).save(light)
    rc, out, err = run_cli(capfd, "--model", model, "--json", dark, light)
    assert rc == 1 and ": NaN" not in out  # json.dumps would write a NaN probability as a bare NaN
    got = rows(out)
    assert "non-finite" in got[str(dark)]["error"] and got[str(light)]["predictions"]
    rc, out, err = run_cli(capfd, "--model", model, dark, light)  # text: no "nan%" line
    assert rc == 1 and "nan%" not in out and "non-finite" in err


@pytest.mark.parametrize("ext,name", [(".ppm", "Netpbm"), (".pgm", "Netpbm"), (".pfm", "PFM"), (".hdr", "Radiance HDR"),
                                      (".ras", "Sun raster"), (".jp2", "JPEG 2000"), (".avif", "AVIF")])
def test_formats_outside_the_allow_list_are_refused_by_content(tiny, tmp_path, ext, name, capfd):
    import cv2

    img = np.asarray(Image.open(SKIMAGE_DATA / "chelsea.png").convert("RGB").resize((64, 48)))[:, :, ::-1]
    if ext == ".pgm":
        img = img[:, :, 0]
    if ext in (".pfm", ".hdr"):
        img = img.astype(np.float32) / 255
    ok, buf = cv2.imencode(ext, img)
    assert ok
    disguised = tmp_path / "holiday.jpg"  # the name does not matter, the content does
    disguised.write_bytes(buf.tobytes())
    rc, out, err = run_cli(capfd, "--model", tiny, "--json", disguised)
    assert rc == 1 and name in rows(out)[str(disguised)]["error"]


def test_non_utf8_file_names_survive_json(tiny, photos, tmp_path, capfd):
    raw = os.fsencode(tmp_path) + b"/caf\xe9 \xff.png"
    with open(raw, "wb") as f:
        f.write(photos[1].read_bytes())
    rc, out, err = run_cli(capfd, "--model", tiny, "--json", os.fsdecode(raw))
    assert rc == 0
    line = out.splitlines()[0]
    line.encode("utf-8")  # valid UTF-8 text
    row = json.loads(line)
    assert "\ufffd" in row["path"] and base64.b64decode(row["path_base64"]) == raw
    rc, out, _ = run_cli(capfd, "--model", tiny, os.fsdecode(raw), photos[0])  # text mode: a header line
    assert rc == 0 and "caf\ufffd \ufffd.png" in out


def test_internal_error_has_its_own_exit_code_and_saves_the_traceback(tiny, photos, monkeypatch, capfd):
    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(Classifier, "iter_classify", boom)
    rc, _, err = run_cli(capfd, "--model", tiny, photos[0])
    assert rc == EXIT_INTERNAL != 1
    assert "internal error: RuntimeError: simulated bug" in err and "Traceback" not in err
    saved = err.split("the traceback is in ")[1].split(":")[0]
    assert "Traceback" in Path(saved).read_text() and "simulated bug" in Path(saved).read_text()
    Path(saved).unlink()


def test_a_failing_decoder_of_any_type_is_one_image_error(tiny, photos, monkeypatch):
    from edge_classify.runtime.images import preprocess

    real = preprocess.load_decoded

    def flaky(source, options, target=None):
        if str(source).endswith("coffee.png"):
            raise ValueError("decoder exploded")
        return real(source, options, target)

    monkeypatch.setattr(preprocess, "load_decoded", flaky)
    res = Classifier(tiny, EngineOptions(providers="cpu")).classify(photos[:4], errors="collect")
    assert [r.ok for r in res] == [True, True, False, True]
    assert "ValueError: decoder exploded" in res[2].error


def test_zero_padding_before_the_end_marker_is_not_damage(rocket):
    """libjpeg says "extraneous bytes before marker 0xd9" for camera padding too; those
    pixels are intact, unlike the leftovers of a scan with a hole."""
    import cv2

    padded = rocket[:-2] + b"\x00" * 64 + rocket[-2:]
    img, notes = decode_with_notes(padded)
    assert np.array_equal(img, cv2.imdecode(np.frombuffer(rocket, np.uint8), cv2.IMREAD_COLOR))
    assert notes and "extraneous bytes" in notes[0]


def test_an_applications_own_log_lines_are_neither_swallowed_nor_blamed_on_images(photos):
    """While decodes run, fd 2 is a pipe; lines that are not the codecs' go through. (Lines a
    thread prints while single decodes start and stop can come out slightly out of order; a
    ``classify`` run keeps one path for its whole duration, so its lines keep their order.)"""
    code = f"""
import sys, threading
from edge_classify.runtime.images.preprocess import decode_with_notes
data = open({str(photos[1])!r}, "rb").read()
stop = False
def log():
    i = 0
    while not stop:
        print(f"[ERROR] upstream timeout {{i}}", file=sys.stderr); i += 1
t = threading.Thread(target=log); t.start()
results = [decode_with_notes(data)[1] for _ in range(150)]
stop = True; t.join()
print("NOTES", sum(bool(n) for n in results))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "NOTES 0" in p.stdout
    logged = [int(n) for n in re.findall(r"\[ERROR\] upstream timeout (\d+)", p.stderr)]
    assert sorted(logged) == list(range(len(logged))) and len(logged) > 10  # every line there, once


def test_capture_follows_stderr_redirected_in_the_middle_of_a_run(rocket, tmp_path):
    bad, log = tmp_path / "bad.jpg", tmp_path / "stderr.log"
    bad.write_bytes(cut_with_end_marker(rocket))
    code = f"""
import os
from edge_classify.runtime.images import codec_messages
from edge_classify.runtime.errors import InputError
from edge_classify.runtime.images.preprocess import decode_with_notes
with codec_messages.held():
    os.dup2(os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT), 2)  # someone else takes stderr over
    try:
        decode_with_notes(open({str(bad)!r}, "rb").read())
        print("ACCEPTED")
    except InputError as exc:
        print("REFUSED", exc)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "REFUSED" in p.stdout and "premature end" in p.stdout, p.stdout + p.stderr
    assert "Corrupt JPEG" not in log.read_text()


def test_a_forked_child_decodes_and_keeps_its_stderr(photos):
    code = f"""
import os, sys
from edge_classify.runtime.images.preprocess import decode_with_notes
data = open({str(photos[1])!r}, "rb").read()
decode_with_notes(data)
pid = os.fork()
if pid == 0:
    decode_with_notes(data)
    print("child ok", file=sys.stderr, flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "child exit 0" in p.stdout and "child ok" in p.stderr, p.stdout + p.stderr


def test_a_model_with_external_weights_loads(tmp_path, photos):
    import onnx

    src = tiny_models.make(tmp_path / "inline.onnx", seed=3)
    model = onnx.load(str(src))
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.weights", size_threshold=0)
    assert (tmp_path / "ext.weights").is_file()
    got = Classifier(tmp_path / "ext.onnx", EngineOptions(providers="cpu")).predict(photos[:3])
    assert np.array_equal(got, Classifier(src, EngineOptions(providers="cpu")).predict(photos[:3]))


def test_one_classifier_used_from_many_threads_gives_the_serial_results(tiny, photos, rocket):
    """ONNX Runtime sessions are thread-safe; so must our decode path be (the stderr capture,
    the pixel budget), with damaged images mixed in."""
    clf = Classifier(tiny, EngineOptions(providers="cpu"), batch_size=3)
    inputs = [photos[i % len(photos)] for i in range(24)] + [cut_with_end_marker(rocket), b"junk"]
    serial = [(r.source, r.error, r.predictions) for r in clf.classify(inputs, errors="collect")]
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: clf.classify(inputs, errors="collect"), range(8)))
    for run in runs:
        assert [(r.source, r.error, r.predictions) for r in run] == serial
    assert sum(e is not None for _, e, _ in serial) == 2


# --- nothing lost in bulk ------------------------------------------------------------------
def test_output_file_refuses_to_mix_runs_and_resume_skips_done_inputs(tiny, photos, tmp_path, capfd):
    out = tmp_path / "results.jsonl"
    rc, stdout, err = run_cli(capfd, "--model", tiny, "-o", out, *photos[:5])
    assert rc == 0 and stdout == "" and "classified 5, failed 0" in err
    assert len(out.read_text().splitlines()) == 5
    rc, _, err = run_cli(capfd, "--model", tiny, "-o", out, *photos[:5])
    assert rc == 2 and "--resume" in err
    # A killed run leaves a partial last line: it is cut, and only the missing inputs run.
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    rc, _, err = run_cli(capfd, "--model", tiny, "-o", out, "--resume", *photos[:8])
    assert rc == 0 and "removed the incomplete last line" in err and "3 input(s) already" in err
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["path"] for r in got) == sorted(str(p) for p in photos[:8])


def test_resume_matches_paths_however_spelled_and_leaves_other_files_alone(tiny, photos, tmp_path, capfd,
                                                                           monkeypatch):
    monkeypatch.chdir(photos[0].parent)
    out = tmp_path / "results.jsonl"
    rc, _, _ = run_cli(capfd, "--model", tiny, "-o", out, photos[0].name)
    rc, _, err = run_cli(capfd, "--model", tiny, "-o", out, "--resume", str(photos[0]), "./" + photos[1].name)
    assert rc == 0 and "1 input(s) already" in err and len(out.read_text().splitlines()) == 2
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\nmilk")
    rc, _, err = run_cli(capfd, "--model", tiny, "-o", notes, "--resume", photos[0].name)
    assert rc == 2 and "not an edge-classify results file" in err
    assert notes.read_text() == "shopping list\nmilk"


def test_a_results_file_that_cannot_be_written_has_its_own_exit_code(tiny, photos, tmp_path):
    import resource

    out = tmp_path / "results.jsonl"

    def small_files():  # a full disk, as far as this process can tell (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))

    p = subprocess.run([script("edge-classify"), "--model", str(tiny), "-o", str(out), *map(str, photos[:10])],
                       capture_output=True, text=True, timeout=120, preexec_fn=small_files,
                       env={**os.environ, "EDGE_CLASSIFY_NO_CACHE": "1"})
    assert p.returncode == 74, p.stderr
    assert "cannot write to --output" in p.stderr and "--resume" in p.stderr and "Traceback" not in p.stderr
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert 0 < len(kept) < 10
    p = subprocess.run([script("edge-classify"), "--model", str(tiny), "-o", str(out), "--resume",
                        *map(str, photos[:10])], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and len(out.read_text().splitlines()) == 10


def test_kill_9_and_resume_loses_and_duplicates_nothing(tiny, photos, tmp_path):
    import signal
    import time

    folder = tmp_path / "archive"
    folder.mkdir()
    for i in range(120):  # real photos, each saved under its own name
        src = photos[i % len(photos)]
        (folder / f"{i:03d}-{src.stem}.png").write_bytes(src.read_bytes())
    (folder / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    out = tmp_path / "results.jsonl"
    cmd = [script("edge-classify"), "--model", str(tiny), "--batch-size", "1", "-o", str(out), str(folder)]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 15):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = out.read_bytes().count(b"\n")
    assert 15 <= before < 121, "the run was not killed mid-way"
    p = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr  # the one broken file
    got = [json.loads(x) for x in out.read_text().splitlines()]
    names = [Path(r["path"]).name for r in got]
    assert len(names) == len(set(names)) == 121
    assert sum("error" in r for r in got) == 1
