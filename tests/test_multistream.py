"""runtime/apps/multistream.py: many sources classified concurrently in one process (CPU, no TensorFlow).

Files: clips written here, of different sizes and lengths, each frame checked against
classifying that decoded frame alone. Live: fake captures behind a slow model (the fair
order, exactly), and real MJPEG-over-HTTP servers on 127.0.0.1 that the tests start, kill
and restart (reconnect, loss, the exit-code rule, Ctrl-C through the real command). Every
wait is bounded; no test asserts a wall-clock time.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest

import tiny_models
from conftest import script
from edge_classify.runtime import EngineOptions
from edge_classify.runtime.apps import classify
from edge_classify.runtime.apps.multistream import MultiStream, named_sources, read_sources_file
from edge_classify.runtime.apps.streams import StreamLost
from edge_classify.runtime.classifier import Classifier
from edge_classify.runtime.errors import EdgeClassifyError
from stream_helpers import FakeCapture, MjpegServer, Script, Slow, decode_all, top, write_video


@pytest.fixture(scope="module")
def pictures(photos) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in photos[:9]]


@pytest.fixture(scope="module")
def clf(tmp_path_factory) -> Classifier:
    """A small CNN (Conv, pooling, Gemm): like real classifiers, and unlike a whole-image
    ReduceMean, ONNX Runtime computes each image of a batch the same way at any batch size."""
    model = tiny_models.make_conv(tmp_path_factory.mktemp("conv") / "conv.onnx", classes=8, seed=1)
    return Classifier(model, EngineOptions(engine="onnxruntime", providers="cpu"))


@pytest.fixture(scope="module")
def ov_clf(clf) -> Classifier:
    """The same model on OpenVINO (the [openvino] extra; the test extras install it)."""
    return Classifier(clf.model_path, EngineOptions(engine="openvino"))


def frames_of(pictures, size, n, offset=0):
    return [cv2.resize(pictures[(i + offset) % len(pictures)], size, interpolation=cv2.INTER_AREA) for i in range(n)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, pictures):
    """Three clips of different sizes (one portrait) and lengths."""
    d = tmp_path_factory.mktemp("clips")
    return [write_video(d / "wide.avi", frames_of(pictures, (320, 240), 9, 0)),
            write_video(d / "small.avi", frames_of(pictures, (160, 120), 12, 3)),
            write_video(d / "portrait.avi", frames_of(pictures, (96, 128), 7, 6))]


def assert_as_alone(clf, r):
    """The frame's result is exactly that of classifying its decoded picture alone (RGB, as a
    user passes it), though it ran in a batch with other sources' frames."""
    want = clf.classify([r.image_bgr[..., ::-1].copy()], top_k=3)[0]
    assert top(r.classification) == top(want)


def assert_rounds_exact(clf, results):
    """Each round's results are bit for bit those of classifying its frames as one batch."""
    rounds = defaultdict(list)
    for r in results:
        rounds[r.round].append(r)
    for got in rounds.values():
        want = clf.classify([r.image_bgr[..., ::-1].copy() for r in got], top_k=3)
        assert [top(r.classification) for r in got] == [top(w) for w in want]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_files_at_once_every_frame_as_classified_alone_and_interleaved(engine, request, clips):
    clf = request.getfixturevalue("clf" if engine == "onnxruntime" else "ov_clf")
    assert clf.runner.engine == engine
    with MultiStream(clf, [str(c) for c in clips], top_k=3) as run:
        results = list(run)
    by = defaultdict(list)
    for r in results:
        by[r.source].append(r)
    for i, c in enumerate(clips):
        decoded = decode_all(c)
        got = by[str(c)]
        assert [r.frame for r in got] == list(range(len(decoded))), "every frame, in order"
        for r, img in zip(got, decoded):
            assert np.array_equal(r.image_bgr, img) and r.source_index == i
            assert_as_alone(clf, r)
        row = got[2].row()
        assert (row["path"], row["source"], row["frame"], row["dropped"]) == (str(c), str(c), 2, 0)
        assert row["timestamp_ms"] == pytest.approx(200.0)
    assert len({r.classification.predictions[0].index for r in results}) > 1, "the model must tell frames apart"
    assert_rounds_exact(clf, results)
    # Concurrent, not one after another: rounds batch several sources, and every source is
    # served from the first rounds while the others still have frames. Files alone fill the
    # batch (8): each its share, consecutive frames.
    assert run.rounds < len(results) / 3
    assert max(r.classification.timings_ms["batch"] for r in results) > 3
    assert all(len({r.source for r in results if r.round == k}) == 3 for k in range(2))
    first = {s: min(r.round for r in rs) for s, rs in by.items()}
    last = {s: max(r.round for r in rs) for s, rs in by.items()}
    assert max(first.values()) < min(last.values())
    assert [st.state for st in run.stats] == ["ended"] * 3
    assert [st.frames for st in run.stats] == [9, 12, 7]


