"""Classify video files and live streams (cameras, RTSP/HTTP URLs, GStreamer pipelines) frame by frame.

Files and live sources want opposite things. A file is a record: every frame is decoded in
order and nothing is lost, however slow the model. A live source is a clock: a camera does
not wait for inference, and a queue of old frames would make results lag ever further behind
the scene. So a background thread reads a live source continuously and keeps only the newest
frame (a 1-slot buffer); inference takes whatever is newest when it is ready, and the frames
overwritten meanwhile are counted (``Frame.dropped_before``), so latency stays bounded by one
inference. A live source that stops delivering is reopened with exponential backoff for a
bounded time, then ``StreamLost`` ends the run with its own exit code.

Here: opening sources, reading their frames, and drawing and saving results. Classifying
them, one source or many at once, is apps/multistream.py's loop, through the classifier's
own preprocessing, so a frame's prediction is by construction what classifying that decoded
picture as an image gives. OpenCV comes through ``deps``; nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from ..errors import EXIT_OUTPUT, EXIT_STREAM_LOST, EXIT_USAGE, EdgeClassifyError, InputError
from ..host import deps
from ..images import formats
from ..images.files import IMAGE_EXTENSIONS
from ..results import frame_fields

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp",
})  # fmt: skip
URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "rtmp")
_CAMERA = re.compile(r"(?:camera:|/dev/video)(\d+)")
_PASSWORD = re.compile(r"^([^:/]+://[^/:@]*):[^/]*@")  # scheme://user:password@host


class StreamLost(EdgeClassifyError):
    """A live source delivered no frame for the whole reconnect budget."""

    def __init__(self, message: str):
        super().__init__(message, hint="check the camera or network (a longer reconnect budget waits more)",
                         exit_code=EXIT_STREAM_LOST)


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether a file is a video: an image extension never is; otherwise content decides when it
    can be read (an image's signature wins over a video extension, MP4/MOV ``ftyp``, AVI, and
    Matroska/WebM EBML signatures count), else the extension."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS or os.path.isdir(path):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return suffix in VIDEO_EXTENSIONS
    if formats.sniff(head) is not None:  # an image (AVIF/HEIF use ftyp too) or a refused image format
        return False
    if suffix in VIDEO_EXTENSIONS:
        return True
    return head[4:8] == b"ftyp" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ") or head[:4] == b"\x1a\x45\xdf\xa3"


@dataclass(frozen=True)
class StreamSource:
    """What to open: ``kind`` is file, camera, url or gstreamer; ``value`` goes to ``cv2.VideoCapture``."""

    text: str
    kind: str
    value: str | int
    live: bool

    @property
    def name(self) -> str:
        """The source for messages and result rows: a URL's password is never printed."""
        return _PASSWORD.sub(r"\1:***@", self.text) if self.kind == "url" else self.text


