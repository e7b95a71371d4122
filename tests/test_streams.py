"""runtime/apps/streams.py: video files and live streams, frame by frame (CPU only, no TensorFlow).

Videos are written here with OpenCV (MJPG in AVI: decoding is deterministic, and each test
compares against the frames it decodes itself). Live sources are fakes: a capture the test
feeds frame by frame (the drop policy, exactly), a free-running one with a slow classifier
(the policy end to end), and openers that fail on a script with an injected clock and
sleep (reconnect and give-up; no test waits for real or asserts wall-clock time).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import tiny_models
from edge_classify.runtime import EngineOptions
from edge_classify.runtime.apps.multistream import classify_stream
from edge_classify.runtime.apps.streams import (
    EXIT_STREAM_LOST,
    RollingRate,
    StreamLost,
    VideoSaver,
    annotate,
    frames,
    is_video_path,
    open_capture,
    parse_source,
)
from edge_classify.runtime.classifier import Classifier
from edge_classify.runtime.errors import EdgeClassifyError, InputError
from stream_helpers import (FakeCapture, FakeTime, GatedCapture, NotOpened, Script, Slow, decode_all, index_of,
                            numbered, top)
from stream_helpers import write_video as _write_video

SIZE = (160, 120)  # width, height
FPS = 10.0


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pictures(photos) -> list[np.ndarray]:
    """Six real photos as 160x120 BGR frames."""
    return [cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), SIZE, interpolation=cv2.INTER_AREA) for p in photos[:6]]


@pytest.fixture(scope="module")
def clf(tmp_path_factory) -> Classifier:
    """A small CNN: ONNX Runtime computes each image of a batch alike at any batch size (a
    whole-image ReduceMean, tiny_models.make, is summed in another order: 1.6e-5 apart), and a
    video's frames run in batches."""
    model = tiny_models.make_conv(tmp_path_factory.mktemp("conv") / "conv.onnx", classes=8, seed=1)
    return Classifier(model, EngineOptions(engine="onnxruntime", providers="cpu"))


def write_video(path, images, fourcc="MJPG", fps=FPS):
    return _write_video(path, images, fourcc, fps)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, pictures):
    """12 frames cycling through six photos."""
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi", [pictures[i % 6] for i in range(12)])


# --------------------------------------------------------------------------- files
def test_each_frame_is_classified_as_its_decoded_picture(clf, clip):
    decoded = decode_all(clip)
    results = list(classify_stream(clf, str(clip), top_k=3))
    assert [r.frame for r in results] == list(range(len(decoded))) == list(range(12))
    for r, img in zip(results, decoded):
        want = clf.classify([img[..., ::-1].copy()], top_k=3)[0]  # RGB, as a user would pass it
        (got_i, got_p), (want_i, want_p) = top(r.classification), top(want)
        assert got_i == want_i
        np.testing.assert_allclose(got_p, want_p, rtol=0, atol=1e-6)
        assert np.array_equal(r.image_bgr, img)
    assert len({r.classification.predictions[0].index for r in results}) > 1, "the model must tell photos apart"

    row = results[4].row()
    assert row["path"] == row["source"] == str(clip)
    assert (row["frame"], row["dropped"], row["timestamp_ms"]) == (4, 0, pytest.approx(400.0))
    assert row["engine"] == "onnxruntime" and len(row["predictions"]) == 3
    json.dumps(row)


def test_every_nth_frame_with_increasing_timestamps(clip):
    decoded = decode_all(clip)
    got = list(frames(str(clip), every=3))
    assert [f.index for f in got] == [0, 3, 6, 9]
    assert [f.timestamp_ms for f in got] == pytest.approx([0.0, 300.0, 600.0, 900.0])
    assert all(np.array_equal(f.image_bgr, decoded[f.index]) and f.dropped_before == 0 for f in got)
    assert {f.fps for f in got} == {FPS}


def test_closing_releases_the_file(clf, clip):
    opened = []

    def opener(*args):
        opened.append(cv2.VideoCapture(*args))
        return opened[-1]

    it = classify_stream(clf, str(clip), opener=opener)  # through the read-ahead thread
    next(it), next(it)
    it.close()
    assert len(opened) == 1 and not opened[0].isOpened()


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="no such video file") as e:
        next(frames(str(tmp_path / "missing.mp4")))
    assert e.value.exit_code == 1
    (tmp_path / "notes.mp4").write_text("not a video\n" * 100)
    with pytest.raises(InputError, match="cannot open as a video"):
        next(frames(str(tmp_path / "notes.mp4")))
    with pytest.raises(EdgeClassifyError, match="at least 1"):
        next(frames(str(tmp_path / "notes.mp4"), every=0))