def test_every_nth_frame_of_each_file(clf, clips):
    with MultiStream(clf, [str(c) for c in clips], every=3) as run:
        got = defaultdict(list)
        for r in run:
            got[r.source].append(r.frame)
    assert [got[str(c)] for c in clips] == [[0, 3, 6], [0, 3, 6, 9], [0, 3, 6]]


def test_a_static_batch_model_pads_a_short_round(tmp_path, clips):
    model = tiny_models.make(tmp_path / "static4.onnx", classes=8, seed=1, batch=4)  # batch 4 in the graph
    clf4 = Classifier(model, EngineOptions(engine="onnxruntime", providers="cpu"))
    with MultiStream(clf4, [str(c) for c in clips]) as run:  # rounds of 3 (and fewer at the end) into batch 4
        results = list(run)
    assert len(results) == 9 + 12 + 7
    for r in results[::4]:
        assert_as_alone(clf4, r)


def test_a_missing_file_is_reported_and_the_others_go_on(clf, clips, tmp_path):
    events = []
    missing = str(tmp_path / "gone.mp4")
    with MultiStream(clf, [str(clips[0]), missing], on_event=lambda st, kind, msg: events.append((st.name, kind))) \
            as run:
        results = list(run)
    assert len(results) == 9 and {r.source for r in results} == {str(clips[0])}
    assert (missing, "failed") in events and run.stats[1].error == "no such video file"
    with pytest.raises(EdgeClassifyError, match="no such video file"):
        list(MultiStream(clf, [str(clips[0]), missing], stop_on_loss=True))


# --------------------------------------------------------------------------- live: the fair order
def test_no_source_starves_when_more_are_ready_than_a_batch_holds(clf, pictures):
    """Five sources, batch 2, a model slower than the sources: every round is full and each
    source is served at least once every ceil(5 / 2) = 3 rounds."""
    caps = {f"cam{i}": FakeCapture(delay=0.001, base=frames_of(pictures, (160, 120), 3, i)) for i in range(5)}

    def opener(value, *api):
        return caps[value]

    sources = [(name, f"rtsp://cams.local/{name}") for name in caps]
    run = MultiStream(Slow(clf, 0.02), sources, batch_size=2,
                      opener=lambda url, *a: opener(url.rsplit("/", 1)[1]))
    results = []
    for r in run:
        results.append(r)
        if r.round >= 30:
            break
    run.close()
    assert all(c.released for c in caps.values())
    rounds = defaultdict(list)
    for r in results:
        rounds[r.round].append(r.source)
    for k in range(1, 30):
        assert len(rounds[k]) == 2 and len(set(rounds[k])) == 2
    for name in caps:
        served = [k for k in range(30) if name in rounds[k]]
        assert served[0] <= 2 and max(b - a for a, b in zip(served, served[1:])) <= math.ceil(5 / 2)
    counts = Counter(r.source for r in results if r.round < 30)
    assert max(counts.values()) - min(counts.values()) <= 1
    dropped = {st.name: st.dropped for st in run.stats}
    assert all(d > 0 for d in dropped.values()), "sources outran the model: frames were dropped, not queued"
    for r in results[:10]:
        assert_as_alone(clf, r)


