"""What the image codecs print while one image decodes, attributed to that image.

libjpeg reports a damaged JPEG (cut short with an end marker appended, a hole in the
scan) only as a *warning* on stderr ("Corrupt JPEG data: premature end of data
segment") and returns a normal-looking image whose missing part is grey. libpng, libtiff
and OpenCV's own log print their reasons there too. None of that is reachable from
Python: the codecs write straight to file descriptor 2. So while a decode is in flight,
fd 2 points at a pipe that a reader thread drains: codec lines are kept for the decode
that caused them, everything else goes on to the real stderr unchanged.

Decodes run on several threads at once, and a line carries no thread id. A decode whose
window overlapped another's and saw a codec line is therefore decoded again alone
(``_Exclusive``), which attributes every line exactly. Damaged images are rare, so
normal runs never pay for that. ``EDGE_CLASSIFY_NO_STDERR_CAPTURE=1`` turns the capture
off (the structural checks in ``formats`` still run).
"""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

# Lines a codec may print while decoding (libjpeg's message catalogue has no prefix).
_CODEC_LINE = re.compile(
    rb"^(?:libpng (?:warning|error)"
    rb"|\[ ?(?:WARN|ERROR|INFO|DEBUG|FATAL|VERBOSE)[:\]]"  # OpenCV's log (libtiff, GIF, BMP decoders)
    rb"|TIFF\w*:|\w+: (?:Warning|Error), "  # libtiff printing directly (older OpenCV)
    rb"|Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|Inconsistent progression"
    rb"|Warning: unknown JFIF|Unknown Adobe color transform|Warning: thumbnail image size"
    rb"|Huffman table|Bogus |Unsupported |Not a JPEG file|Invalid JPEG file structure|JPEG datastream"
    rb"|Quantization table|Empty JPEG image|Improper call|Arithmetic table|Application transferred)"
)
# Of those, the ones that say the pixels handed back are not the picture that was stored.
# ("bad ICC marker" is about a colour profile, which the decoder ignores anyway.)
_DAMAGE = re.compile(
    r"^(?:Corrupt JPEG data(?!: bad ICC marker)|Premature end of JPEG file|Invalid SOS parameters"
    r"|Inconsistent progression|libpng error|\[ERROR)"
)
_BARRIER = re.compile(rb"\x00edge-tap:(\d+)\x00")
_MAX_KEPT = 4096  # codec lines kept while windows overlap (an overflow just forces a re-decode)


def is_damage(line: str) -> bool:
    return bool(_DAMAGE.match(line))


@dataclass
class Outcome:
    value: object = None
    error: BaseException | None = None
    lines: list[str] = field(default_factory=list)