# --------------------------------------------------------------------------- live: drop policy
def test_live_takes_the_newest_frame_and_counts_the_overwritten():
    cap = GatedCapture()
    it = frames(0, opener=Script(cap))
    cap.feed(1, wait=False)
    first = next(it)
    assert (first.index, first.dropped_before, index_of(first.image_bgr)) == (0, 0, 0)
    for fed, newest, dropped in ((3, 3, 2), (1, 4, 0), (5, 9, 4)):
        cap.feed(fed)
        f = next(it)
        assert (f.index, f.dropped_before, index_of(f.image_bgr)) == (newest, dropped, newest)
    cap.finish()
    it.close()
    assert cap.released


def test_live_every_counts_source_frames():
    cap = GatedCapture()
    it = frames("camera:1", every=2, opener=Script(cap))
    cap.feed(1, wait=False)
    assert next(it).index == 0
    cap.feed(5)  # frames 1..5: 2 and 4 qualify, 2 is overwritten
    f = next(it)
    assert (f.index, f.dropped_before, index_of(f.image_bgr)) == (4, 1, 4)
    cap.finish()
    it.close()


def test_slow_inference_drops_frames_and_stays_current(clf, pictures):
    cap = FakeCapture(delay=0.002, base=pictures)
    it = classify_stream(Slow(clf, 0.03), "rtsp://cam.local/stream", opener=Script(cap))
    results = [next(it) for _ in range(6)]
    it.close()
    assert cap.released
    assert len(results) < cap.next
    assert [r.frame for r in results] == sorted({r.frame for r in results})
    assert results[-1].frame + 1 == len(results) + sum(r.dropped_before for r in results)
    assert sum(r.dropped_before for r in results) > 0
    for r in results:
        assert index_of(r.image_bgr) == r.frame
        want = clf.classify([numbered(r.frame, pictures[r.frame % 6])[..., ::-1]], top_k=3)[0]
        assert top(r.classification)[0] == top(want)[0]
        assert r.row()["dropped"] == r.dropped_before and r.row()["source"] == "rtsp://cam.local/stream"


# --------------------------------------------------------------------------- live: reconnect
def test_reconnects_with_backoff_and_continues():
    t = FakeTime()
    after = FakeCapture(start=5, delay=0.001)
    opener = Script(FakeCapture(frames=5), NotOpened(), NotOpened(), after)
    it = frames("rtsp://cam.local/s", opener=opener, clock=t.clock, sleep=t.sleep)
    seen = []
    for f in it:
        seen.append(f.index)
        if f.index >= 8:
            break
    it.close()
    assert t.sleeps == [0.5, 1.0, 2.0]
    assert len(opener.opened) == 4 and all(c.released for c in opener.opened)
    assert seen[-1] >= 8 and seen == sorted(seen)


def test_gives_up_after_the_budget():
    t = FakeTime()
    opener = Script(FakeCapture(frames=5))
    it = frames("rtsp://admin:hunter2@cam.local/s", opener=opener, clock=t.clock, sleep=t.sleep)
    seen = []
    with pytest.raises(StreamLost) as e:
        for f in it:
            seen.append(f)
    assert seen[-1].index == 4 and len(seen) + sum(f.dropped_before for f in seen) == 5
    assert t.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 6.5] and sum(t.sleeps) == 30.0
    assert e.value.exit_code == EXIT_STREAM_LOST == 75
    msg = str(e.value)
    assert "lost live source rtsp://admin:***@cam.local/s" in msg and "30.0 s" in msg and "hunter2" not in msg
    assert all(c.released for c in opener.opened)


def test_never_opened_live_source():
    t = FakeTime()
    it = frames("v4l2src ! videoconvert ! appsink", opener=Script(), clock=t.clock, sleep=t.sleep,
                reconnect_s=5.0, backoff=(1.0, 2.0))
    with pytest.raises(StreamLost, match="could not open live source v4l2src"):
        next(it)
    assert t.sleeps == [1.0, 2.0, 2.0]


def test_gstreamer_pipelines_name_the_backend():
    calls = []
    open_capture(parse_source("videotestsrc ! appsink"), opener=lambda *a: calls.append(a))
    open_capture(parse_source("camera:0"), opener=lambda *a: calls.append(a))
    assert calls == [("videotestsrc ! appsink", cv2.CAP_GSTREAMER), (0,)]


