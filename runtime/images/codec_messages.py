"""What the image codecs print while one image decodes, attributed to that image.

libjpeg reports a damaged JPEG (cut short with an end marker appended, a hole in the
scan) only as a *warning* on stderr ("Corrupt JPEG data: premature end of data
segment") and returns a normal-looking image whose missing part is grey. libpng, libtiff
and OpenCV's own log print their reasons there too. None of that is reachable from
Python: the codecs write straight to file descriptor 2. So while a decode is in flight,
fd 2 points at a pipe that a reader thread drains. Lines in the codecs' own formats are
kept for the decode that caused them; everything else goes on to the real stderr.

A line carries no thread id, and other threads (or the application) may print while a
decode runs. So a decode that succeeded but heard damage is decoded again *alone*
(``_Exclusive``), and only what that second decode prints counts: a damaged image is
refused only for a message it causes by itself. Damaged images are rare, so normal runs
never pay for that. Notes (warnings that leave the pixels intact) from a decode that
overlapped another are dropped rather than guessed. ``EDGE_CLASSIFY_NO_STDERR_CAPTURE=1``
turns the capture off (the structural checks in ``formats`` still run).
"""

from __future__ import annotations

import os
import re
import select
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

# The codecs' own line formats, matched strictly so that an application's log lines
# ("[ERROR] upstream timeout") are never taken for a codec's.
_CODEC_LINE = re.compile(
    rb"^(?:libpng (?:warning|error): "
    # OpenCV's log, which carries libtiff's and its GIF/BMP/WebP decoders' messages:
    # "[ WARN:0@0.572] global grfmt_tiff.cpp:123 ..." (older: "[ WARN:0] global ...").
    rb"|\[ ?(?:WARN|ERROR|INFO|DEBUG|FATAL|VERBOSE):\d+(?:@[\d.]+)?\] "
    # libjpeg's warnings and errors (jerror.h); they have no prefix.
    rb"|Corrupt JPEG data: |Premature end of JPEG file|Invalid SOS parameters for sequential JPEG"
    rb"|Inconsistent progression sequence for component|Warning: unknown JFIF revision number"
    rb"|Unknown Adobe color transform code|Warning: thumbnail image size does not match"
    rb"|Huffman table 0x|Bogus (?:Huffman table|input colorspace|marker length|sampling factors|"
    rb"message code|DAC|DHT|DQT|virtual array)|Unsupported JPEG|Not a JPEG file: starts with"
    rb"|Invalid JPEG file structure: |JPEG datastream contains no image|Quantization table 0x"
    rb"|Empty JPEG image \(DNL not supported\)|Improper call to JPEG library)"
)
_BARRIER = re.compile(rb"\x00edge-tap:(\d+)(:f)?\x00")
_MAX_KEPT = 4096  # codec lines kept while windows overlap (an overflow just drops notes)


# Forwarded in writes of whole lines, each at most PIPE_BUF bytes: a pipe keeps such a write
# in one piece, while one big write interleaves with what other threads write straight to the
# real stderr once fd 2 is given back. One 64 KiB forward cut an application's line in two
# ("[ERROR] upstream tim" ... "eout 88041"), 2 runs in 15 of the test that logs while decoding.
_ATOMIC = getattr(select, "PIPE_BUF", 512)


def _whole_lines(data: bytes, limit: int) -> list[bytes]:
    """``data`` in pieces of whole lines of at most ``limit`` bytes (a longer line alone)."""
    pieces, start = [], 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + limit) + 1
        if end <= start:  # no line end within the limit: up to the next one (or the rest)
            end = data.find(b"\n", start + limit) + 1 or len(data)
        pieces.append(data[start:end])
        start = end
    return pieces


def is_damage(line: str) -> bool:
    """Whether a codec line says the pixels handed back are not the picture that was stored.

    ("bad ICC marker" is about a colour profile, which the decoder ignores anyway; see
    safe_decode for "extraneous bytes before marker", which depends on what the bytes are.)
    """
    return bool(re.match(r"^(?:Corrupt JPEG data(?!: bad ICC marker)|Premature end of JPEG file|"
                         r"Invalid SOS parameters|Inconsistent progression|libpng error|\[ERROR)", line))


@dataclass
class Outcome:
    value: object = None
    error: BaseException | None = None
    lines: list[str] = field(default_factory=list)


