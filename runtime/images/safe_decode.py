"""Reading and decoding untrusted images: bounded, allow-listed, never fatal to a run.

A runtime on an edge device reads whatever a camera, an upload folder or a network share
hands it. Each step here answers one way a single input used to take a whole run down
(each has a test in tests/test_hostile_inputs.py):

* ``read_file``: regular files only, opened without blocking and read up to a size cap.
  ``/dev/zero`` used to be read until memory ran out, and a FIFO hung forever.
* ``formats.read_header`` before any decoder runs: the format comes from the content
  (JPEG, PNG, WebP, BMP, TIFF, GIF; anything else is refused by name, so rarely used
  decoders with CVE histories stay out of reach), and the declared size is checked
  against a pixel cap. A 112 KB JPEG declaring 29867x18304 used to take 10.6 s and
  3.1 GiB, and a 196-byte PNG declaring 40000x40000 raised ``cv2.error`` past all error
  handling.
* ``formats.check_complete`` and the codecs' own messages (``codec_messages``): a JPEG
  cut short, or with a hole in its scan, decodes "successfully" as a half-grey picture;
  libjpeg only says so on stderr. Such images are refused unless ``allow_corrupt``.
* ``_PixelBudget``: big decodes wait for each other, so peak memory is bounded by one
  image at the cap, not by one such image per decode thread.
* Every exception from a decoder, of any type, becomes an ``InputError`` for that image.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from collections import deque
from contextlib import contextmanager

from ..errors import InputError, first_line
from ..host import deps
from . import codec_messages, formats

# Pillow's MAX_IMAGE_PIXELS, the size at which Pillow (and so Keras' load_img) warns of
# a decompression bomb: 2**30 bytes / 4 / 3. Every common camera is below it (a 61 MP
# full-frame sensor is 60.2 MP); decoding an image at the cap takes about 270 MB.
DEFAULT_MAX_PIXELS = 89_478_485
deps.want_opencv_pixel_limit(DEFAULT_MAX_PIXELS)  # OpenCV's own cap behind ours (host/deps.py)
# A JPEG at the pixel cap is 20-60 MB; a PNG can be a few times that. Uncompressed BMP
# or TIFF near the cap needs a larger --max-file-size.
DEFAULT_MAX_FILE_BYTES = 256 * 2**20

_KIND = {stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symbolic link"}


def _kind(mode: int) -> str:
    return _KIND.get(stat.S_IFMT(mode), "not a regular file")


def read_file(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``InputError`` otherwise.

    The type is checked with ``stat`` before opening (opening a FIFO for reading blocks
    until a writer comes; opening some devices has side effects), then again on the open
    descriptor, which is what is read (a file swapped in between is caught). The read
    stops at ``max_bytes + 1`` whatever the size claimed: files in /proc say 0.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError("no such file") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL byte in the name
        raise InputError(f"invalid file name ({exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"is {_kind(st.st_mode)}, not an image file")
    if st.st_size > max_bytes:
        raise InputError(f"file is {_size(st.st_size)}, above the {_size(max_bytes)} limit (--max-file-size)")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except PermissionError:
        raise InputError("permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, swapped in after the stat
            raise InputError("is a socket, not an image file") from None
        raise InputError(f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"is {_kind(st.st_mode)}, not an image file")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if total > max_bytes:
        raise InputError(f"file grew past the {_size(max_bytes)} limit while being read (--max-file-size)")
    if total == 0:
        raise InputError("empty file")
    return b"".join(chunks)


class _PixelBudget:
    """Decodes reserve their declared pixel count; together they stay within ``capacity``.

    One image above the capacity (allowed when the caller raised the cap) runs alone.
    First come, first served, so a big image is not starved by a stream of small ones.
    A 20000x20000 PNG used to cost 2.45 GiB per decode thread.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._used = 0
        self._queue: deque = deque()
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, pixels: int):
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                codec_messages.wait_for(self._cond, lambda: self._queue[0] is ticket and not (
                    self._used and self._used + pixels > self.capacity))
            except BaseException:  # Ctrl-C while waiting: a ticket left behind would block all
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._used += pixels
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._used -= pixels
                self._cond.notify_all()