# --------------------------------------------------------------------------- annotate / save
def test_annotated_video_and_last_frame(clf, clip, tmp_path):
    decoded = decode_all(clip)
    out, last = tmp_path / "annotated.avi", tmp_path / "last.png"
    with VideoSaver(out, FPS, SIZE) as video, VideoSaver(last) as still:
        for r in classify_stream(clf, str(clip), top_k=3):
            before = r.image_bgr.copy()
            drawn = annotate(r.image_bgr, r.classification.predictions)
            assert np.array_equal(r.image_bgr, before), "annotate draws on a copy"
            video.write(drawn)
            still.write(drawn)
    back = decode_all(out)
    assert len(back) == len(decoded) == video.frames == 12
    for got, src in zip(back, decoded):
        diff = np.abs(got.astype(int) - src.astype(int))
        assert diff[:30, :90].mean() > 20  # the box and its text
        assert diff[60:].mean() < 6  # the rest: only the codec's loss
    assert np.array_equal(cv2.imread(str(last)), drawn)


def test_saver_sizes_and_repeats(tmp_path, pictures):
    with VideoSaver(tmp_path / "out.mp4", fps=0) as video:  # no rate known: 25
        video.write(pictures[0], repeat=3)  # the first frame sets the size
        video.write(cv2.resize(pictures[1], (320, 240)))  # a reconnected camera's new size
    back = decode_all(tmp_path / "out.mp4")
    assert video.fps == 25 and video.frames == len(back) == 4 and {b.shape for b in back} == {(120, 160, 3)}
    assert (tmp_path / "out.mp4").read_bytes()[4:8] == b"ftyp"


def test_saver_refuses_unknown_formats(tmp_path):
    with pytest.raises(EdgeClassifyError, match="cannot save") as e:
        VideoSaver(tmp_path / "out.xyz", 25, SIZE)
    assert e.value.exit_code == 2