def test_a_reconnect_is_counted_even_when_the_loop_was_busy_throughout(clf, pictures):
    """The camera drops and comes back while one slow inference runs: the loop may never see
    it reconnecting, yet the count and the "live again" report are there."""
    base = frames_of(pictures, (160, 120), 3)
    opener = Script(FakeCapture(frames=3, delay=0.001, base=base), FakeCapture(start=3, delay=0.001, base=base))
    events = []
    run = MultiStream(Slow(clf, 0.2), [("cam", "rtsp://cams.local/cam")], backoff=(0.01, 0.01), opener=opener,
                      on_event=lambda st, kind, msg: events.append(kind))
    for r in run:
        if r.round >= 3:
            break
    run.close()
    assert run.stats[0].reconnects == 1 and "live" in events and run.stats[0].state == "live"
    assert len(opener.opened) == 2


def test_a_live_source_that_never_opens_beside_a_file(clf, clips):
    """The file is classified to its end; the live source is lost (never opened), and with
    every live source lost the run ends with StreamLost (exit 75) once the file is done."""
    events, results = [], []
    url = f"http://127.0.0.1:{free_port()}/video.mjpg"
    run = MultiStream(clf, [str(clips[1]), ("door", url)], reconnect_s=1.0, backoff=(0.1, 0.2),
                      on_event=lambda st, kind, msg: events.append((st.name, kind)))
    with pytest.raises(StreamLost, match="every live source was lost: door") as e:
        for r in run:
            results.append(r)
    assert e.value.exit_code == 75
    assert [r.frame for r in results] == list(range(12))
    assert ("door", "lost") in events and "could not open live source" in run.stats[1].error
    assert [st.state for st in run.stats] == ["ended", "lost"]


# --------------------------------------------------------------------------- live: real streams on loopback
def test_live_streams_on_loopback_one_lost_one_reconnects_the_others_go_on(clf, pictures):
    """Three MJPEG-over-HTTP cameras: "dock" is unplugged for good (lost after the reconnect
    budget), "yard" is unplugged and plugged back (reconnects), "gate" never stops; rows
    keep coming from the live ones throughout, and no error ends the run."""
    small = frames_of(pictures, (160, 120), 9)
    gate, dock, yard = (MjpegServer(small[i::3], fps=20).start() for i in range(3))
    events = []
    run = MultiStream(clf, [("gate", gate.url), ("dock", dock.url), ("yard", yard.url)], reconnect_s=2.0,
                      backoff=(0.1, 0.3), on_event=lambda st, kind, msg: events.append((st.name, kind)))
    seen = defaultdict(list)
    phase, deadline = 0, time.monotonic() + 60
    try:
        for r in run:
            seen[r.source].append((r, len(events)))
            assert time.monotonic() < deadline, f"no end in 60 s: {events}, {[(s, len(v)) for s, v in seen.items()]}"
            if phase == 0 and all(len(seen[s]) >= 5 for s in ("gate", "dock", "yard")):
                dock.kill()
                yard.kill()
                phase = 1
            elif phase == 1 and ("yard", "reconnecting") in events:
                yard.start()  # the same port: the camera is back
                phase = 2
            elif phase == 2 and ("dock", "lost") in events and ("yard", "live") in events:
                mark = len(events)
                phase, after = 3, {"gate": len(seen["gate"]), "yard": len(seen["yard"])}
            elif phase == 3 and all(len(seen[s]) >= after[s] + 5 for s in after):
                break
    finally:
        run.close()
        for s in (gate, dock, yard):
            s.kill()
    st = {s.name: s for s in run.stats}
    assert st["dock"].state == "lost" and "lost live source" in st["dock"].error
    assert st["yard"].state == "live" and st["yard"].reconnects == 1
    assert st["gate"].state == "live" and st["gate"].reconnects == 0
    assert all(n >= mark for _, n in seen["gate"][-5:]), "gate went on after dock was lost"
    for name, got in seen.items():
        frames = [r.frame for r, _ in got]
        assert frames == sorted(set(frames)), f"{name}: frame numbers go forward"
    for name in ("gate", "yard"):
        for r, _ in seen[name][-3:]:
            assert_as_alone(clf, r)


