"""Many sources, one model: cameras, streams and video files classified concurrently in one process.

The shape is DeepStream's ``nvstreammux`` and Ultralytics' stream loader: one reader thread
per source, one inference loop that batches the current frame of every ready source, and
results per source.

* **Readers** (streams.py's ``_LiveReader``, and ``_FileReader`` here). A live source keeps
  only its newest frame: the loop takes what is newest when it is free, and the frames
  overwritten meanwhile are counted as dropped, so latency stays bounded by one round.
  A video file is a record: it is read completely and in order, a few frames ahead
  (``FILE_AHEAD``, or a batch), and the reader waits for the loop instead of dropping.
* **Batching.** Each round takes at most one frame per source, up to the batch size (with
  files alone, each file's share of the batch: consecutive frames), in a round-robin order: sources wait in a queue, the first ready ones in it are served, and
  those served go to its back. When more sources are ready than a batch holds, every source
  is served at least once every ceil(sources / batch) rounds and all equally often: none
  starves, none is favoured. (Ordering by "last served round" alone is not enough: sources
  served in the same round then tie, and a fixed tie-break favours the same ones.) Live
  sources are never waited for. When only files are ready, one that has no frame decoded
  yet is waited for a moment (``FILE_WAIT_S``), so files advance together instead of one
  racing ahead; a ready live frame is never held back for a file. The
  picked frames are resized on a thread pool kept for the run, then run as one inference
  (``Classifier.classify_prepared``: the same preprocessing and rows as images, so a frame's
  prediction is what classifying that decoded picture alone gives). A static-batch model's
  runner pads a short batch.
* **Losses.** A live source that stops delivering reconnects with backoff (streams.py); one
  whose reconnect budget runs out, or one that never opens, is *lost*: reported
  (``on_event``) while the others go on. The run ends with ``StreamLost`` (exit 75) when every
  live source is lost, or at the first loss with ``stop_on_loss``. A file that cannot be read
  is *failed* likewise; it does not end the others.

``MultiStream`` is the Python API (an iterator of ``FrameResult``, its ``stats`` per source);
``edge-classify`` with several videos or streams, or ``--sources FILE``, is a thin shell over
it. ``Recorder`` writes ``--save`` (an annotated copy per source) and ``--mosaic`` (all
sources in one grid, for a monitor on the wall).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from ..errors import EXIT_OUTPUT, EXIT_USAGE, EdgeClassifyError, first_line
from ..host import deps
from ..images import codec_messages, decode_pool
from .streams import (
    Frame,
    FrameResult,
    RollingRate,
    StreamLost,
    StreamSource,
    VideoSaver,
    _file_frames,
    _LiveReader,
    _ReaderThread,
    annotate,
    parse_source,
)

FILE_AHEAD = 4  # frames a file's reader decodes ahead of the loop
FILE_WAIT_S = 0.5  # longest a round waits for a file that has no frame decoded yet
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # a name in a sources file: no ':' or '/', so never a URL

Source = Union[str, int, StreamSource, tuple]  # tuple: (name, source); Union: run at import, on 3.8 too


# --------------------------------------------------------------------------- naming sources
@dataclass(frozen=True)
class NamedSource:
    """A source and the name its rows, messages and saved files carry."""

    name: str
    source: StreamSource
    given: bool = False  # the name was given (a sources file's NAME=), not the source's own


def named_sources(items: Iterable[Source | NamedSource]) -> list[NamedSource]:
    """Sources (``parse_source``'s forms, or ``(name, source)``) with unique names: a source's
    own name (a URL's password masked) unless given one; a repeated name gets ``#2``, ``#3``."""
    out, seen = [], {}
    for item in items:
        given = False
        if isinstance(item, NamedSource):
            name, src, given = item.name, item.source, item.given
        elif isinstance(item, tuple):
            name, text = item
            src = text if isinstance(text, StreamSource) else parse_source(text)
            given = bool(name)
            name = name or src.name
        else:
            src = item if isinstance(item, StreamSource) else parse_source(item)
            name = src.name
        seen[name] = seen.get(name, 0) + 1
        out.append(NamedSource(name if seen[name] == 1 else f"{name}#{seen[name]}", src, given))
    return out


def read_sources_file(path: str | os.PathLike) -> list[tuple[str | None, str]]:
    """``--sources FILE``: one source per line, ``[NAME=]SOURCE``; blank lines and ``#``
    comments skipped. NAME is letters, digits, ``_.-`` (so a URL is never taken for one); a
    line that names an existing file is that file even with a ``=`` in it. A relative file
    path is relative to the sources file's folder, as in a playlist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeClassifyError(f"cannot read the sources file {path}: {getattr(exc, 'strerror', None) or exc}",
                                exit_code=EXIT_USAGE) from None
    base, out = path.parent, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, source = None, line
        head, eq, rest = line.partition("=")
        if eq and _NAME.fullmatch(head.strip()) and rest.strip() and not (base / line).is_file():
            name, source = head.strip(), rest.strip()
        src = parse_source(source)
        if src.kind == "file" and not os.path.isabs(source):
            source = str(base / source)
        out.append((name, source))
    if not out:
        raise EdgeClassifyError(f"the sources file {path} lists no source", exit_code=EXIT_USAGE)
    return out


# --------------------------------------------------------------------------- per source
@dataclass
class SourceStats:
    """One source's run so far. ``state``: opening, then live / reconnecting (live sources) or
    playing (files); at the end ended (a file read to its end), lost (a live source past its
    reconnect budget, or never opened) or failed (a file that could not be read)."""

    name: str
    kind: str
    live: bool
    state: str = "opening"
    frames: int = 0  # classified
    dropped: int = 0  # live: frames overwritten before the loop could take them
    failed: int = 0  # frames the model could not score
    reconnects: int = 0
    last_frame: int = -1
    error: str | None = None
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    rate: RollingRate = field(default_factory=RollingRate, repr=False)

    @property
    def active(self) -> bool:
        return self.state not in ("ended", "lost", "failed")

    def fps(self) -> float:
        took = (self.ended or time.perf_counter()) - self.started
        return self.frames / took if took > 0 else 0.0

    def summary(self) -> str:
        took = (self.ended or time.perf_counter()) - self.started
        line = (f"{self.name}: {self.frames} frame(s) classified" + (f", {self.dropped} dropped" if self.dropped else "")
                + (f", {self.failed} failed" if self.failed else "")
                + f" in {took:.1f} s ({self.fps():.1f} frames/s)")
        if self.reconnects:
            line += f", {self.reconnects} reconnect(s)"
        if self.state in ("lost", "failed"):
            line += f"; {self.state}: {self.error}"
        return line


class _FileReader(_ReaderThread):
    """Reads a video file on a thread, every wanted frame in order, at most ``ahead`` frames
    ahead of the loop (it waits rather than drops)."""

    def __init__(self, src: StreamSource, every: int, opener, cond: threading.Condition, ahead: int = FILE_AHEAD):
        self.src, self.every, self.opener, self._cond, self.ahead = src, every, opener, cond, ahead
        self._queue: deque[Frame] = deque()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._done = False
        self.state, self.reconnects = "opening", 0
        self._thread = threading.Thread(target=self._run, name="edge-file-reader", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return bool(self._queue)

    @property
    def finished(self) -> bool:
        return self._done and not self._queue

    def take_nowait(self) -> Frame | None:
        """The next frame, or None (call with the condition held)."""
        if not self._queue:
            return None
        frame = self._queue.popleft()
        self._cond.notify_all()  # room for the reader
        return frame

    def _run(self) -> None:
        items = _file_frames(self.src, self.every, self.opener)
        try:
            for frame in items:
                with self._cond:
                    self.state = "playing"
                    while len(self._queue) >= self.ahead and not self._stop.is_set():
                        self._cond.wait(0.5)
                    if self._stop.is_set():
                        return
                    self._queue.append(frame)
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the loop: the source failed
            with self._cond:
                self.error = exc
        finally:
            items.close()  # releases the capture, on this thread
            with self._cond:
                self._done, self.state = True, "ended"
                self._cond.notify_all()


@dataclass
class _Event:
    index: int
    kind: str  # reconnecting | live (again) | ended | lost | failed
    message: str


# --------------------------------------------------------------------------- the loop
class MultiStream:
    """Classify many sources concurrently: iterate it for ``FrameResult``s as each round
    finishes (a round's frames in the order they were served); ``stats`` has each source's
    counts and state, in the order given.

    ``sources``: what ``named_sources`` takes. ``every``: classify every Nth frame of each
    source. ``batch_size``: frames per inference, at most one per source (default: the
    classifier's). ``reconnect_s`` / ``backoff``: how long a live source is reopened, and the
    first and longest wait between attempts. ``stop_on_loss``: the first lost or failed
    source raises its error at once, instead of being reported while the others go on.
    ``on_event(stats, kind, message)``: hears of a source reconnecting, live again, ended,
    lost or failed. ``opener``, ``clock``, ``sleep``: injectable for tests (streams.py).
    Closing it (or leaving a ``with`` block) stops the readers and releases every capture.
    """

    def __init__(self, classifier, sources: Iterable[Source | NamedSource], *, every: int = 1, top_k: int = 3,
                 batch_size: int | None = None, reconnect_s: float = 30.0, backoff: tuple[float, float] = (0.5, 8.0),
                 stop_on_loss: bool = False, on_event: Callable[[SourceStats, str, str], Any] | None = None,
                 opener: Callable | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] | None = None):
        if every < 1:
            raise EdgeClassifyError("every must be at least 1", exit_code=EXIT_USAGE)
        self.sources = named_sources(sources)
        if not self.sources:
            raise EdgeClassifyError("no sources to classify", exit_code=EXIT_USAGE)
        self.classifier, self.every, self.top_k = classifier, every, top_k
        self.batch_size = batch_size or classifier.batch_size
        if self.batch_size < 1:
            raise EdgeClassifyError("batch size must be at least 1", exit_code=EXIT_USAGE)
        self.reconnect_s, self.backoff, self.stop_on_loss = reconnect_s, backoff, stop_on_loss
        self.on_event, self.opener, self.clock, self.sleep = on_event, opener, clock, sleep
        self.stats = [SourceStats(s.name, s.source.kind, s.source.live) for s in self.sources]
        self.rate = RollingRate()  # all sources together
        self.rounds = 0
        self._cond = threading.Condition()
        self._readers: list = []
        self._pool: ThreadPoolExecutor | None = None
        self._gen: Iterator[FrameResult] | None = None
        self._shut = False

    # --- iterator and lifetime -------------------------------------------------------
    def __iter__(self) -> MultiStream:
        return self

    def __next__(self) -> FrameResult:
        if self._gen is None:
            self._gen = self._results()
        return next(self._gen)

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()  # its finally shuts down
        self._shutdown()

    def __enter__(self) -> MultiStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        for s in self.sources:
            if s.source.live:
                r = _LiveReader(s.source, self.every, self.opener, self.reconnect_s, self.backoff, self.clock,
                                self.sleep, cond=self._cond)
            else:
                r = _FileReader(s.source, self.every, self.opener, self._cond, max(FILE_AHEAD, self.batch_size))
            self._readers.append(r)
        workers = max(1, min(self.batch_size, self.classifier.decode_threads))  # a round's frames, resized together
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="edge-frame-resize")

    def _shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        for r in self._readers:  # all told first: they stop together, not one join after another
            r.stop()
        deadline = time.monotonic() + 5.0  # for all of them: a capture stuck in a network read is left behind
        for r in self._readers:
            r.close(max(0.0, deadline - time.monotonic()))
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        now = time.perf_counter()
        for st in self.stats:
            st.ended = st.ended or now

    # --- the rounds ------------------------------------------------------------------
    def _results(self) -> Iterator[FrameResult]:
        self._start()
        clf = self.classifier
        spec, options = clf.contract.preprocess, clf.decode_options
        rgb = options.array_color_order == "RGB"
        order = list(range(len(self.sources)))  # the round-robin queue: served ones go to its back

        def prepare(item):
            i, f = item
            picture = f.image_bgr[..., ::-1] if rgb else f.image_bgr
            return replace(decode_pool.prepare(picture, spec, options), source=self.sources[i].name)

        try:
            with codec_messages.held():  # fd 2 stays put for the whole run, not switched per frame
                while (picked := self._next_round(order)) is not None:
                    results = clf.classify_prepared(list(self._pool.map(prepare, picked)), self.top_k)
                    done = time.perf_counter()
                    for (i, f), res in zip(picked, results):
                        st = self.stats[i]
                        st.frames += 1
                        st.dropped += f.dropped_before
                        st.failed += res.error is not None
                        st.last_frame = f.index
                        st.rate.tick()
                        self.rate.tick()
                        yield FrameResult(st.name, f.index, f.timestamp_ms, f.dropped_before, f.fps, res,
                                          f.image_bgr, clf, latency_ms=(done - f.captured) * 1e3, source_index=i,
                                          round=self.rounds)
                    self.rounds += 1
            self._check_all_lost()
        finally:
            self._shutdown()

    def _next_round(self, order: list[int]) -> list[tuple[int, Frame]] | None:
        """The frames of the next round, waiting for one; None when every source has ended.
        ``order``: the round-robin queue, updated here."""
        deadline = None
        while True:
            with self._cond:
                events = self._changes()
                if not events:
                    active = [i for i, st in enumerate(self.stats) if st.active]
                    if not active:
                        return None
                    ready = [i for i in active if self._readers[i].ready]
                    waiting = [i for i in active if not self.sources[i].source.live and not self._readers[i].ready]
                    now = time.monotonic()
                    if ready and waiting and deadline is None:
                        deadline = now + FILE_WAIT_S
                    live_ready = any(self.sources[i].source.live for i in ready)
                    if ready and (not waiting or live_ready or now >= deadline):
                        picked = [i for i in order if i in ready][: self.batch_size]
                        order[:] = [i for i in order if i not in picked] + picked
                        # Files alone: no camera waits on a bigger batch, so each file gives its
                        # share of it (consecutive frames), not one frame a round.
                        share = 1 if any(self.sources[i].source.live for i in active) else \
                            max(1, self.batch_size // len(active))
                        out = []
                        for i in picked:
                            for _ in range(share):
                                if len(out) == self.batch_size or not self._readers[i].ready:
                                    break
                                out.append((i, self._readers[i].take_nowait()))
                        return out
                    self._cond.wait(max(0.01, min(0.5, deadline - now)) if deadline is not None else 0.5)
                    continue
            for ev in events:  # outside the lock: a caller's callback may be slow
                self._report(ev)

    def _changes(self) -> list[_Event]:
        """What changed in the readers since last asked (under the condition)."""
        events = []
        for i, (r, st) in enumerate(zip(self._readers, self.stats)):
            if not st.active:
                continue
            if r.finished:
                st.ended = time.perf_counter()
                if r.error is None:
                    st.state = "ended"
                    events.append(_Event(i, "ended", f"ended after {st.frames} frame(s)"))
                    continue
                st.state = "lost" if st.live else "failed"
                st.error = r.error.message if isinstance(r.error, EdgeClassifyError) else \
                    f"{type(r.error).__name__}: {first_line(r.error)}"
                own = f"{self.sources[i].source.name}: "  # a file's errors start with its name: said once
                st.error = st.error[len(own):] if st.error.startswith(own) else st.error
                events.append(_Event(i, st.state, st.error))
            elif r.state in ("live", "reconnecting", "playing") and \
                    (r.state != st.state or r.reconnects != st.reconnects):
                # A drop and its reconnect can both happen between two looks: the count says so.
                before, missed = st.state, r.reconnects != st.reconnects
                st.state, st.reconnects = r.state, r.reconnects
                if r.state == "reconnecting":
                    events.append(_Event(i, "reconnecting", "no frame: reconnecting"))
                elif before == "reconnecting" or missed:
                    events.append(_Event(i, "live", "live again"))
        return events

    def _report(self, ev: _Event) -> None:
        st = self.stats[ev.index]
        if self.on_event is not None:
            self.on_event(st, ev.kind, ev.message)
        if self.stop_on_loss and ev.kind in ("lost", "failed"):
            raise self._readers[ev.index].error

    def _check_all_lost(self) -> None:
        live = [st for st in self.stats if st.live]
        if live and all(st.state == "lost" for st in live):
            if len(self.stats) == 1:
                raise self._readers[0].error
            raise StreamLost(f"every live source was lost: {', '.join(st.name for st in live)}")


def classify_stream(classifier, source: str | int | StreamSource, *, every: int = 1, top_k: int = 3,
                    **frame_options) -> Iterator[FrameResult]:
    """Classify one source frame by frame (``frame_options``: ``MultiStream``'s ``reconnect_s``,
    ``backoff``, ``opener``, ``clock``, ``sleep``): the loop over one source, whose loss or
    failure raises at once.

    Each frame's prediction equals classifying that picture. A frame the model cannot score
    (non-finite output) yields a result with ``classification.error`` set; the stream goes on.
    Closing the iterator stops the reader and releases the capture.
    """
    return MultiStream(classifier, [source], every=every, top_k=top_k, stop_on_loss=True, **frame_options)


# --------------------------------------------------------------------------- saving
MOSAIC_FPS = 10.0  # a mosaic video's frame rate, by the wall clock: what a monitor showed
MOSAIC_IMAGE_EVERY_S = 1.0  # a mosaic image is rewritten this often (atomically)
MOSAIC_WIDTH = 1920


def safe_file_name(name: str) -> str:
    """A source's name as a file name: anything but letters, digits and ``_.-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:80] or "source"


class Mosaic:
    """All sources in one grid: each tile the source's newest classified frame with its
    labels and name, dimmed with its state when it is not live (reconnecting, lost, ended).
    A video (``.mp4``/``.avi``/``.mkv``: ``MOSAIC_FPS`` frames per second of wall time) or an
    image (``.jpg``/``.png``: rewritten about every second, atomically, for a monitor that
    reloads it)."""

    def __init__(self, path: str | os.PathLike, names: Sequence[str], clock: Callable[[], float] = time.monotonic):
        self.path, self.names, self.clock = Path(path), list(names), clock
        n = len(self.names)
        self.cols = math.ceil(math.sqrt(n))
        self.rows = math.ceil(n / self.cols)
        w = min(640, MOSAIC_WIDTH // self.cols) // 2 * 2
        self.tile = (w, (w * 9 // 16) // 2 * 2)
        self.image = self.path.suffix.lower() in VideoSaver.IMAGES
        self._video = None if self.image else VideoSaver(self.path, MOSAIC_FPS, self.size)  # checks the suffix
        self._last: list[tuple[np.ndarray, list] | None] = [None] * n
        self._states = ["opening"] * n
        self._t0 = None
        self._written = 0
        self._last_image = -math.inf

    @property
    def size(self) -> tuple[int, int]:
        return self.tile[0] * self.cols, self.tile[1] * self.rows

    def update(self, index: int, frame_bgr: np.ndarray, shown: list) -> None:
        self._last[index] = (frame_bgr, shown)

    def tick(self, states: Sequence[str]) -> None:
        """Write what is due by now (call after each result)."""
        self._states = list(states)
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        if self.image:
            if now - self._last_image >= MOSAIC_IMAGE_EVERY_S:
                self._last_image = now
                self._write_image()
            return
        due = int((now - self._t0) * MOSAIC_FPS) + 1
        if due > self._written:
            n = min(due - self._written, int(5 * MOSAIC_FPS))  # after a long stall: 5 s of the same picture
            self._video.write(self.render(), repeat=n)
            self._written = due

    def close(self, states: Sequence[str] | None = None) -> None:
        if states is not None:
            self._states = list(states)
        if self.image:
            self._write_image()
        else:
            if self._written == 0:
                self._video.write(self.render())
            self._video.close()

    def render(self) -> np.ndarray:
        cv2 = deps.cv2()
        tw, th = self.tile
        out = np.zeros((th * self.rows, tw * self.cols, 3), np.uint8)
        for i, name in enumerate(self.names):
            r, c = divmod(i, self.cols)
            tile = out[r * th:(r + 1) * th, c * tw:(c + 1) * tw]
            last = self._last[i]
            if last is not None:
                frame, shown = last
                h, w = frame.shape[:2]
                scale = min(tw / w, th / h)
                fw, fh = max(1, int(w * scale)), max(1, int(h * scale))
                small = annotate(cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA), shown)
                y, x = (th - fh) // 2, (tw - fw) // 2
                tile[y:y + fh, x:x + fw] = small
            state = self._states[i] if i < len(self._states) else ""
            if state not in ("live", "playing"):
                tile[:] = (tile * 0.4).astype(np.uint8)
                _text(tile, state.upper() if last is not None or state != "opening" else "WAITING", center=True)
            _text(tile, name, center=False)
        return out

    def _write_image(self) -> None:
        cv2 = deps.cv2()
        tmp = self.path.with_name(f".{self.path.name}.tmp{self.path.suffix}")
        try:
            ok, data = cv2.imencode(self.path.suffix, self.render())
            if not ok:
                raise OSError(f"OpenCV cannot encode {self.path.suffix} here")
            tmp.write_bytes(data.tobytes())
            os.replace(tmp, self.path)
        except (OSError, cv2.error) as exc:
            raise EdgeClassifyError(f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}",
                                    exit_code=EXIT_OUTPUT) from None


def _text(tile: np.ndarray, text: str, center: bool) -> None:
    """A line on a tile: its source's name at the bottom left, or its state in the middle."""
    cv2 = deps.cv2()
    text = text.encode("ascii", "replace").decode()
    h, w = tile.shape[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, h / 360.0) * (1.4 if center else 0.8)
    thick = max(1, round(scale * 1.5))
    (tw, tht), base = cv2.getTextSize(text, font, scale, thick)
    if center:
        org = ((w - tw) // 2, (h + tht) // 2)
    else:
        org = (6, h - base - 6)
        tile[max(0, h - tht - base - 12):, : min(w, tw + 12)] //= 3
    cv2.putText(tile, text, org, font, scale, (255, 255, 255), thick, cv2.LINE_AA)


class Recorder:
    """``--save`` and ``--mosaic`` for a stream run. One source: ``save`` is the annotated
    copy's file, as before. Several: ``save`` is a folder that gets ``NAME.mp4`` per source
    and, unless ``mosaic`` names another path, ``mosaic.mp4``. Paths are checked here,
    before any frame is read."""

    def __init__(self, sources: Sequence[NamedSource], *, save: Path | None = None, mosaic: Path | None = None,
                 every: int = 1, clock: Callable[[], float] = time.monotonic):
        self.every, self.savers, self.paths = every, {}, {}
        self.mosaic = None
        if save is not None and len(sources) == 1:
            VideoSaver(save)  # checks the suffix now
            self.paths[0] = save
        elif save is not None:
            if save.suffix.lower() in VideoSaver.FOURCC or save.suffix.lower() in VideoSaver.IMAGES or \
                    (save.exists() and not save.is_dir()):
                raise EdgeClassifyError(f"--save {save}: with {len(sources)} sources --save names a folder (one "
                                        "video per source, and mosaic.mp4)", exit_code=EXIT_USAGE)
            try:
                save.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EdgeClassifyError(f"cannot create {save}: {exc.strerror or exc}", exit_code=EXIT_OUTPUT) from None
            taken: set[str] = set()
            for i, s in enumerate(sources):
                own = s.source.kind == "file" and not s.given  # a file not given a name: its stem
                stem = base = safe_file_name(Path(s.source.name).stem if own else s.name)
                k = 1
                while stem.lower() in taken or stem.lower() == "mosaic":
                    k += 1
                    stem = f"{base}_{k}"
                taken.add(stem.lower())
                self.paths[i] = save / f"{stem}.mp4"
            mosaic = mosaic or save / "mosaic.mp4"
        if mosaic is not None:  # a file's tile says its file name, not its whole path
            shown = [Path(s.name).name if s.source.kind == "file" and not s.given else s.name for s in sources]
            self.mosaic = Mosaic(mosaic, shown, clock)
        self.live = [s.source.live for s in sources]

    def write(self, r: FrameResult, states: Sequence[str]) -> None:
        res = r.classification
        shown = (res.positive if res.positive is not None else res.predictions) if res.ok else []
        i = r.source_index
        if i in self.paths:
            saver = self.savers.get(i)
            if saver is None:
                saver = self.savers[i] = VideoSaver(self.paths[i], fps=(r.fps or 25.0) / self.every)
            saver.write(annotate(r.image_bgr, shown) if shown else r.image_bgr,
                        repeat=1 + r.dropped_before if self.live[i] else 1)
        if self.mosaic is not None:
            self.mosaic.update(i, r.image_bgr, shown)
            self.mosaic.tick(states)

    def refresh(self, states: Sequence[str]) -> None:
        """A source changed state with no frame to show (reconnecting, lost, ended): the mosaic
        says so now, not when the next frame of another source comes (none may)."""
        if self.mosaic is not None:
            self.mosaic.tick(states)

    def close(self, states: Sequence[str] | None = None) -> list[Path]:
        """Finish every file; returns those written."""
        written, error = [], None
        for i, saver in self.savers.items():
            try:
                saver.close()
                written.append(self.paths[i])
            except EdgeClassifyError as exc:
                error = error or exc
        if self.mosaic is not None:
            self.mosaic.close(states)
            written.append(self.mosaic.path)
        if error is not None:
            raise error
        return written


__all__ = ["MultiStream", "classify_stream", "NamedSource", "SourceStats", "Recorder", "Mosaic", "named_sources", "read_sources_file"]
