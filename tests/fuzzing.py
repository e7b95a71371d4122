"""The decode fuzz target, its seeds and a mutator aimed at the fields that size buffers.

Shared by tests/test_fuzz_decode.py (a short, deterministic run in every test run) and
tools/fuzz_decode.py (the long run: hours, crash and hang supervision, atheris if
installed). Generic byte mutations rarely hit the few bytes that matter most in an image
file: the width, height, tile, strip and bit-depth fields that decoders multiply
together to size their allocations. So besides flips, cuts and splices, ``mutate``
locates those fields in each format and writes extreme values into them.
"""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).parent / "corpus" / "decode"
EXTREMES = (0, 1, 2, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def seeds() -> dict[str, bytes]:
    """Small real photos (scikit-image's) in each accepted format and a few of their variants."""
    import skimage
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    rgb = Image.open(data / "chelsea.png").convert("RGB").resize((40, 27))
    rgba = rgb.copy()
    rgba.putalpha(128)

    def enc(img, fmt, **kw) -> bytes:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return buf.getvalue()

    return {
        "jpeg.jpg": enc(rgb, "JPEG", quality=85),
        "jpeg-progressive.jpg": enc(rgb, "JPEG", quality=80, progressive=True),
        "jpeg-gray.jpg": enc(rgb.convert("L"), "JPEG"),
        "png.png": enc(rgb, "PNG"),
        "png-rgba.png": enc(rgba, "PNG"),
        "png-palette.png": enc(rgb.quantize(16), "PNG"),
        "png-16bit.png": enc(Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257)), "PNG"),
        "webp-lossy.webp": enc(rgb, "WEBP", quality=70),
        "webp-lossless.webp": enc(rgb, "WEBP", lossless=True),
        "webp-alpha.webp": enc(rgba, "WEBP", quality=70),
        "bmp.bmp": enc(rgb, "BMP"),
        "bmp-palette.bmp": enc(rgb.quantize(16), "BMP"),
        "tiff.tif": enc(rgb, "TIFF"),
        "tiff-lzw.tif": enc(rgb, "TIFF", compression="tiff_lzw"),
        "tiff-deflate.tif": enc(rgb, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-jpeg.tif": enc(rgb, "TIFF", compression="jpeg"),
        "gif.gif": enc(rgb, "GIF"),
        "gif-animated.gif": enc(rgb, "GIF", save_all=True, append_images=[rgb.rotate(90)], duration=50),
    }


def target(data: bytes) -> str:
    """Decode and preprocess like the runtime does: ``"ok"`` or ``"refused: ..."``.

    Any other exception escapes: that is a bug (the runtime would report it per image,
    but every failure of a decoder must be an ``InputError`` with a reason).
    """
    from edge_classify.runtime.errors import InputError
    from edge_classify.runtime.images import preprocess
    from edge_classify.runtime.model.contract import PreprocessSpec

    try:
        img, _ = preprocess.decode_with_notes(data)
    except InputError as exc:
        return f"refused: {exc.message}"
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, img.shape
    spec = PreprocessSpec()
    x = preprocess.normalize(preprocess.resize(img, spec)[None], spec)
    assert x.shape == (1, 224, 224, 3) and np.isfinite(x).all()
    return "ok"


# ------------------------------------------------------------------------ size fields
def size_fields(data: bytes) -> list[tuple[int, int, str]]:
    """(offset, length, byte order) of header fields that size decoder buffers."""
    out: list[tuple[int, int, str]] = []
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        out += [(16, 4, "big"), (20, 4, "big"), (24, 1, "big"), (25, 1, "big")]  # w, h, depth, colour type
    elif data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2: i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                out += [(i + 4, 1, "big"), (i + 5, 2, "big"), (i + 7, 2, "big"), (i + 9, 1, "big")]
                comps = data[i + 9] if i + 9 < len(data) else 0
                out += [(i + 11 + 3 * c, 1, "big") for c in range(min(comps, 4))]  # sampling factors
            if marker == 0xDA:
                break
            i += 2 + length
        out.append((i + 2, 2, "big")) if i + 4 <= len(data) else None  # an SOS / segment length
    elif data[:3] == b"GIF":
        out += [(6, 2, "little"), (8, 2, "little"), (10, 1, "little")]
        i = data.find(b"\x2c", 13)
        if i > 0:
            out += [(i + 1, 2, "little"), (i + 3, 2, "little"), (i + 5, 2, "little"), (i + 7, 2, "little")]
    elif data[:2] == b"BM":
        out += [(2, 4, "little"), (10, 4, "little"), (14, 4, "little"), (18, 4, "little"), (22, 4, "little"),
                (28, 2, "little"), (30, 4, "little"), (34, 4, "little"), (46, 4, "little")]
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        order = "little" if data[:2] == b"II" else "big"
        e = "<" if order == "little" else ">"
        ifd = struct.unpack(e + "I", data[4:8])[0]
        if ifd + 2 <= len(data):
            n = struct.unpack(e + "H", data[ifd: ifd + 2])[0]
            for k in range(min(n, 64)):
                at = ifd + 2 + 12 * k
                if at + 12 > len(data):
                    break
                tag = struct.unpack(e + "H", data[at: at + 2])[0]
                if tag in (256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325, 338, 339):
                    out += [(at + 4, 4, order), (at + 8, 4, order)]  # count, value/offset
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = data[12:16]
        if kind == b"VP8 ":
            out += [(26, 2, "little"), (28, 2, "little"), (16, 4, "little")]
        elif kind == b"VP8L":
            out += [(21, 4, "little"), (16, 4, "little")]
        elif kind == b"VP8X":
            out += [(24, 3, "little"), (27, 3, "little"), (16, 4, "little")]
        out.append((4, 4, "little"))
    return [(o, n, bo) for o, n, bo in out if o + n <= len(data)]


def set_field(data: bytes, field: tuple[int, int, str], value: int) -> bytes:
    off, n, order = field
    value %= 1 << (8 * n)
    return data[:off] + value.to_bytes(n, order) + data[off + n:]


def mutate(data: bytes, rng: random.Random, others: list[bytes] = ()) -> bytes:
    """One to four random mutations, half of them aimed at size fields."""
    for _ in range(rng.randint(1, 4)):
        fields = size_fields(data)
        op = rng.random()
        if fields and op < 0.5:
            f = rng.choice(fields)
            value = rng.choice(EXTREMES) if rng.random() < 0.7 else rng.getrandbits(8 * f[1])
            data = set_field(data, f, value)
        elif op < 0.65 and data:
            i = rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
        elif op < 0.75 and len(data) > 8:
            data = data[: rng.randrange(8, len(data))]  # truncation
        elif op < 0.82 and len(data) > 16:
            i, j = sorted(rng.sample(range(8, len(data)), 2))
            data = data[:i] + data[j:]  # a hole
        elif op < 0.9 and data:
            i = rng.randrange(len(data))
            data = data[:i] + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16))) + data[i:]
        elif others:
            other = rng.choice(others)
            i, j = rng.randrange(len(data) + 1), rng.randrange(len(other) + 1)
            data = data[:i] + other[j:]  # splice with another seed
    return data