class _Exclusive:
    """Readers-writer lock: decodes share it; a re-decode that must be alone takes it whole."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def shared(self):
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def alone(self):
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Window:
    def __init__(self):
        self.lines: list[str] = []
        self.ambiguous = False


class _Tap:
    def __init__(self):
        self._cond = threading.Condition()
        self._r, self._w = os.pipe()
        self._saved: int | None = None  # the real stderr, while fd 2 is the pipe
        self._users = 0
        self._epoch = 0
        self._seq = 0  # codec lines seen so far
        self._in_codec_message = False
        self._kept: list[tuple[int, str]] = []
        self._dropped_before = 0  # seq below which lines were dropped (overflow)
        self._barrier_next = 0
        self._barrier_seen = -1
        self.exclusive = _Exclusive()
        threading.Thread(target=self._drain, name="edge-stderr-tap", daemon=True).start()

    # --- the reader thread ---------------------------------------------------------------
    def _drain(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            buf = self._consume(buf)

    def _consume(self, buf: bytes) -> bytes:
        while buf:
            nl = buf.find(b"\n")
            m = _BARRIER.search(buf)
            if m and (nl < 0 or m.start() < nl):
                if m.start():  # a partial line before the barrier: flush it as a line
                    self._line(buf[: m.start()])
                buf = buf[m.end():]
                with self._cond:
                    # Numbers are taken before writing, so seeing n means every number below it
                    # was taken after its writer's output reached the pipe: max() is enough.
                    self._barrier_seen = max(self._barrier_seen, int(m.group(1)))
                    self._cond.notify_all()
            elif nl >= 0:
                self._line(buf[: nl + 1])
                buf = buf[nl + 1:]
            else:
                break
        return buf

    def _line(self, raw: bytes) -> None:
        with self._cond:
            codec = _CODEC_LINE.match(raw)
            # OpenCV's log messages run over several lines ("> Buffer is too small ...") and
            # end with a blank one: those belong to the codec line before them.
            continued = self._in_codec_message and (not raw.strip() or raw[:1] in b"> \t")
            if codec or continued:
                self._in_codec_message = True
                text = raw.strip().decode("utf-8", "replace")
                if codec:
                    self._kept.append((self._seq, text))
                    self._seq += 1
                    if len(self._kept) > _MAX_KEPT:
                        self._dropped_before = self._kept.pop(0)[0] + 1
                elif text and self._kept and len(self._kept[-1][1]) < 600:
                    seq, first = self._kept[-1]
                    self._kept[-1] = (seq, f"{first} {text.lstrip('> ')}")
                return
            self._in_codec_message = False
            # Under the lock: the saved descriptor is never closed (and its number reused)
            # while a line is being forwarded to it.
            target = 2 if self._saved is None else self._saved
            try:
                while raw:
                    raw = raw[os.write(target, raw):]
            except OSError:
                pass

    # --- the decoding threads ------------------------------------------------------------
    def _barrier(self) -> None:
        """Return once everything written to the pipe before this call has been read."""
        with self._cond:
            self._barrier_next += 1
            n = self._barrier_next
        os.write(self._w, b"\x00edge-tap:%d\x00" % n)
        with self._cond:
            while self._barrier_seen < n:
                self._cond.wait()

    @contextmanager
    def window(self) -> Iterator[_Window]:
        w = _Window()
        _flush_python_stderr()  # never under the lock: a full pipe would wait on the reader
        with self._cond:
            others = self._users
            self._users += 1
            self._epoch += 1
            epoch = self._epoch
            if others == 0:
                if self._saved is None:  # else still open from a window that just closed
                    self._saved = os.dup(2)
                os.dup2(self._w, 2)
            start = self._seq
        try:
            yield w
        finally:
            self._barrier()
            _flush_python_stderr()
            with self._cond:
                w.lines = [text for seq, text in self._kept if seq >= start]
                w.ambiguous = others > 0 or self._epoch != epoch or self._dropped_before > start
                self._users -= 1
                restore = self._users == 0
                if restore:
                    os.dup2(self._saved, 2)
            if restore:
                self._barrier()  # forward what other threads wrote before fd 2 came back
                with self._cond:
                    if self._users == 0 and self._saved is not None:
                        os.close(self._saved)
                        self._saved = None
                        self._kept.clear()
                        self._dropped_before = self._seq


def _flush_python_stderr() -> None:
    import sys

    try:
        sys.stderr.flush()
    except Exception:  # closed or replaced by something without flush: nothing buffered to lose
        pass


_tap: _Tap | None = None
_tap_lock = threading.Lock()
_tap_failed = False


def _get_tap() -> _Tap | None:
    global _tap, _tap_failed
    if _tap is not None or _tap_failed:
        return _tap
    with _tap_lock:
        if _tap is None and not _tap_failed:
            if os.environ.get("EDGE_CLASSIFY_NO_STDERR_CAPTURE", "") not in ("", "0"):
                _tap_failed = True
                return None
            try:
                os.fstat(2)  # no stderr at all (a daemon): nothing to capture
                _tap = _Tap()
            except OSError:
                _tap_failed = True
    return _tap


def run(fn: Callable[[], object]) -> Outcome:
    """Call ``fn`` (a decode) and return its value or exception with the codec lines it caused."""
    tap = _get_tap()
    if tap is None:
        return _call(fn)
    with tap.exclusive.shared(), tap.window() as w:
        out = _call(fn)
    if not w.lines:
        return out
    if not w.ambiguous:
        out.lines = w.lines
        return out
    with tap.exclusive.alone(), tap.window() as w:  # overlapped another decode: decode again, alone
        out = _call(fn)
    out.lines = w.lines
    return out


def _call(fn) -> Outcome:
    try:
        return Outcome(value=fn())
    except Exception as exc:  # any failure of one decode belongs to that image
        return Outcome(error=exc)
