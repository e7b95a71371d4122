"""runtime/images/formats.py: content sniffing, declared sizes, completeness checks, hostile input.

Seeds are real photos from scikit-image encoded by Pillow (and tifffile, which scikit-image
depends on) in every variant the runtime accepts, plus a few hand-made files for what those
writers cannot produce (EXIF thumbnail, top-down and OS/2 BMP, minimal BigTIFF). Sizes are
checked against Pillow and against what OpenCV actually decodes.
"""

from __future__ import annotations

import ast
import functools
import io
import random
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, features

from edge_classify.runtime.images import formats
from edge_classify.runtime.images.formats import ALLOWED, FormatError, Header, check_complete, read_header, sniff

DATA = Path(skimage.__file__).parent / "data"
ACCEPTED = "(accepted: JPEG, PNG, WebP, BMP, TIFF, GIF)"

try:
    import tifffile
except ImportError:  # pragma: no cover - scikit-image depends on it
    tifffile = None


# ---------------------------------------------------------------------------- builders


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def tiff_writer(array: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kw)
    return buf.getvalue()


def exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """An APP1 EXIF segment whose IFD1 carries a whole JPEG (its own SOI, SOF, EOI)."""
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHIHH", 274, 3, 1, 1, 0)  # Orientation = 1
    ifd1_at = 8 + len(ifd0) + 4
    thumb_at = ifd1_at + 2 + 2 * 12 + 4
    tiff = b"II*\0" + struct.pack("<I", 8) + ifd0 + struct.pack("<I", ifd1_at)
    tiff += struct.pack("<H", 2) + struct.pack("<HHII", 513, 4, 1, thumb_at) + struct.pack("<HHII", 514, 4, 1, len(thumbnail))
    tiff += struct.pack("<I", 0) + thumbnail
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def bmp_top_down(bmp: bytes) -> bytes:
    """The same 24-bit picture with rows stored top-down, as a negative height declares."""
    (pixels_at,) = struct.unpack_from("<I", bmp, 10)
    width, height = struct.unpack_from("<ii", bmp, 18)
    stride = (width * 3 + 3) & ~3
    rows = [bmp[pixels_at + r * stride : pixels_at + (r + 1) * stride] for r in range(height)]
    head = bytearray(bmp[:pixels_at])
    struct.pack_into("<i", head, 22, -height)
    return bytes(head) + b"".join(reversed(rows))


def bmp_os2(bmp: bytes) -> bytes:
    """A 24-bit BMP rewritten with the 12-byte OS/2 BITMAPCOREHEADER."""
    (pixels_at,) = struct.unpack_from("<I", bmp, 10)
    width, height = struct.unpack_from("<ii", bmp, 18)
    pixels = bmp[pixels_at:]
    core = struct.pack("<IHHHH", 12, width, height, 1, 24)
    return b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + core + pixels


