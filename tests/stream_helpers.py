"""Sources for the stream tests: videos written here, fake captures, and a real live source
on loopback (``MjpegServer``: MJPEG over HTTP, what many IP cameras serve, which OpenCV's
FFmpeg backend reads as a live URL).
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import cv2
import numpy as np

SIZE = (160, 120)  # width, height
FPS = 10.0


def write_video(path, images, fourcc="MJPG", fps=FPS):
    """A video of ``images`` (all one size; MJPG in AVI decodes deterministically)."""
    size = (images[0].shape[1], images[0].shape[0])
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert w.isOpened(), f"OpenCV cannot write {fourcc} here"
    for img in images:
        w.write(img)
    w.release()
    return path


def decode_all(path) -> list[np.ndarray]:
    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, img = cap.read()
        if not ok:
            cap.release()
            return out
        out.append(img)

# --------------------------------------------------------------------------- fakes
def numbered(i: int, base: np.ndarray | None = None) -> np.ndarray:
    """A frame that carries its index in its first pixel (blue: low byte, green: high byte)."""
    img = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8) if base is None else base.copy()
    img[0, 0] = (i % 256, i // 256 % 256, 0)
    return img


def index_of(img: np.ndarray) -> int:
    return int(img[0, 0, 0]) + 256 * int(img[0, 0, 1])


class FakeCapture:
    """A live capture: ``frames`` frames numbered from ``start`` (None: endless), then read fails."""

    def __init__(self, start=0, frames=None, delay=0.0, base=None):
        self.next, self.end, self.delay, self.base = start, None if frames is None else start + frames, delay, base
        self.released = False

    def isOpened(self):
        return True

    def get(self, prop):
        return 0.0

    def read(self):
        if self.delay:
            time.sleep(self.delay)
        if self.released or (self.end is not None and self.next >= self.end):
            return False, None
        self.next += 1
        return True, numbered(self.next - 1, None if self.base is None else self.base[(self.next - 1) % len(self.base)])

    def release(self):
        self.released = True


class NotOpened(FakeCapture):
    def isOpened(self):
        return False


class GatedCapture(FakeCapture):
    """Returns frame n only once the test has fed it, so the test knows exactly what was read."""

    def __init__(self):
        super().__init__()
        self.gate, self.cond, self.reads, self.fed, self.finished = threading.Semaphore(0), threading.Condition(), 0, 0, False

    def read(self):
        with self.cond:
            self.reads += 1
            self.cond.notify_all()
        self.gate.acquire()
        return (False, None) if self.finished else super().read()

    def feed(self, n: int, wait: bool = True) -> None:
        """Let ``n`` more frames through; wait until the reader has handled all of them."""
        self.fed += n
        for _ in range(n):
            self.gate.release()
        if wait:
            with self.cond:
                assert self.cond.wait_for(lambda: self.reads == self.fed + 1, timeout=10)

    def finish(self) -> None:
        self.finished = True
        self.gate.release()


class Script:
    """An opener that hands out the given captures in turn, then ``then`` forever."""

    def __init__(self, *captures, then=NotOpened):
        self.captures, self.then, self.opened = list(captures), then, []

    def __call__(self, value, *api):
        cap = self.captures.pop(0) if self.captures else self.then()
        self.opened.append(cap)
        return cap


class FakeTime:
    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def clock(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


def top(result):
    """A result's top-k: (indices, probabilities)."""
    return [p.index for p in result.predictions], [p.probability for p in result.predictions]


class Slow:
    """The classifier, ``delay`` seconds slower per inference: sources outrun the model."""

    def __init__(self, clf, delay):
        self.clf, self.delay = clf, delay

    def classify_prepared(self, *args, **kw):
        time.sleep(self.delay)
        return self.clf.classify_prepared(*args, **kw)

    def __getattr__(self, name):
        return getattr(self.clf, name)


class MjpegServer:
    """``http://127.0.0.1:PORT/video.mjpg``: an endless multipart JPEG stream, ``fps`` frames a
    second cycling through ``pictures``, to every client. ``kill()`` drops every connection
    and stops listening (a camera unplugged); ``start()`` again listens on the same port (the
    camera back). Use as a context manager: it is killed at the end."""

    def __init__(self, pictures: list[np.ndarray], fps: float = 25.0, quality: int = 90):
        self.jpegs = [cv2.imencode(".jpg", p, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes() for p in pictures]
        self.fps, self.port = fps, 0
        self.server: HTTPServer | None = None
        self.sent = 0
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def start(self) -> "MjpegServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with owner._lock:
                    owner._clients.add(self.connection)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                    self.end_headers()
                    i = 0
                    while owner.server is not None:
                        data = owner.jpegs[i % len(owner.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(data) + data + b"\r\n")
                        owner.sent += 1
                        i += 1
                        time.sleep(1.0 / owner.fps)
                except OSError:
                    pass  # the client left, or kill() cut the connection
                finally:
                    with owner._lock:
                        owner._clients.discard(self.connection)

        class Server(socketserver.ThreadingMixIn, HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="mjpeg-server", daemon=True).start()
        return self

    def kill(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            for conn in list(self._clients):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> "MjpegServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