# --------------------------------------------------------------------------- recognising sources
def test_is_video_path(tmp_path, clip, photos):
    mp4 = write_video(tmp_path / "v.mp4", [numbered(i) for i in range(3)], "mp4v")
    mkv = write_video(tmp_path / "v.mkv", [numbered(i) for i in range(3)], "FFV1")
    png = photos[0].read_bytes()
    files = {
        "clip.avi": (clip.read_bytes(), True),
        "avi-no-extension": (clip.read_bytes(), True),  # RIFF....AVI
        "mp4.bin": (mp4.read_bytes(), True),  # ftyp
        "mkv.dat": (mkv.read_bytes(), True),  # EBML
        "photo.png": (png, False),
        "photo-named.mp4": (png, False),  # content says image
        "image.avif": (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1" + bytes(64), False),
        "avif-no-extension": (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1" + bytes(64), False),
        "notes.txt": (b"hello\n", False),
        "empty.mov": (b"", True),  # by extension (OpenCV will say if it is not one)
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    assert {n: is_video_path(tmp_path / n) for n in files} == {n: want for n, (_, want) in files.items()}
    assert is_video_path("missing/film.MKV") and is_video_path("x.3gp") and not is_video_path("missing/a.jpg")
    (tmp_path / "folder.mp4").mkdir()
    assert not is_video_path(tmp_path / "folder.mp4")


@pytest.mark.parametrize("text, kind, value, live", [
    (0, "camera", 0, True),
    ("camera:2", "camera", 2, True),
    ("/dev/video1", "camera", 1, True),
    ("3", "camera", 3, True),
    ("rtsp://user:secret@cam.local:554/stream", "url", "rtsp://user:secret@cam.local:554/stream", True),
    ("rtsps://cam.local/s", "url", "rtsps://cam.local/s", True),
    ("http://example.com/live.mjpg", "url", "http://example.com/live.mjpg", True),
    ("HTTPS://example.com/live.m3u8", "url", "HTTPS://example.com/live.m3u8", True),
    ("udp://@:1234", "url", "udp://@:1234", True),
    ("rtmp://example.com/live/key", "url", "rtmp://example.com/live/key", True),
    ("v4l2src device=/dev/video0 ! videoconvert ! appsink", "gstreamer",
     "v4l2src device=/dev/video0 ! videoconvert ! appsink", True),
    ("clips/holiday.mp4", "file", "clips/holiday.mp4", False),
    ("ftp://example.com/a.mp4", "file", "ftp://example.com/a.mp4", False),
    ("/dev/video0x", "file", "/dev/video0x", False),
])  # fmt: skip
def test_parse_source(text, kind, value, live):
    s = parse_source(text)
    assert (s.kind, s.value, s.live) == (kind, value, live)


def test_source_names(tmp_path, monkeypatch):
    assert parse_source("rtsp://user:secret@cam.local:554/s").name == "rtsp://user:***@cam.local:554/s"
    assert parse_source("rtsp://cam.local/s").name == "rtsp://cam.local/s"
    assert parse_source(0).name == "camera:0"
    monkeypatch.chdir(tmp_path)
    for name in ("wow!.mp4", "7"):  # existing files keep their names
        (tmp_path / name).write_bytes(b"")
        assert parse_source(name).kind == "file"


def test_a_frame_the_model_cannot_score_does_not_end_the_stream(tmp_path, pictures):
    model = tiny_models.make(tmp_path / "nan.onnx", nan_for_dark=True)
    clf = Classifier(model, EngineOptions(engine="onnxruntime", providers="cpu"))
    dark, bright = np.zeros_like(pictures[0]), np.full_like(pictures[0], 220)
    video = write_video(tmp_path / "dark.avi", [bright, dark, bright], "FFV1")
    results = list(classify_stream(clf, str(video)))
    assert [r.classification.ok for r in results] == [True, False, True]
    row = results[1].row()
    assert "non-finite" in row["error"] and row["frame"] == 1 and "predictions" not in row


# --------------------------------------------------------------------------- the command line
def test_cli_video_json_rows_match_each_decoded_frame(clf, clip, tmp_path, capsys):
    """edge-classify clip.avi --json --every 2: one row per kept frame, each equal to
    classifying that decoded frame; an image in the same list is classified as before."""
    from edge_classify.runtime.apps import classify

    image = tmp_path / "still.png"
    cv2.imwrite(str(image), decode_all(clip)[1])
    model = str(clf.model_path)
    rc = classify.main(["--model", model, "--json", "-q", "--every", "2", "-k", "3", str(image), str(clip)])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0
    assert rows[0]["path"] == str(image) and "frame" not in rows[0]
    video = rows[1:]
    assert [r["frame"] for r in video] == list(range(0, 12, 2))
    decoded = decode_all(clip)
    for r in video:
        want = clf.classify([decoded[r["frame"]][..., ::-1]], top_k=3)[0].predictions
        assert [p["index"] for p in r["predictions"]] == [p.index for p in want]
        assert r["source"] == str(clip) and r["timestamp_ms"] >= 0


def test_cli_save_writes_an_annotated_copy_and_refuses_ambiguity(clf, clip, tmp_path, capsys):
    from edge_classify.runtime.apps import classify

    out = tmp_path / "annotated.avi"
    assert classify.main(["--model", str(clf.model_path), "-q", "--save", str(out), str(clip)]) == 0
    assert len(decode_all(out)) == 12
    # Two sources: --save names a folder (a file name is refused before the model loads).
    assert classify.main(["--model", str(clf.model_path), "--save", str(out), str(clip), str(clip)]) == 2
    assert "with 2 sources --save names a folder" in capsys.readouterr().err
    assert classify.main(["--model", str(clf.model_path), "-o", str(tmp_path / "r.jsonl"), str(clip)]) == 2
    assert "--output is for images" in capsys.readouterr().err
    # A mistyped image name with "!" is a missing file, not a GStreamer pipeline to wait for.
    assert classify.main(["--model", str(clf.model_path), str(tmp_path / "no!such.jpg")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_rolling_rate_counts_only_the_recent_window():
    now = [0.0]
    rate = RollingRate(window=2.0, clock=lambda: now[0])
    assert rate.rate() == 0.0
    for _ in range(11):  # 10 frames/s for a second
        rate.tick()
        now[0] += 0.1
    assert rate.rate() == pytest.approx(10.0)
    now[0] += 5.0  # a stall: the old frames leave the window
    for _ in range(3):  # then 2 frames/s
        rate.tick()
        now[0] += 0.5
    assert rate.rate() == pytest.approx(2.0)


def test_cli_shows_a_rolling_fps_on_stderr_never_on_stdout(clf, clip, capsys, monkeypatch):
    from edge_classify.runtime.apps import classify

    monkeypatch.setattr(classify, "FPS_REPORT_EVERY_S", 0.0)  # a line per frame, instead of every 2 s
    assert classify.main(["--model", str(clf.model_path), "--json", str(clip)]) == 0
    out, err = capsys.readouterr()
    assert all(json.loads(line)["frame"] >= 0 for line in out.splitlines())  # stdout: rows only
    fps_lines = [line for line in err.splitlines() if "frames/s (last" in line]
    assert len(fps_lines) == 12 and "frame 11," in fps_lines[-1]
    assert classify.main(["--model", str(clf.model_path), "--json", "-q", str(clip)]) == 0
    assert "frames/s" not in capsys.readouterr().err