def parse_source(text: str | int) -> StreamSource:
    """A camera (an int, ``camera:N``, ``/dev/videoN``), a URL, a GStreamer pipeline (has ``!``)
    or a video file. An existing file wins over a pipeline: file names may contain ``!``."""
    if isinstance(text, int):
        return StreamSource(f"camera:{text}", "camera", text, True)
    m = _CAMERA.fullmatch(text)
    if m or (text.isdigit() and not os.path.exists(text)):
        return StreamSource(text, "camera", int(m.group(1) if m else text), True)
    if "://" in text and text.split("://", 1)[0].lower() in URL_SCHEMES:
        return StreamSource(text, "url", text, True)
    if "!" in text and not os.path.exists(text):
        return StreamSource(text, "gstreamer", text, True)
    return StreamSource(text, "file", text, False)


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` used here (tests pass fakes)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...
    def isOpened(self) -> bool: ...


def open_capture(source: str | int | StreamSource, opener: Callable[..., Capture] | None = None) -> Capture:
    """Open ``source`` (not checked: callers decide what a failure means). Pipelines name GStreamer."""
    cv2 = deps.cv2()
    source = source if isinstance(source, StreamSource) else parse_source(source)
    opener = opener or cv2.VideoCapture
    if source.kind == "gstreamer":
        return opener(source.value, cv2.CAP_GSTREAMER)
    return opener(source.value)


@dataclass
class Frame:
    index: int  # the source's frame number, from 0 (across reconnects for live sources)
    timestamp_ms: float  # files: position in the video; live: since reading started
    image_bgr: np.ndarray
    dropped_before: int = 0  # live: newer frames replaced this many since the previous one was taken
    fps: float = 0.0  # what the source declares (0: unknown, as many cameras say); for VideoSaver
    captured: float = field(default_factory=time.perf_counter)  # when it was read: latency = result - this


def frames(source: str | int | StreamSource, *, every: int = 1, opener: Callable[..., Capture] | None = None,
           reconnect_s: float = 30.0, backoff: tuple[float, float] = (0.5, 8.0),
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Any] | None = None
           ) -> Iterator[Frame]:
    """The frames of ``source`` whose index is a multiple of ``every``.

    A file: each such frame, in order; its end ends the iteration. A live source: the newest
    such frame when asked (see the module docstring); after ``reconnect_s`` seconds without a
    frame (``backoff``: first and longest wait between attempts) ``StreamLost`` is raised.
    ``clock`` and ``sleep`` are injectable for tests; the default ``sleep`` is a wait that
    closing the generator cuts short. Closing the generator stops the reader and releases
    the capture.
    """
    if every < 1:
        raise EdgeClassifyError("every must be at least 1", exit_code=EXIT_USAGE)
    src = source if isinstance(source, StreamSource) else parse_source(source)
    if not src.live:
        yield from _file_frames(src, every, opener)
        return
    reader = _LiveReader(src, every, opener, reconnect_s, backoff, clock, sleep)
    try:
        while (frame := reader.take()) is not None:
            yield frame
    finally:
        reader.close()


def _file_frames(src: StreamSource, every: int, opener) -> Iterator[Frame]:
    """Every ``every``-th frame of a file, read on the caller's thread (a file reader's thread,
    in apps/multistream.py's loop)."""
    if not os.path.isfile(src.value):
        raise InputError(f"{src.name}: no such video file")
    cv2 = deps.cv2()
    cap = open_capture(src, opener)
    try:
        if not cap.isOpened():
            raise InputError(f"{src.name}: cannot open as a video (not a video, or a codec OpenCV lacks here)")
        fps = _fps(cap)
        grab = getattr(cap, "grab", None)  # skipped frames need no colour conversion
        index = 0
        while True:
            wanted = index % every == 0
            if wanted or grab is None:
                ok, image = cap.read()
                ok = ok and image is not None
            else:
                ok, image = grab(), None
            if not ok:
                return  # end of file (or a damaged tail OpenCV cannot tell from one)
            if wanted:
                ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                if not ms > 0:  # also NaN; frame 0 is at 0 either way
                    ms = index * 1000.0 / fps if fps else 0.0
                yield Frame(index, float(ms), image, 0, fps)
            index += 1
    finally:
        cap.release()


def _fps(cap: Capture) -> float:
    fps = cap.get(deps.cv2().CAP_PROP_FPS)
    return float(fps) if fps and 0 < fps < 1000 else 0.0  # NaN, 0 and nonsense (90000: a timebase) are unknown


class _ReaderThread:
    """A source's reader thread, as the loop that takes its frames sees it (apps/multistream.py):
    ``ready`` / ``finished`` / ``take_nowait()`` under the shared condition, ``state``,
    ``reconnects`` and ``error``; ``stop()`` asks it to end, ``close()`` waits for that."""

    _stop: threading.Event
    _cond: threading.Condition
    _thread: threading.Thread

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        self.stop()
        # A capture blocked in read() (a network timeout) finishes on its own: the thread is a daemon.
        self._thread.join(timeout=timeout)


class _LiveReader(_ReaderThread):
    """Reads a live source on a thread into a 1-slot buffer, reconnecting when it is lost.

    ``cond``: the condition its slot is guarded by and notified on (a new frame, a change of
    ``state``, the end); many readers share one when one loop serves them all
    (apps/multistream.py). ``state``: opening, live or reconnecting, then ended (``error``
    says why: ``StreamLost`` after the reconnect budget)."""

    def __init__(self, src, every, opener, reconnect_s, backoff, clock, sleep,
                 cond: threading.Condition | None = None):
        self.src, self.every, self.opener = src, every, opener
        self.reconnect_s, self.backoff, self.clock = reconnect_s, backoff, clock
        self._stop = threading.Event()
        self.sleep = sleep or self._stop.wait
        self._cond = cond or threading.Condition()
        self._slot: Frame | None = None
        self._dropped = 0
        self.error: BaseException | None = None
        self._done = False
        self.state, self.reconnects = "opening", 0
        self._thread = threading.Thread(target=self._run, name="edge-stream-reader", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        """A frame is waiting (read under the shared condition)."""
        return self._slot is not None

    @property
    def finished(self) -> bool:
        """No frame will come any more (read under the shared condition)."""
        return self._done and self._slot is None

    def take(self) -> Frame | None:
        """The newest frame (waiting for one), None once stopped; the reader's error is raised here."""
        with self._cond:
            while self._slot is None and self.error is None and not self._done:
                self._cond.wait(0.5)
            if self._slot is not None:
                return self.take_nowait()
            if self.error is not None:
                raise self.error
            return None

    def take_nowait(self) -> Frame | None:
        """The waiting frame, or None (call with the condition held)."""
        frame, self._slot = self._slot, None
        if frame is not None:
            frame.dropped_before, self._dropped = self._dropped, 0
        return frame

    def _run(self) -> None:
        cap, index, attempts, fps = None, 0, 0, 0.0
        lost_since, delay, t0 = None, self.backoff[0], self.clock()
        try:
            while not self._stop.is_set():
                if cap is None:
                    attempts += 1
                    cap = open_capture(self.src, self.opener)
                    if not cap.isOpened():
                        cap.release()
                        cap = None
                    else:
                        fps = _fps(cap)
                ok, image = cap.read() if cap is not None else (False, None)
                if ok and image is not None:
                    lost_since, delay, attempts = None, self.backoff[0], 0
                    if self.state != "live":
                        self._set_state("live")
                    if index % self.every == 0:
                        self._publish(Frame(index, (self.clock() - t0) * 1000.0, image, 0, fps))
                    index += 1
                    continue
                if cap is not None:
                    cap.release()
                    cap = None
                if self.state == "live":
                    self.reconnects += 1
                    self._set_state("reconnecting")
                now = self.clock()
                lost_since = now if lost_since is None else lost_since
                waited = now - lost_since
                if waited >= self.reconnect_s:
                    what = "could not open" if index == 0 else "lost"
                    raise StreamLost(f"{what} live source {self.src.name}: no frame for {waited:.1f} s "
                                     f"({attempts} attempt(s) to open it)")
                self.sleep(min(delay, self.reconnect_s - waited))
                delay = min(delay * 2, self.backoff[1])
        except BaseException as exc:  # handed to the consumer, raised from take()
            with self._cond:
                self.error = exc
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                self._done, self.state = True, "ended"
                self._cond.notify_all()

    def _set_state(self, state: str) -> None:
        with self._cond:
            self.state = state
            self._cond.notify_all()

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._slot is not None:  # overwritten before it was taken
                self._dropped += 1
            self._slot = frame
            self._cond.notify_all()


@dataclass
class FrameResult:
    """One classified frame; ``row()`` is its JSON Lines row."""

    source: str
    frame: int
    timestamp_ms: float
    dropped_before: int
    fps: float  # the source's declared rate (0: unknown)
    classification: Any  # classifier.Classification; its source is the stream's name
    image_bgr: np.ndarray = field(repr=False)  # the frame as read, for annotate / VideoSaver
    _classifier: Any = field(default=None, repr=False)
    latency_ms: float = 0.0  # from the frame's capture (its read) to its result
    source_index: int = 0  # the source's place in the list given (apps/multistream.py)
    round: int = 0  # which inference it shared: frames of one round ran as one batch

    def row(self) -> dict:
        """The row (results.py): the classifier's row (``path`` = the source) plus the frame's place."""
        return self._classifier.row(self.classification,
                                    **frame_fields(self.source, self.frame, self.timestamp_ms, self.dropped_before))


class RollingRate:
    """Frames per second over the last ``window`` seconds: the rolling FPS a stream run shows on
    stderr (a whole-run average hides a camera that slowed down a minute ago)."""

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.perf_counter):
        self.window, self._clock = window, clock
        self._times: deque = deque()

    def tick(self) -> None:
        now = self._clock()
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def annotate(frame_bgr: np.ndarray, predictions: Sequence) -> np.ndarray:
    """A copy of the frame with the top-k lines ("1. label: 87.3%") on a dark box, top left.
    Hershey fonts draw ASCII only: other characters of a label show as ``?``."""
    cv2 = deps.cv2()
    out = frame_bgr.copy()
    lines = [f"{i}. {p.label}: {p.probability * 100:.1f}%".encode("ascii", "replace").decode()
             for i, p in enumerate(predictions, 1)]
    if not lines:
        return out
    h, w = out.shape[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(h, w) / 720.0)
    thick = max(1, round(scale * 1.5))
    sizes = [cv2.getTextSize(t, font, scale, thick) for t in lines]
    line_h = max(th + base for (_, th), base in sizes) + max(2, round(6 * scale))
    pad = max(3, round(8 * scale))
    box_w = min(w, max(tw for (tw, _), _ in sizes) + 2 * pad)
    box_h = min(h, line_h * len(lines) + pad)
    out[:box_h, :box_w] = (out[:box_h, :box_w] * 0.25).astype(out.dtype)  # darkened, still see-through
    for i, text in enumerate(lines):
        cv2.putText(out, text, (pad, pad + line_h * i + sizes[i][0][1]), font, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return out


class VideoSaver:
    """Writes frames to a video (mp4v for .mp4/.m4v/.mov, MJPG for .avi/.mkv) or, for an
    image path, keeps the last frame and writes it on ``close``. ``size`` (width, height)
    defaults to the first frame's; frames of another size (a reconnected camera) are resized."""

    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
    IMAGES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # what cv2.imencode writes

    def __init__(self, path: str | os.PathLike, fps: float = 25.0, size: tuple[int, int] | None = None):
        self.path, self.size, self.frames = Path(path), size, 0
        self.fps = fps if fps and fps > 0 and np.isfinite(fps) else 25.0  # cameras often report 0
        self.suffix = self.path.suffix.lower()
        if self.suffix not in self.FOURCC and self.suffix not in self.IMAGES:
            raise EdgeClassifyError(f"cannot save to {path}: use .mp4, .mov, .avi or .mkv (or .jpg/.png for the "
                                    "last frame)", exit_code=EXIT_USAGE)
        self._writer = self._last = None

    def write(self, frame_bgr: np.ndarray, repeat: int = 1) -> None:
        """Add a frame, ``repeat`` times (live: ``1 + dropped_before`` keeps the video's clock right)."""
        cv2 = deps.cv2()
        if self.size is None:
            self.size = (frame_bgr.shape[1], frame_bgr.shape[0])
        if (frame_bgr.shape[1], frame_bgr.shape[0]) != tuple(self.size):
            frame_bgr = cv2.resize(frame_bgr, tuple(self.size), interpolation=cv2.INTER_AREA)
        self.frames += repeat
        if self.suffix in self.IMAGES:
            self._last = frame_bgr
            return
        if self._writer is None:
            fourcc = self.FOURCC[self.suffix]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), self.fps,
                                           tuple(self.size))
            if not self._writer.isOpened():
                raise EdgeClassifyError(f"cannot write video {self.path} ({fourcc}): the folder is missing or "
                                        "OpenCV has no such encoder here", exit_code=EXIT_OUTPUT)
        for _ in range(repeat):
            self._writer.write(frame_bgr)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._last is not None:
            cv2 = deps.cv2()
            try:
                ok, data = cv2.imencode(self.suffix, self._last)
                if not ok:
                    raise OSError(f"OpenCV cannot encode {self.suffix} here")
                self.path.write_bytes(data.tobytes())
            except (OSError, cv2.error) as exc:
                raise EdgeClassifyError(f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}",
                                        exit_code=EXIT_OUTPUT) from None
            self._last = None

    def __enter__(self) -> VideoSaver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