budget = _PixelBudget(DEFAULT_MAX_PIXELS)


def imdecode(data, flags: int, max_pixels: int = DEFAULT_MAX_PIXELS, allow_corrupt: bool = False):
    """``cv2.imdecode`` behind the checks above: (image, notes) or ``InputError``.

    ``notes`` are what the codec said about an image that is still good (a libpng
    warning about a colour profile, say), or, with ``allow_corrupt``, why it is not.
    """
    try:
        header = formats.read_header(data)
        formats.check_complete(data, header)
    except formats.FormatError as exc:
        raise InputError(str(exc)) from None
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise InputError(f"{header.format} image is {header.width}x{header.height} ({pixels / 1e6:.1f} megapixels), "
                         f"above the {max_pixels / 1e6:.1f}-megapixel limit (--max-pixels)")
    if header.alloc_pixels and header.alloc_pixels > max_pixels:
        raise InputError(f"{header.format} image declares {header.alloc_pixels / 1e6:.1f}-megapixel tiles or strips, "
                         f"above the {max_pixels / 1e6:.1f}-megapixel limit (--max-pixels)")
    cv2 = deps.cv2()
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)

    def damaging(line: str) -> bool:
        return _damaging(line, data)

    with budget.reserve(pixels + (header.alloc_pixels or 0)):
        out = codec_messages.run(lambda: cv2.imdecode(buf, flags), lambda lines: any(map(damaging, lines)))
    damage = [line for line in out.lines if damaging(line)]
    notes = [line for line in out.lines if not damaging(line)]
    if out.error is not None:
        reason = damage[-1] if damage else first_line(out.error)
        raise InputError(f"cannot decode this {header.format} image: {_tidy(reason)}")
    img = out.value
    if img is None or getattr(img, "size", 0) == 0:
        why = f": {_tidy(damage[-1])}" if damage else ""
        raise InputError(f"not a readable {header.format} image (corrupt or truncated){why}")
    if damage:
        if not allow_corrupt:
            raise InputError(f"corrupt {header.format} data, the image is only partly decoded "
                             f"({_tidy(damage[0])}); refused (--allow-corrupt classifies it anyway)")
        notes = [f"classified although partly decoded: {_tidy(line)}" for line in damage] + notes
    if img.shape[0] * img.shape[1] > max(max_pixels, pixels):  # the decoder disagreed with the header
        raise InputError(f"{header.format} decoder produced {img.shape[1]}x{img.shape[0]}, "
                         f"more than the header's {header.width}x{header.height}")
    return img, [_tidy(n) for n in notes]


_EXTRANEOUS = re.compile(r"^Corrupt JPEG data: (\d+) extraneous bytes before marker 0x([0-9a-fA-F]{2})")


def _damaging(line: str, data) -> bool:
    """Whether a codec line means the decoded pixels are not the stored picture.

    libjpeg says "N extraneous bytes before marker 0xd9" both for zero padding before the
    end marker (some cameras write it; the pixels are intact) and for the leftover of a
    scan that lost bytes in the middle (6% of 600 random holes cut into real photos here;
    the rest said "premature end of data segment" or nothing at all). Padding is zeros;
    leftover scan data is not. Before a scan or restart marker, leftovers are scan data.
    """
    m = _EXTRANEOUS.match(line)
    if not m:
        return codec_messages.is_damage(line)
    n, marker = int(m.group(1)), int(m.group(2), 16)
    if marker == 0xD9:
        return not _zero_padding_before_end(bytes(data), n)
    return marker == 0xDA or 0xD0 <= marker <= 0xD7


def _zero_padding_before_end(data: bytes, n: int) -> bool:
    last_scan = data.rfind(b"\xff\xda")  # FF DA never occurs inside entropy-coded data
    end = data.find(b"\xff\xd9", max(last_scan, 0))
    while end > 0 and data[end - 1] == 0xFF:  # fill bytes before the marker are not counted
        end -= 1
    return last_scan >= 0 and end - n > last_scan and not any(data[end - n: end])


def _tidy(line: str) -> str:
    """OpenCV's log lines carry a prefix and a source location: keep the message."""
    line = line.strip()
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == "global":  # global file.cpp:123 function message
            line = parts[3]
    return line[:300]


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"