class Command:
    """``edge-classify`` as a user runs it, its stdout rows and stderr lines read on threads."""

    def __init__(self, args):
        env = dict(os.environ, PYTHONFAULTHANDLER="1")  # a hang is diagnosed: SIGABRT prints every stack
        # SIGINT as a terminal has it: a runner started in the background (`nohup bash .ci/run &`)
        # passes it on ignored, and Python then keeps ignoring it: Ctrl-C would never arrive.
        self.proc = subprocess.Popen([script("edge-classify"), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace", env=env,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.rows, self.err = queue.Queue(), []
        self.by_source = Counter()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self):
        for line in self.proc.stdout:
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by the signal: keep reading, or a full pipe would block it
                self.err.append(f"(stdout, not a row) {line!r}")
                continue
            self.by_source[row["source"]] += 1
            self.rows.put(row)

    def _read_err(self):
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def wait_for(self, what, timeout=45.0):
        deadline = time.monotonic() + timeout
        while not what():
            if time.monotonic() > deadline or self.proc.poll() is not None and not what():
                self.proc.kill()
                raise AssertionError(f"waited in vain; rows {dict(self.by_source)}; stderr:\n" + "\n".join(self.err))
            time.sleep(0.05)

    def finish(self, timeout=60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            time.sleep(3)
            raise AssertionError(f"still running {timeout:.0f} s on; its stderr (stacks last):\n"
                                 + "\n".join(self.err[-120:])) from None
        finally:
            self.proc.kill()
            time.sleep(0.1)  # the reader threads take the last lines

    def said(self, text) -> bool:
        return any(text in line for line in self.err)


@pytest.fixture
def cams(tmp_path, pictures):
    small = frames_of(pictures, (160, 120), 6)
    servers = [MjpegServer(small[i::2], fps=20).start() for i in range(2)]
    listing = tmp_path / "cams.txt"
    listing.write_text(f"# the shop floor\ngate={servers[0].url}\n\ndock = {servers[1].url}\n")
    yield servers, listing
    for s in servers:
        s.kill()


def test_cli_one_source_lost_the_other_goes_on_then_ctrl_c_summarises(clf, cams):
    (gate, dock), listing = cams
    run = Command(["--model", str(clf.model_path), "--json", "--reconnect", "1.5", "--sources", str(listing)])
    run.wait_for(lambda: run.by_source["gate"] >= 3 and run.by_source["dock"] >= 3)
    dock.kill()
    run.wait_for(lambda: run.said("dock: lost live source"))
    at_loss = run.by_source["gate"]
    run.wait_for(lambda: run.by_source["gate"] >= at_loss + 5)  # gate goes on
    run.proc.send_signal(signal.SIGINT)
    rc = run.finish()
    assert rc == 1, "a source was lost (not every one): 1, not 75"
    assert run.said("edge-classify: interrupted")
    summary = [line for line in run.err if "frame(s) classified" in line]
    assert any(line.startswith("edge-classify: gate: ") for line in summary)
    assert any(line.startswith("edge-classify: dock: ") and "lost:" in line for line in summary)
    assert run.said("2 sources: ")
    row = run.rows.get_nowait()
    assert {"source", "frame", "timestamp_ms", "dropped", "predictions"} <= set(row) and row["path"] == row["source"]


def test_cli_every_live_source_lost_ends_with_75_and_stop_on_loss_at_the_first(clf, cams):
    (gate, dock), listing = cams
    run = Command(["--model", str(clf.model_path), "--json", "-q", "--reconnect", "1", "--stop-on-loss",
                   "--sources", str(listing)])
    run.wait_for(lambda: run.by_source["gate"] >= 2 and run.by_source["dock"] >= 2)
    dock.kill()
    assert run.finish() == 75
    assert run.said("dock: lost live source") and gate.server is not None, "gate was still up"
    dock.start()

    run = Command(["--model", str(clf.model_path), "--json", "-q", "--reconnect", "1", "--sources", str(listing)])
    run.wait_for(lambda: run.by_source["gate"] >= 2 and run.by_source["dock"] >= 2)
    gate.kill()
    dock.kill()
    assert run.finish() == 75
    assert run.said("every live source was lost: gate, dock")


# --------------------------------------------------------------------------- saving
def test_save_a_folder_of_annotated_videos_and_a_mosaic(clf, clips, tmp_path, capsys):
    out = tmp_path / "out"
    wall = tmp_path / "wall.png"
    args = ["--model", str(clf.model_path), "-q", "--save", str(out), *map(str, clips), str(clips[0])]
    assert classify.main(args) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["mosaic.mp4", "portrait.mp4", "small.mp4", "wide.mp4", "wide_2.mp4"]
    for name, n in (("wide", 9), ("small", 12), ("portrait", 7), ("wide_2", 9)):
        assert len(decode_all(out / f"{name}.mp4")) == n, name
    mosaic = decode_all(out / "mosaic.mp4")
    assert mosaic and mosaic[0].shape == (720, 1280, 3)  # 4 sources: 2 x 2 tiles of 640 x 360

    assert classify.main(["--model", str(clf.model_path), "-q", "--mosaic", str(wall), *map(str, clips)]) == 0
    grid = cv2.imread(str(wall))
    assert grid.shape == (720, 1280, 3)
    tiles = [grid[r * 360:(r + 1) * 360, c * 640:(c + 1) * 640] for r in range(2) for c in range(2)]
    assert all(t.std() > 10 for t in tiles[:3]) and tiles[3].max() == 0, "three sources drawn, the fourth tile empty"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name], "the image is replaced atomically"

    assert classify.main(["--model", str(clf.model_path), "--mosaic", str(tmp_path / "wall.gif"), str(clips[0])]) == 2
    assert "cannot save to" in capsys.readouterr().err


# --------------------------------------------------------------------------- sources and names
def test_sources_file(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a=b.mp4").write_bytes(b"")
    listing = tmp_path / "cams.txt"
    listing.write_text("# cameras\n\ngate = rtsp://admin:pw@10.0.0.5/live?ch=1&sub=0\nrtsp://10.0.0.6/s?x=1\n"
                       "clips/a=b.mp4\nlobby=clips/lobby.mp4\nbay=camera:2\nv4l2src ! videoconvert ! appsink\n")
    got = read_sources_file(listing)
    assert got == [("gate", "rtsp://admin:pw@10.0.0.5/live?ch=1&sub=0"), (None, "rtsp://10.0.0.6/s?x=1"),
                   (None, str(tmp_path / "clips" / "a=b.mp4")), ("lobby", str(tmp_path / "clips" / "lobby.mp4")),
                   ("bay", "camera:2"), (None, "v4l2src ! videoconvert ! appsink")]
    names = [s.name for s in named_sources(got + [(None, "rtsp://10.0.0.6/s?x=1")])]
    assert names[:2] == ["gate", "rtsp://10.0.0.6/s?x=1"] and names[-1] == "rtsp://10.0.0.6/s?x=1#2"
    assert "pw" not in named_sources(["rtsp://admin:pw@10.0.0.5/live"])[0].name
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(EdgeClassifyError, match="lists no source"):
        read_sources_file(tmp_path / "empty.txt")
    with pytest.raises(EdgeClassifyError, match="cannot read the sources file"):
        read_sources_file(tmp_path / "missing.txt")


def test_cli_loads_the_model_for_the_rounds_batch_and_shows_each_rate(clf, clips, pictures, capsys, monkeypatch):
    """Videos alone fill whole batches (the model loaded for --batch-size 8); with live sources
    a round holds one frame per source, and the model is loaded for that batch (loaded for 8,
    OpenVINO padded 4 cameras' rounds to 8). The rolling line names every source."""
    from edge_classify.runtime import classifier

    loaded = []
    real = classifier.Classifier.__init__

    def spy(self, *args, **kw):
        loaded.append(kw.get("batch_size"))
        real(self, *args, **kw)

    monkeypatch.setattr(classifier.Classifier, "__init__", spy)
    monkeypatch.setattr(classify, "FPS_REPORT_EVERY_S", 0.0)
    assert classify.main(["--model", str(clf.model_path), "--json", *map(str, clips)]) == 0
    out, err = capsys.readouterr()
    assert loaded == [8]
    rows = [json.loads(line) for line in out.splitlines()]
    assert Counter(r["source"] for r in rows) == {str(clips[0]): 9, str(clips[1]): 12, str(clips[2]): 7}
    rate_lines = [line for line in err.splitlines() if "frames/s (last 5 s): " in line]
    assert rate_lines and all(str(c) in rate_lines[0] for c in clips)
    assert "[ended]" in rate_lines[-1]

    # Two cameras beside the videos: batch min(8, 5); both cameras unplugged once they have
    # sent a few frames, so every live source is lost: the videos are finished, then 75.
    loaded.clear()
    small = frames_of(pictures, (160, 120), 4)
    cams = [MjpegServer(small[i::2], fps=20).start() for i in range(2)]

    def unplug():
        deadline = time.monotonic() + 30
        while any(c.sent < 10 for c in cams) and time.monotonic() < deadline:
            time.sleep(0.05)
        for c in cams:
            c.kill()

    threading.Thread(target=unplug, daemon=True).start()
    try:
        rc = classify.main(["--model", str(clf.model_path), "--json", "-q", "--reconnect", "0.5",
                            *map(str, clips), cams[0].url, cams[1].url])
    finally:
        for c in cams:
            c.kill()
    out, err = capsys.readouterr()
    assert loaded == [5] and rc == 75
    assert "every live source was lost" in err
    rows = Counter(json.loads(line)["source"] for line in out.splitlines())
    assert [rows[str(c)] for c in clips] == [9, 12, 7] and rows[cams[0].url] > 0 and rows[cams[1].url] > 0


def test_the_wall_image_shows_a_lost_source_without_waiting_for_a_frame(tmp_path, pictures):
    """A mosaic image is rewritten at most every second; a state change (here: lost) is
    drawn at the next refresh even when no source delivers a frame any more."""
    from edge_classify.runtime.apps.multistream import Recorder

    now = [0.0]
    wall = tmp_path / "wall.jpg"
    rec = Recorder(named_sources([("gate", "rtsp://cams.local/gate"), ("dock", "rtsp://cams.local/dock")]),
                   mosaic=wall, clock=lambda: now[0])
    tile = rec.mosaic.tile
    frame = cv2.resize(pictures[0], (640, 360))
    for i in range(2):
        rec.mosaic.update(i, frame, [])
    rec.refresh(["live", "live"])
    before = cv2.imread(str(wall))[: tile[1], : tile[0]].astype(float)
    now[0] += 0.5
    rec.refresh(["lost", "live"])  # within the second: not rewritten yet
    assert np.array_equal(cv2.imread(str(wall))[: tile[1], : tile[0]], before.astype(np.uint8))
    now[0] += 0.6
    rec.refresh(["lost", "live"])
    after = cv2.imread(str(wall))
    lost, live = after[: tile[1], : tile[0]].astype(float), after[: tile[1], tile[0]:].astype(float)
    assert lost.mean() < 0.7 * before.mean() and abs(live.mean() - before.mean()) < 5, "the lost tile is dimmed"
    rec.close(["lost", "lost"])