def wait_for(cond: threading.Condition, ready: Callable[[], bool]) -> None:
    """``cond.wait()`` until ``ready()``, with ``cond`` held on entry and exit.

    On the main thread it polls instead: Ctrl-C raised inside ``Condition.wait`` can leave
    the lock released under the ``with`` (then "cannot release un-acquired lock" replaces
    the KeyboardInterrupt); raised inside ``time.sleep`` it is clean. Decodes run on worker
    threads in the CLI, so only API callers decoding on their own thread poll (~0.2 ms).
    """
    if threading.current_thread() is not threading.main_thread():
        while not ready():
            cond.wait()
        return
    while not ready():
        try:
            cond.release()
            time.sleep(0.0002)
        finally:  # wherever Ctrl-C lands in here, leave with the lock held exactly once
            if not cond._is_owned():
                cond.acquire()


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
            wait_for(self._cond, lambda: not (self._writer or self._waiting_writers))
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
            try:
                wait_for(self._cond, lambda: not (self._writer or self._readers))
            finally:  # interrupted while waiting (Ctrl-C): do not block every later decode
                self._waiting_writers -= 1
                self._cond.notify_all()
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
        self._users = 0  # decodes in flight
        self._holders = 0  # runs that keep fd 2 on the pipe between decodes (``held``)
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
            buf = self._consume(buf + chunk)

    def _consume(self, buf: bytes) -> bytes:
        # Barrier tokens are cut out wherever they fall, even inside a line another thread
        # is half-way through writing; whole lines are then handled in order.
        out: list[bytes] = []
        while True:
            m = _BARRIER.search(buf)
            if m is None:
                break
            buf = buf[: m.start()] + buf[m.end():]
            end = buf[: m.start()].rfind(b"\n") + 1
            self._lines(buf[:end], out)
            if m.group(2) and end < m.start():
                # fd 2 is being given back: the rest of this half-written line will go
                # straight to the real stderr, so its start must not wait here for it.
                out.append(buf[end: m.start()])
                end = m.start()
            buf = buf[end:]
            self._forward(out)  # before the barrier counts as seen: its waiter may close the target
            with self._cond:
                # Numbers are taken before writing, so seeing n means every number below it
                # was taken after its writer's output reached the pipe: max() is enough.
                self._barrier_seen = max(self._barrier_seen, int(m.group(1)))
                self._cond.notify_all()
        end = buf.rfind(b"\n") + 1
        self._lines(buf[:end], out)
        rest = buf[end:]
        if len(rest) > 65536:  # a "line" that never ends: pass it on rather than hold it
            out.append(rest)
            rest = b""
        self._forward(out)
        return rest

    def _lines(self, text: bytes, out: list[bytes]) -> None:
        """Keep codec lines; collect the others in ``out`` to be forwarded in one write."""
        for raw in text.splitlines(keepends=True):
            with self._cond:
                codec = _CODEC_LINE.match(raw)
                # OpenCV's log messages run over several lines ("> Buffer is too small ...")
                # and end with a blank one: those belong to the codec line before them.
                continued = self._in_codec_message and (not raw.strip() or raw[:1] in b"> \t")
                if codec or continued:
                    self._in_codec_message = True
                    line = raw.strip().decode("utf-8", "replace")
                    if codec:
                        self._kept.append((self._seq, line))
                        self._seq += 1
                        if len(self._kept) > _MAX_KEPT:
                            self._dropped_before = self._kept.pop(0)[0] + 1
                    elif line and self._kept and len(self._kept[-1][1]) < 600:
                        seq, first = self._kept[-1]
                        self._kept[-1] = (seq, f"{first} {line.lstrip('> ')}")
                    continue
                self._in_codec_message = False
            out.append(raw)

    def _forward(self, out: list[bytes]) -> None:
        if not out:
            return
        data = b"".join(out)
        out.clear()
        with self._cond:
            # Under the lock: the saved descriptor is never closed (and its number reused)
            # while a line is being forwarded to it.
            target = 2 if self._saved is None else self._saved
            try:
                for piece in _whole_lines(data, _ATOMIC):
                    while piece:
                        piece = piece[os.write(target, piece):]
            except OSError:
                pass

    # --- the decoding threads ------------------------------------------------------------
    def _barrier(self, flush_partial: bool = False) -> None:
        """Return once everything written to the pipe before this call has been read."""
        with self._cond:
            self._barrier_next += 1
            n = self._barrier_next
        os.write(self._w, b"\x00edge-tap:%d%s\x00" % (n, b":f" if flush_partial else b""))
        with self._cond:
            wait_for(self._cond, lambda: self._barrier_seen >= n)

    def _install(self) -> None:  # under the lock, whenever a window or hold opens
        if self._saved is not None:
            if _same_file(2, self._w):
                return  # still in place from a window that closed moments ago
            _close_quietly(self._saved)  # someone redirected fd 2 meanwhile: capture that instead
        self._saved = os.dup(2)
        os.dup2(self._w, 2)
        _point_faulthandler_at(self._saved)

    def _release(self) -> None:  # under the lock, after a counter went down
        if self._users == 0:
            self._kept.clear()  # no window left that could claim an older line
        if self._users + self._holders == 0:
            # At once, not after an idle spell: a process may _exit right after (a
            # multiprocessing worker does), and whatever sits in the pipe would be lost.
            self._give_back()

    def _give_back(self) -> None:  # under the lock
        if _same_file(2, self._w):  # else someone else has redirected fd 2 since: theirs now
            os.dup2(self._saved, 2)
        _point_faulthandler_at(2)
        saved, self._saved = self._saved, None
        try:
            self._cond.release()
            self._barrier(flush_partial=True)  # what was written before fd 2 came back goes out
        finally:  # as in wait_for: the lock held exactly once again, even after a Ctrl-C
            if not self._cond._is_owned():
                self._cond.acquire()
            _close_quietly(saved)

    def settle(self) -> None:
        """Give fd 2 back now if no decode runs, with the pipe drained. At exit (the reader
        is a daemon thread: what is still in the pipe would be lost), and when a command
        line finishes."""
        with self._cond:
            if self._users + self._holders:
                return
            if self._saved is not None:
                self._give_back()
                return
        # A write that was already blocked on a full pipe when fd 2 came back lands in the
        # pipe afterwards, and its newline (a separate write) straight on stderr: flush it.
        self._barrier(flush_partial=True)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep fd 2 on the pipe for a whole run, not just during each decode: then every
        stderr line takes one path and keeps its order (switching back and forth between
        decodes let lines printed meanwhile overtake the ones still in the pipe)."""
        with self._cond:
            self._install()
            self._holders += 1
        try:
            yield
        finally:
            with self._cond:
                self._holders -= 1
                self._release()

    @contextmanager
    def window(self) -> Iterator[_Window]:
        w = _Window()
        with self._cond:
            others = self._users
            self._epoch += 1
            epoch = self._epoch
            self._install()  # also when in place: someone may have redirected fd 2 since
            self._users += 1
            start = self._seq
        try:
            yield w
        finally:
            try:
                self._barrier()
            finally:  # even when interrupted: the counters and fd 2 must come back
                with self._cond:
                    w.lines = [text for seq, text in self._kept if seq >= start]
                    w.ambiguous = others > 0 or self._epoch != epoch or self._dropped_before > start
                    self._users -= 1
                    self._release()


def _same_file(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _close_quietly(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _point_faulthandler_at(fd: int) -> None:
    """A crash inside a decoder must still print its traceback: faulthandler writes to the
    real stderr while fd 2 is the pipe (whose reader dies with the process)."""
    import faulthandler

    if faulthandler.is_enabled():
        try:
            faulthandler.enable(file=fd, all_threads=True)
        except (ValueError, OSError):
            pass


_tap: _Tap | None = None
_tap_lock = threading.Lock()
_tap_failed = False


def _after_fork_in_child() -> None:
    """The child has the tap but not its reader thread: give it back its stderr, start afresh."""
    global _tap, _tap_lock, _tap_failed
    tap = _tap
    _tap, _tap_lock, _tap_failed = None, threading.Lock(), False
    if tap is not None:
        if tap._saved is not None:  # forked while a decode ran: fd 2 is the pipe here
            try:
                os.dup2(tap._saved, 2)
            except OSError:
                pass
        for fd in (tap._r, tap._w, tap._saved):
            _close_quietly(fd)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
                import atexit

                atexit.register(_tap.settle)
            except OSError:
                _tap_failed = True
    return _tap


def settle() -> None:
    """Put stderr back and drain what is still in the pipe (see ``_Tap.settle``)."""
    if _tap is not None:
        _tap.settle()


@contextmanager
def held() -> Iterator[None]:
    """Keep the capture in place for a whole run of decodes (see ``_Tap.held``)."""
    tap = _get_tap()
    if tap is None:
        yield
        return
    with tap.held():
        yield


def run(fn: Callable[[], object], damaged: Callable[[list[str]], bool] = None) -> Outcome:
    """Call ``fn`` (a decode) and return its value or exception with the codec lines it caused.

    ``damaged(lines)`` says whether lines mean the result cannot be trusted (default: any
    line ``is_damage``); such a result is confirmed by decoding again alone.
    """
    damaged = damaged or (lambda lines: any(map(is_damage, lines)))
    tap = _get_tap()
    if tap is None:
        return _call(fn)
    with tap.exclusive.shared(), tap.window() as w:
        out = _call(fn)
    if not w.lines:
        return out
    if out.error is not None or not damaged(w.lines):
        # Only an explanation (of a failure) or notes: keep them when they are surely ours.
        out.lines = [] if w.ambiguous else w.lines
        return out
    with tap.exclusive.alone(), tap.window() as w:  # refuse only for what this image says alone
        out = _call(fn)
    out.lines = w.lines
    return out


def _call(fn) -> Outcome:
    try:
        return Outcome(value=fn())
    except Exception as exc:  # any failure of one decode belongs to that image
        return Outcome(error=exc)