def tiff_by_hand(width: int, height: int, *, big: bool = False, order: str = "<", extra=()) -> bytes:
    """A minimal uncompressed 8-bit grey TIFF (classic or BigTIFF), one strip."""
    pixels = (bytes(range(0, 256, 3)) * (width * height // 86 + 1))[: width * height]
    tags = {256: (4, width), 257: (4, height), 258: (3, 8), 259: (3, 1), 262: (3, 1), 273: (4, 0),
            277: (3, 1), 278: (4, height), 279: (4, len(pixels))}  # fmt: skip
    tags.update({tag: (typ, value) for tag, typ, value in extra})
    head_size, count_fmt, entry_fmt, inline = (16, "Q", "HHQ", 8) if big else (8, "H", "HHI", 4)
    data_at = head_size + struct.calcsize(order + count_fmt) + len(tags) * (struct.calcsize(order + entry_fmt) + inline)
    data_at += inline  # next-IFD offset
    tags[273] = (tags[273][0], data_at)
    ifd = struct.pack(order + count_fmt, len(tags))
    for tag, (typ, value) in sorted(tags.items()):
        code = {3: "H", 4: "I", 16: "Q"}[typ]
        ifd += struct.pack(order + entry_fmt, tag, typ, 1) + struct.pack(order + code, value).ljust(inline, b"\0")
    ifd += bytes(inline)
    magic = b"II" if order == "<" else b"MM"
    head = magic + (struct.pack(order + "HHHQ", 43, 8, 0, 16) if big else struct.pack(order + "HI", 42, 8))
    return head + ifd + pixels


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_by_hand(width: int, height: int, chunks=None) -> bytes:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    if chunks is None:
        chunks = [png_chunk(b"IDAT", zlib.compress(b"\0" * 64))]
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(chunks) + png_chunk(b"IEND", b"")


def gif_frame_past_screen(gif: bytes, screen: tuple[int, int]) -> bytes:
    """A single-frame GIF whose logical screen is smaller than its frame."""
    out = bytearray(gif)
    struct.pack_into("<HH", out, 6, *screen)
    return bytes(out)


def variants(rgb: Image.Image) -> dict[str, tuple[str, bytes]]:
    """name -> (format, bytes): the photo in every accepted variant."""
    gray = rgb.convert("L")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(gray)  # real transparency, so that encoders keep the alpha channel
    palette = rgb.convert("P")  # the web palette: fast, unlike GIF's default quantizer
    small = rgb.resize((16, 12))
    jpeg = encode(rgb, "JPEG", quality=90)
    bmp = encode(rgb, "BMP")
    out = {
        "jpeg-baseline": jpeg,
        "jpeg-progressive": encode(rgb, "JPEG", quality=85, progressive=True),
        "jpeg-gray": encode(gray, "JPEG"),
        "jpeg-cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "jpeg-444-restart-comment": encode(rgb, "JPEG", subsampling=0, restart_marker_rows=1, comment=b"hi"),
        "jpeg-exif-thumbnail": jpeg[:2] + exif_with_thumbnail(encode(small, "JPEG")) + jpeg[2:],
        # libjpeg skips FF fill bytes before a marker, and so must the parser.
        "jpeg-fill-bytes": jpeg[:2] + b"\xff\xff\xff" + jpeg[2:],
        "jpeg-trailing-bytes": jpeg + b"\0" * 100 + b"camera maker notes",
        "png-rgb": encode(rgb, "PNG", compress_level=1),
        "png-rgba": encode(rgba, "PNG", compress_level=1),
        "png-palette": encode(palette, "PNG", compress_level=1),
        "png-gray": encode(gray, "PNG", compress_level=1),
        "png-16bit": encode(gray.convert("I;16"), "PNG", compress_level=1),
        "png-animated": encode(rgb, "PNG", save_all=True, append_images=[rgb.rotate(180)], compress_level=1),
        "bmp-24": bmp,
        "bmp-top-down": bmp_top_down(bmp),
        "bmp-os2": bmp_os2(bmp),
        "bmp-palette": encode(palette, "BMP"),
        "bmp-32": encode(rgba, "BMP"),
        "tiff-raw": encode(rgb, "TIFF"),
        "tiff-lzw": encode(rgb, "TIFF", compression="tiff_lzw"),
        "tiff-deflate-gray": encode(gray, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-bigtiff-by-hand": tiff_by_hand(*rgb.size, big=True),
        "tiff-bigendian-by-hand": tiff_by_hand(*rgb.size, order=">"),
        "webp-lossy": encode(rgb, "WEBP", quality=80),
        "webp-lossless": encode(rgb, "WEBP", lossless=True, method=0),
        "webp-alpha": encode(rgba, "WEBP"),
        "webp-exif": encode(rgb, "WEBP", exif=Image.Exif().tobytes()),
        "webp-animated": encode(rgb, "WEBP", save_all=True, append_images=[rgb.rotate(180)]),
        "gif-static": encode(palette, "GIF"),
        "gif-animated": encode(palette, "GIF", save_all=True, append_images=[palette.rotate(180), palette.transpose(0)]),
    }
    if tifffile is not None:
        array = np.asarray(rgb)
        out["tiff-tiled"] = tiff_writer(array, tile=(64, 64))
        out["tiff-tiled-bigtiff-bigendian"] = tiff_writer(array, tile=(64, 64), bigtiff=True, byteorder=">")
        out["tiff-rows-per-strip"] = tiff_writer(array, rowsperstrip=7, compression="zlib")
    return {name: (name.split("-")[0].upper().replace("WEBP", "WebP"), data) for name, data in out.items()}


@functools.cache
def photo_variants() -> dict[str, tuple[str, bytes]]:
    photos = variants(Image.open(DATA / "chelsea.png").convert("RGB"))  # 451x300: w != h
    photos["tiff-multipage"] = ("TIFF", (DATA / "multipage.tif").read_bytes())
    photos["gif-animated-bundled"] = ("GIF", (DATA / "no_time_for_that_tiny.gif").read_bytes())
    return photos


@functools.cache
def small_variants() -> dict[str, tuple[str, bytes]]:
    """Tiny seeds (37x23), so that headers are most of each file, for fuzzing and truncation sweeps."""
    small = variants(Image.open(DATA / "coffee.png").convert("RGB").resize((37, 23)))
    small["tiff-multipage"] = photo_variants()["tiff-multipage"]
    small["gif-animated-bundled"] = photo_variants()["gif-animated-bundled"]
    return small


PHOTO_NAMES = [
    "jpeg-baseline", "jpeg-progressive", "jpeg-gray", "jpeg-cmyk", "jpeg-444-restart-comment",
    "jpeg-exif-thumbnail", "jpeg-fill-bytes", "jpeg-trailing-bytes",
    "png-rgb", "png-rgba", "png-palette", "png-gray", "png-16bit", "png-animated",
    "bmp-24", "bmp-top-down", "bmp-os2", "bmp-palette", "bmp-32",
    "tiff-raw", "tiff-lzw", "tiff-deflate-gray", "tiff-bigtiff-by-hand", "tiff-bigendian-by-hand",
    "tiff-tiled", "tiff-tiled-bigtiff-bigendian", "tiff-rows-per-strip", "tiff-multipage",
    "webp-lossy", "webp-lossless", "webp-alpha", "webp-exif", "webp-animated",
    "gif-static", "gif-animated", "gif-animated-bundled",
]  # fmt: skip
NEEDS_TIFFFILE = {"tiff-tiled", "tiff-tiled-bigtiff-bigendian", "tiff-rows-per-strip"}
NOT_FOR_PILLOW = {"tiff-tiled-bigtiff-bigendian"}  # Pillow cannot open big-endian BigTIFF


def photo(name: str) -> tuple[str, bytes]:
    found = photo_variants().get(name)
    if found is None:
        pytest.skip(f"{name} needs tifffile")
    return found


def opencv_shape(data: bytes) -> tuple[int, int] | None:
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if decoded is None else decoded.shape[:2]


# ---------------------------------------------------------------------------- accepted variants


def test_module_is_standard_library_only():
    source = Path(formats.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "dataclasses", "re", "struct"}


def test_variant_list_is_complete():
    built = set(photo_variants()) | (NEEDS_TIFFFILE if tifffile is None else set())
    assert built == set(PHOTO_NAMES)


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_read_header_matches_pillow_and_opencv(name):
    fmt, data = photo(name)
    header = read_header(data)
    assert sniff(data) == fmt == header.format
    assert isinstance(header.width, int) and isinstance(header.height, int)
    if name not in NOT_FOR_PILLOW:
        assert (header.width, header.height) == Image.open(io.BytesIO(data)).size
    # OpenCV decodes the first frame of animated files at the canvas (logical screen) size.
    assert opencv_shape(data) == (header.height, header.width)
    check_complete(data, header)
    check_complete(memoryview(data), header)
    assert read_header(memoryview(data)) == read_header(bytearray(data)) == header


def test_exif_thumbnail_is_skipped_not_reported():
    _, data = photo("jpeg-exif-thumbnail")
    assert data.count(b"\xff\xd9") >= 2 and data.count(b"\xff\xc0") >= 2
    header = read_header(data)
    assert (header.width, header.height) == (451, 300)  # not the thumbnail's 16x12
    # The thumbnail's EOI lies before the main image's first scan: it must not count.
    truncated = data[: len(data) // 2]
    with pytest.raises(FormatError, match="truncated JPEG: no end-of-image marker"):
        check_complete(truncated, read_header(truncated))


def test_top_down_bmp_decodes_to_the_same_picture():
    _, bottom_up = photo("bmp-24")
    _, top_down = photo("bmp-top-down")
    assert struct.unpack_from("<i", top_down, 22)[0] < 0
    a = cv2.imdecode(np.frombuffer(bottom_up, np.uint8), cv2.IMREAD_COLOR)
    b = cv2.imdecode(np.frombuffer(top_down, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(a, b)


def test_tiff_alloc_pixels():
    assert read_header(photo("tiff-raw")[1]).alloc_pixels == 451 * 300  # Pillow: one strip
    assert read_header(tiff_by_hand(40, 30, extra=[(278, 3, 7)])).alloc_pixels == 40 * 7
    assert read_header(tiff_by_hand(40, 30, extra=[(278, 4, 0xFFFFFFFF)])).alloc_pixels == 40 * 30
    tiled = read_header(tiff_by_hand(40, 30, extra=[(322, 3, 16), (323, 3, 32)]))
    assert (tiled.width, tiled.height, tiled.alloc_pixels) == (40, 30, 16 * 32)
    if tifffile is not None:
        assert read_header(photo("tiff-tiled")[1]).alloc_pixels == 64 * 64
        assert read_header(photo("tiff-rows-per-strip")[1]).alloc_pixels == 451 * 7
    assert read_header(photo("png-rgb")[1]).alloc_pixels is None


def test_gif_frame_larger_than_screen():
    gif = encode(Image.new("RGB", (20, 30), "red"), "GIF")
    header = read_header(gif_frame_past_screen(gif, (10, 10)))
    assert (header.width, header.height) == (20, 30)
    # OpenCV 5 decodes at the logical screen size and refuses frames that do not fit in it;
    # either way it never allocates more than the header reports.
    shape = opencv_shape(gif_frame_past_screen(gif, (10, 10)))
    assert shape is None or (shape[0] <= header.height and shape[1] <= header.width)
    inside = gif_frame_past_screen(gif, (50, 40))
    assert (read_header(inside).width, read_header(inside).height) == (50, 40)
    assert opencv_shape(inside) == (40, 50)


# ---------------------------------------------------------------------------- decompression bombs


def test_png_bomb_dimensions():
    bomb = png_by_hand(40000, 40000)
    assert len(bomb) < 200
    header = read_header(bomb)
    assert (header.format, header.width, header.height) == ("PNG", 40000, 40000)
    check_complete(bomb, header)


def test_jpeg_bomb_dimensions():
    data = bytearray(photo("jpeg-baseline")[1])
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 18304, 29867)  # SOF stores height, then width
    header = read_header(bytes(data))
    assert (header.format, header.width, header.height) == ("JPEG", 29867, 18304)


def test_other_bombs_dimensions():
    tiles = read_header(tiff_by_hand(16, 16, extra=[(322, 4, 65536), (323, 4, 65536)]))
    assert (tiles.width, tiles.height, tiles.alloc_pixels) == (16, 16, 2**32)
    gif = bytearray(encode(Image.new("RGB", (20, 30)), "GIF"))
    struct.pack_into("<4H", gif, gif.index(b",", 13) + 1, 0, 0, 60000, 60000)
    assert read_header(bytes(gif)).width == 60000
    webp = bytearray(photo("webp-alpha")[1])
    assert webp[12:16] == b"VP8X"
    webp[24:30] = (16383).to_bytes(3, "little") * 2
    assert (read_header(bytes(webp)).width, read_header(bytes(webp)).height) == (16384, 16384)
    bmp = bytearray(photo("bmp-24")[1])
    struct.pack_into("<ii", bmp, 18, 2**31 - 1, -(2**31))
    assert (read_header(bytes(bmp)).width, read_header(bytes(bmp)).height) == (2**31 - 1, 2**31)


# ---------------------------------------------------------------------------- completeness


def test_truncated_jpeg_fails_check_complete():
    for name in ("jpeg-baseline", "jpeg-progressive"):
        data = photo(name)[1]
        cut = data[: len(data) // 2]
        assert b"\xff\xd9" not in cut[cut.index(b"\xff\xda") :]
        header = read_header(cut)
        with pytest.raises(FormatError, match="^truncated JPEG: no end-of-image marker after the image data$"):
            check_complete(cut, header)
    data = photo("jpeg-baseline")[1]
    headers_only = data[: data.index(b"\xff\xda")]
    with pytest.raises(FormatError, match="truncated JPEG"):
        check_complete(headers_only, read_header(headers_only))


def test_truncated_png_fails_check_complete():
    data = photo("png-rgb")[1]
    cut = data[: len(data) // 2]
    with pytest.raises(FormatError, match="^truncated PNG: the data ends inside the 'IDAT' chunk$"):
        check_complete(cut, read_header(cut))
    with pytest.raises(FormatError, match="truncated PNG"):
        check_complete(data[:-1], read_header(data))


def test_png_structure_errors():
    no_idat = png_by_hand(4, 4, chunks=[png_chunk(b"tEXt", b"a\0b")])
    with pytest.raises(FormatError, match="^corrupt PNG: no IDAT"):
        check_complete(no_idat, read_header(no_idat))
    absurd = png_by_hand(4, 4, chunks=[struct.pack(">I", 2**31) + b"IDAT" + b"\0" * 40])
    with pytest.raises(FormatError, match="^corrupt PNG: chunk 'IDAT' has length 2147483648"):
        check_complete(absurd, read_header(absurd))
    no_iend = png_by_hand(4, 4)[:-12]
    with pytest.raises(FormatError, match="^truncated PNG: the data ends before the IEND chunk$"):
        check_complete(no_iend, read_header(no_iend))


def test_check_complete_ignores_other_formats():
    for name in ("bmp-24", "gif-static", "webp-lossy", "tiff-raw"):
        fmt, data = photo(name)
        assert check_complete(data[:40], Header(fmt, 1, 1)) is None


def test_every_truncation_of_small_seeds():
    """Cut anywhere: read_header gives the full header or FormatError; a cut JPEG/PNG never passes."""
    for name, (fmt, data) in small_variants().items():
        full = read_header(data)
        eoi = data.rindex(b"\xff\xd9") + 2 if fmt == "JPEG" else len(data)
        for cut in [*range(0, min(len(data), 640)), *range(640, len(data), 29)]:
            prefix = data[:cut]
            try:
                header = read_header(prefix)
            except FormatError:
                continue
            assert header == full, (name, cut)
            if fmt in ("JPEG", "PNG") and cut < eoi:
                with pytest.raises(FormatError):
                    check_complete(prefix, header)


# ---------------------------------------------------------------------------- refused and unknown content


def pillow_or(fmt: str, craft: bytes, feature: str | None = None, **kw):
    """Pillow's encoding of a small photo in ``fmt`` when it can write it, else crafted bytes."""

    def build() -> bytes:
        if feature and not features.check(feature):
            return craft
        img = Image.open(DATA / "coffee.png").convert(kw.get("mode", "RGB")).resize((24, 16))
        return encode(img, fmt, **{k: v for k, v in kw.items() if k != "mode"})

    return build


JUNK = bytes(range(256)) * 2
REFUSED = [
    ("ppm", "Netpbm (PPM/PGM/PBM/PAM)", pillow_or("PPM", b"")),
    ("pgm", "Netpbm (PPM/PGM/PBM/PAM)", pillow_or("PPM", b"", mode="L")),
    ("pbm", "Netpbm (PPM/PGM/PBM/PAM)", pillow_or("PPM", b"", mode="1")),
    ("pbm-ascii", "Netpbm (PPM/PGM/PBM/PAM)", lambda: b"P1\n2 2\n0 1\n1 0\n"),
    ("pam", "Netpbm (PPM/PGM/PBM/PAM)", lambda: b"P7\nWIDTH 2\nHEIGHT 2\nDEPTH 1\nMAXVAL 255\nENDHDR\n\0\0\0\0"),
    ("pfm-gray", "PFM", pillow_or("PPM", b"", mode="F")),
    ("pfm-color", "PFM", lambda: b"PF\n2 1\n-1.0\n" + bytes(24)),
    ("j2k", "JPEG 2000", pillow_or("JPEG2000", b"\xff\x4f\xff\x51" + JUNK, "jpg_2000", no_jp2=True)),
    ("jp2", "JPEG 2000", pillow_or("JPEG2000", b"\0\0\0\x0cjP  \r\n\x87\n" + JUNK, "jpg_2000")),
    ("avif", "AVIF", pillow_or("AVIF", b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + JUNK, "avif")),
    ("avif-mif1-major", "AVIF", lambda: b"\0\0\0\x1cftypmif1\0\0\0\0mif1miafavif" + JUNK),
    ("heic", "HEIF/HEIC", lambda: b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + JUNK),
    ("heif-256-byte-box", "HEIF/HEIC", lambda: b"\0\0\x01\0ftypmif1\0\0\0\0mif1" + JUNK),
    ("jxl-codestream", "JPEG XL", lambda: b"\xff\x0a" + JUNK),
    ("jxl-container", "JPEG XL", lambda: b"\0\0\0\x0cJXL \r\n\x87\n" + JUNK),
    ("hdr-radiance", "Radiance HDR", lambda: b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 2\n" + JUNK),
    ("hdr-rgbe", "Radiance HDR", lambda: b"#?RGBE\n" + JUNK),
    ("sun-raster", "Sun raster", lambda: b"\x59\xa6\x6a\x95" + JUNK),
    ("openexr", "OpenEXR", lambda: b"\x76\x2f\x31\x01" + JUNK),
    ("psd", "Photoshop PSD", lambda: b"8BPS\0\x01" + JUNK),
    ("ico", "ICO", pillow_or("ICO", b"")),
    ("pdf", "PDF", pillow_or("PDF", b"")),
    ("svg", "SVG/XML", lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
    ("svg-bom-whitespace", "SVG/XML", lambda: b"\xef\xbb\xbf \n\t<svg/>"),
    ("xml", "SVG/XML", lambda: b"<?xml version='1.0'?><svg/>"),
    ("qoi", "QOI", lambda: b"qoif" + struct.pack(">IIBB", 2, 2, 3, 0) + JUNK),
]


@pytest.mark.parametrize(("case", "name", "build"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_formats_are_named(case, name, build):
    data = build()
    assert sniff(data) == name
    with pytest.raises(FormatError) as raised:
        read_header(data)
    assert str(raised.value) == f"{name} images are not accepted {ACCEPTED}"


OPENCV_ENCODED = [(".ppm", "Netpbm (PPM/PGM/PBM/PAM)"), (".pgm", "Netpbm (PPM/PGM/PBM/PAM)"),
                  (".pbm", "Netpbm (PPM/PGM/PBM/PAM)"), (".pam", "Netpbm (PPM/PGM/PBM/PAM)"), (".pfm", "PFM"),
                  (".hdr", "Radiance HDR"), (".ras", "Sun raster"), (".jp2", "JPEG 2000"), (".avif", "AVIF")]  # fmt: skip


@pytest.mark.parametrize(("ext", "name"), OPENCV_ENCODED)
def test_formats_opencv_would_decode_are_refused(ext, name):
    """Each of these reaches a decoder through a plain imdecode: the allow-list is what stops it."""
    img = np.asarray(Image.open(DATA / "coffee.png").convert("RGB").resize((64, 48)))
    if ext in (".pgm", ".pbm"):
        img = img[:, :, 0]
    if ext in (".pfm", ".hdr"):
        img = img.astype(np.float32) / 255
    try:
        ok, encoded = cv2.imencode(ext, img)
    except cv2.error:
        ok = False
    if not ok:
        pytest.skip(f"this OpenCV build cannot write {ext}")
    assert opencv_shape(encoded.tobytes()) == (48, 64)
    assert sniff(encoded.tobytes()) == name
    with pytest.raises(FormatError, match=f"^{re.escape(name)} images are not accepted"):
        read_header(encoded.tobytes())


@pytest.mark.parametrize(
    "data",
    [b"", b"\0", b"\xff", b"hello world", b"GIF88a" + JUNK, b"RIFF\0\0\0\0AVI LIST" + JUNK, b"\0\0\0\x18ftypisom" + JUNK,
     b"P8\n", b"PFX", b"\x89PNG\r\n\x1a\x00" + JUNK, b"II*\1", b"<html></html>"],
    ids=repr,
)  # fmt: skip
def test_unknown_content(data):
    assert sniff(data) is None
    with pytest.raises(FormatError) as raised:
        read_header(data)
    assert str(raised.value) == f"not a supported image format {ACCEPTED}"


ALLOWED_MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\0", b"MM\0*",
                  b"II+\0", b"MM\0+", b"RIFF\0\0\0\0WEBP", b"RIFF\xff\xff\xff\xffWEBPVP8 ",
                  b"RIFF\0\0\0\0WEBPVP8L", b"RIFF\0\0\0\0WEBPVP8X"]  # fmt: skip


def test_short_and_garbage_inputs_raise_only_format_error():
    rng = random.Random(1234)
    inputs = [bytes([b]) for b in range(256)]
    inputs += [rng.randbytes(rng.randrange(0, 400)) for _ in range(300)]
    for magic in ALLOWED_MAGICS:
        inputs.append(magic)
        inputs += [magic + bytes(k) for k in range(0, 48)]
        inputs += [magic + b"\xff" * k for k in range(0, 48)]
        inputs += [magic + rng.randbytes(rng.randrange(0, 200)) for _ in range(40)]
    for data in inputs:
        assert_only_format_errors(data)


def test_parsers_have_clear_messages_for_damaged_headers():
    cases = []
    png = photo("png-rgb")[1]
    cases.append((png[:20], "^truncated PNG header$"))
    cases.append((png[:16] + struct.pack(">I", 0) + png[20:], r"^corrupt PNG header: image size 0x300$"))
    cases.append((png[:16] + struct.pack(">I", 2**31) + png[20:], "exceeds the PNG limit"))
    cases.append((png[:12] + b"IDAT" + png[16:], "^corrupt PNG header: the first chunk is 'IDAT'"))
    jpeg = photo("jpeg-baseline")[1]
    sof = jpeg.index(b"\xff\xc0")
    cases.append((jpeg[: sof + 5] + b"\0\0" + jpeg[sof + 7 :], r"^corrupt JPEG header: image size 451x0$"))
    cases.append((jpeg[:sof] + b"\xff\xfe" + jpeg[sof + 2 :], r"^corrupt JPEG header: no frame \(SOF\) marker before the image data$"))
    cases.append((jpeg[:sof], r"^truncated JPEG header: the data ends before the frame \(SOF\) marker$"))
    cases.append((jpeg[:4] + b"\0\1" + jpeg[6:], r"^corrupt JPEG header: marker FFE0 has length 1$"))
    cases.append((jpeg[:2] + b"\xff\xd9" + jpeg[2:], r"no frame \(SOF\) marker before the end-of-image marker"))
    cases.append((b"\xff\xd8" + b"\xff\x01" * 5000, "more than 4096 markers"))
    bmp = photo("bmp-24")[1]
    cases.append((bmp[:14] + struct.pack("<I", 48) + bmp[18:], "^corrupt BMP header: unknown DIB header size 48$"))
    cases.append((bmp[:18] + struct.pack("<i", -451) + bmp[22:], "^corrupt BMP header: negative width -451$"))
    cases.append((bmp[:20], "^truncated BMP header$"))
    tif = tiff_by_hand(8, 8)
    cases.append((tif[:4] + struct.pack("<I", 0) + tif[8:], "^corrupt TIFF header: no image file directory$"))
    cases.append((tif[:4] + struct.pack("<I", 10**6) + tif[8:], "first image file directory lies past the end"))
    cases.append((tif[:8] + struct.pack("<H", 5000) + tif[10:], "image file directory with 5000 entries"))
    cases.append((tif[:8] + struct.pack("<H", 0) + tif[10:], "image file directory with 0 entries"))
    cases.append((tif[:40], "^truncated TIFF header: the image file directory runs past the end"))
    cases.append((tiff_by_hand(8, 8, extra=[(256, 16, 8)]), "^corrupt TIFF header: tag ImageWidth has type 16"))
    cases.append((tiff_by_hand(8, 8, extra=[(322, 3, 16)]), r"^corrupt TIFF header: tile size 16x0$"))
    cases.append((tiff_by_hand(8, 8, extra=[(278, 4, 0)]), r"^corrupt TIFF header: RowsPerStrip 0$"))
    cases.append((tiff_by_hand(8, 0), r"^corrupt TIFF header: image size 8x0$"))
    no_width = bytearray(tif)
    struct.pack_into("<H", no_width, 10, 999)  # the first entry (ImageWidth) becomes an unknown tag
    cases.append((bytes(no_width), "^corrupt TIFF header: no ImageWidth or ImageLength tag"))
    cases.append((b"II+\0" + struct.pack("<HHQ", 4, 0, 16) + bytes(16), "BigTIFF offset size 4"))
    webp = photo("webp-lossy")[1]
    cases.append((webp[:12] + b"VP9 " + webp[16:], "^corrupt WebP header: unknown first chunk 'VP9 '$"))
    cases.append((webp[:20] + bytes([webp[20] | 1]) + webp[21:], "not a key frame"))
    cases.append((webp[:26], "^truncated WebP header$"))
    lossless = photo("webp-lossless")[1]
    cases.append((lossless[:20] + b"\x2e" + lossless[21:], "bad VP8L signature"))
    gif = photo("gif-static")[1]
    cases.append((gif[:6] + struct.pack("<H", 0) + gif[8:], r"^corrupt GIF header: image size 0x300$"))
    cases.append((gif[:9], "^truncated GIF header$"))
    for data, message in cases:
        with pytest.raises(FormatError, match=message):
            read_header(data)


def _lines_executed_in_formats(fn) -> int:
    """Lines of formats.py that ``fn`` executes: a bound on work that does not depend on
    the machine (house rule: no test asserts a wall-clock time)."""
    import sys

    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if frame.f_code.co_filename != formats.__file__:
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def test_hostile_inputs_cost_no_python_loop_per_byte():
    hostile = [
        b"\xff\xd8" + b"\xff" * 1_000_000,
        b"\xff\xd8" + b"\xff\0" * 500_000,
        b"\xff\xd8\xff\xe0\0\x10" + bytes(14) + b"\xff\xc0\0\x11\x08\0\x10\0\x10" + bytes(9) + b"\xff\xda\0\x02" + b"\xff\0" * 500_000,
        png_by_hand(4, 4, chunks=[png_chunk(b"IDAT", b"")] + [png_chunk(b"tEXt", b"")] * 50_000)[:-12],
        b"GIF89a\x10\0\x10\0\0\0\0" + b"\x21\xf9" + b"\x01\0" * 500_000,
        b"II*\0\x08\0\0\0\xff\xff" + bytes(4095 * 12),
    ]  # fmt: skip
    costs = [_lines_executed_in_formats(lambda: assert_only_format_errors(data)) for data in hostile]
    # Runs of fill bytes or zeros are scanned by re, not by Python lines; marker, chunk and
    # block walks are capped (JPEG 4096 markers, PNG 100k chunks, GIF 65536 blocks, TIFF
    # 4096 entries), whatever the input's size. (Each input here is 0.5-1 MB.)
    assert max(costs[0], costs[5]) < 10_000, costs
    assert max(costs[1], costs[2]) < 400_000, costs
    assert max(costs) < 6_000_000, costs
    many = png_by_hand(4, 4, chunks=[png_chunk(b"tEXt", b"")] * 150_000 + [png_chunk(b"IDAT", b"")])
    with pytest.raises(FormatError, match="more than 100000 chunks"):
        check_complete(many, read_header(many))


# ---------------------------------------------------------------------------- property test


def assert_only_format_errors(data: bytes) -> None:
    try:
        header = read_header(data)
    except FormatError:
        header = None
    if header is not None:
        assert header.format in ALLOWED
        assert type(header.width) is int and type(header.height) is int
        assert header.width >= 1 and header.height >= 1
        assert header.alloc_pixels is None or header.alloc_pixels >= 1
    for fmt in ALLOWED:
        try:
            check_complete(data, header or Header(fmt, 1, 1))
        except FormatError:
            pass


EXTREMES = (0, 1, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 0xFFFFFFFF)
SMALL_NAMES = sorted(set(PHOTO_NAMES) - NEEDS_TIFFFILE)


def header_offsets(data: bytes) -> list[int]:
    """Offsets worth overwriting with extreme values: the first 64 bytes (PNG IHDR; GIF, BMP and
    WebP headers; the TIFF header and first IFD entries) and the first few JPEG segment headers."""
    hot = set(range(0, 64))
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xda", b"\xff\xdb", b"\xff\xc4", b"\xff\xe1"):
        at = data.find(marker)
        if at >= 0:
            hot.update(range(at, at + 12))
    return sorted(i for i in hot if i < len(data))


@st.composite
def mutants(draw):
    name = draw(st.sampled_from(SMALL_NAMES))
    data = bytearray(small_variants()[name][1])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(("flip", "field", "field", "truncate")))
        if kind == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "field":
            fmt = draw(st.sampled_from(("<H", ">H", "<I", ">I")))
            width = struct.calcsize(fmt)
            offsets = [i for i in header_offsets(bytes(data)) if i + width <= len(data)]
            if not offsets:
                continue
            value = draw(st.sampled_from(EXTREMES)) & (0xFFFF if width == 2 else 0xFFFFFFFF)
            struct.pack_into(fmt, data, draw(st.sampled_from(offsets)), value)
        else:
            del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(mutants())
def test_mutated_seeds_raise_only_format_error(data):
    assert_only_format_errors(data)


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding():
    """Each scan is a pass of libjpeg over the image; real progressive JPEGs have ~10."""
    buf = io.BytesIO()
    Image.open(DATA / "chelsea.png").convert("RGB").save(buf, "JPEG", progressive=True)
    good = buf.getvalue()
    check_complete(good, read_header(good))
    last = good.rfind(b"\xff\xda")
    bomb = good[:last] + good[last:-2] * 1200 + b"\xff\xd9"
    with pytest.raises(FormatError, match=r"JPEG with \d+ scans refused \(limit 1000\)"):
        check_complete(bomb, read_header(bomb))
