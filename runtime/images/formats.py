"""Identify an image's format by content and read its declared size, before any decoder runs.

OpenCV's ``imdecode`` picks a decoder by sniffing the bytes, so every codec compiled into
the wheel (JPEG 2000, OpenEXR, Radiance HDR, Sun raster, PFM, Netpbm, AVIF, ...) is reachable
from untrusted input whatever the file is called, and several of those rarely used decoders
have long CVE histories. This module is the gate in front of it: the format is decided by
magic bytes, never by file extension, and only an allow-list gets through (a refused format
is named in the error). It also reads the width and height the header declares, so a
decompression bomb (a few kilobytes declaring 40000x40000 pixels) can be refused before a
decoder allocates for it. Cheap structural checks spot truncated JPEG and PNG files, so a
cut-short upload gets a clear message instead of a decoder's generic failure (or, with
libjpeg's default error handling, a grey-padded image and a warning).

Everything here treats its input as hostile: only :class:`FormatError` is raised, every
offset is checked against the data, loops are bounded by the number of markers / chunks /
IFD entries (with caps), nothing is allocated in proportion to a declared size, and scans
over the data go through ``re`` (C speed), never a Python loop per byte. Standard library
only, so it can run before (and without) numpy or OpenCV.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

ALLOWED = ("JPEG", "PNG", "WebP", "BMP", "TIFF", "GIF")
_ACCEPTED = "accepted: " + ", ".join(ALLOWED)


class FormatError(ValueError):
    """The data is not an accepted image, or its header is damaged; the message says which."""


@dataclass(frozen=True)
class Header:
    """An accepted image's format and the size its header declares for the first image."""

    format: str  # one of ALLOWED
    width: int
    height: int
    # TIFF only: the largest buffer (in pixels) the decoder allocates besides the image
    # itself, one tile or strip; a hostile file can declare a small image with huge tiles.
    alloc_pixels: int | None = None


# ---------------------------------------------------------------------------- sniffing

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JP2_BOX = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_JXL_BOX = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"})
_WHITESPACE = b" \t\n\v\f\r"
_SNIFF_BYTES = 256  # enough for every magic, and for the ftyp brand list we look at

# Refused formats with a fixed prefix, in the order they are tried.
_REFUSED_PREFIXES = (
    (b"\xff\x4f\xff\x51", "JPEG 2000"),  # J2K codestream: SOC then SIZ
    (_JP2_BOX, "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),  # bare codestream
    (_JXL_BOX, "JPEG XL"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"8BPS", "Photoshop PSD"),
    (b"%PDF", "PDF"),
    (b"qoif", "QOI"),
)


def _view(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """``data`` as something indexable by byte, without copying when possible."""
    if isinstance(data, (bytes, bytearray)):
        return data
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1:
        return view
    return view.cast("B") if view.c_contiguous else view.tobytes()


def _iso_bmff_brand(head: bytes) -> str | None:
    if head[4:8] != b"ftyp" or len(head) < 12:
        return None
    # The ftyp box: size, "ftyp", major brand, minor version, then compatible brands up to the
    # box's end. Some AVIF writers use major brand "mif1" and list "avif" only as compatible.
    box_size = int.from_bytes(head[0:4], "big")
    end = min(max(box_size, 16), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF/HEIC"
    return None


def sniff(data: bytes | bytearray | memoryview) -> str | None:
    """The format by content: one of ALLOWED, the name of a known refused format, or None."""
    head = bytes(_view(data)[:_SNIFF_BYTES])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"

    for prefix, name in _REFUSED_PREFIXES:
        if head.startswith(prefix):
            return name
    # Before ICO: an ftyp box of 256 bytes also starts 00 00 01 00.
    brand = _iso_bmff_brand(head)
    if brand:
        return brand
    if head.startswith(b"\0\0\1\0"):
        return "ICO"
    if len(head) >= 3 and head[0:1] == b"P" and head[2] in _WHITESPACE:
        if head[1:2] in b"1234567":
            return "Netpbm (PPM/PGM/PBM/PAM)"
        if head[1:2] in (b"F", b"f"):
            return "PFM"
    text = (head[3:] if head.startswith(b"\xef\xbb\xbf") else head).lstrip(_WHITESPACE)  # a UTF-8 BOM
    if text.startswith((b"<?xml", b"<svg")):
        return "SVG/XML"
    return None


# ---------------------------------------------------------------------------- helpers


def _unpack(fmt: str, buf, offset: int, what: str) -> tuple:
    """struct.unpack_from with the bounds check turned into a FormatError naming ``what``."""
    if offset < 0 or offset + struct.calcsize(fmt) > len(buf):
        raise FormatError(f"truncated {what}")
    return struct.unpack_from(fmt, buf, offset)


def _sized(fmt: str, width: int, height: int, alloc_pixels: int | None = None) -> Header:
    if width <= 0 or height <= 0:
        raise FormatError(f"corrupt {fmt} header: image size {width}x{height}")
    return Header(fmt, width, height, alloc_pixels)


def _chunk_name(tag: bytes) -> str:
    text = bytes(tag).decode("latin-1")
    return text if text.isascii() and text.isprintable() else bytes(tag).hex()


# ---------------------------------------------------------------------------- JPEG

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
# SOF0..SOF15; C4 (DHT), C8 (JPG, reserved) and CC (DAC) share the range but are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# TEM and RST0..7 are bare markers; SOI and EOI too but are handled by the callers.
_BARE_MARKERS = frozenset({0x01, _SOI, _EOI, *range(0xD0, 0xD8)})
_JPEG_MAX_MARKERS = 4096  # real files have a few dozen segments before the first scan
_FF = re.compile(rb"\xff")
_NOT_FF = re.compile(rb"[^\xff]")
_FF_EOI = re.compile(rb"\xff\xd9")


def _jpeg_segments(buf):
    """Yield (marker, payload_start, payload_end) for each marker after SOI, in order.

    Follows libjpeg's next_marker(): bytes before an FF are skipped (libjpeg warns about
    "extraneous bytes" and carries on), any run of FF fill bytes is skipped, and FF 00 outside
    entropy-coded data is skipped as garbage. Segments are skipped by their length, never by
    searching, so an EXIF thumbnail (a whole JPEG inside APP1) is never mistaken for markers.
    Stops silently where the data ends or a segment runs past it.
    """
    n = len(buf)
    pos = 2
    for _ in range(_JPEG_MAX_MARKERS):
        ff = _FF.search(buf, pos)
        if ff is None:
            return
        at = _NOT_FF.search(buf, ff.start())
        if at is None:
            return
        i = at.start()
        marker = buf[i]
        if marker == 0:
            pos = i + 1
            continue
        if marker in _BARE_MARKERS:
            yield marker, i + 1, i + 1
            pos = i + 1
            continue
        if i + 3 > n:
            return
        (length,) = struct.unpack_from(">H", buf, i + 1)
        if length < 2:
            raise FormatError(f"corrupt JPEG header: marker FF{marker:02X} has length {length}")
        end = i + 1 + length
        if end > n:
            return
        yield marker, i + 3, end
        pos = end
    raise FormatError(f"corrupt JPEG header: more than {_JPEG_MAX_MARKERS} markers before the image data")


def _jpeg_header(buf) -> Header:
    for marker, start, end in _jpeg_segments(buf):
        if marker in _SOF_MARKERS:
            if end - start < 6:
                raise FormatError(f"corrupt JPEG header: frame (SOF) segment of {end - start + 2} bytes")
            _precision, height, width = struct.unpack_from(">BHH", buf, start)
            # Height 0 is legal (the height comes later, in a DNL marker), but libjpeg
            # refuses such files ("Empty JPEG image (DNL not supported)").
            return _sized("JPEG", width, height)
        if marker == _SOS:
            raise FormatError("corrupt JPEG header: no frame (SOF) marker before the image data")
        if marker == _EOI:
            raise FormatError("corrupt JPEG header: no frame (SOF) marker before the end-of-image marker")
        if marker == _SOI:
            raise FormatError("corrupt JPEG header: a second start-of-image marker")
    raise FormatError("truncated JPEG header: the data ends before the frame (SOF) marker")


_APP1 = 0xE1
_ORIENTATION_TAG = 0x0112


def jpeg_orientation(data: bytes | bytearray | memoryview) -> int:
    """The EXIF orientation (1-8) a JPEG's APP1 segment declares before its first scan; 1
    when there is none or it cannot be read (never raises).

    Only what the fast decode's scale choice needs (orientations 5-8 swap width and height);
    the decoder applies the orientation itself, and the caller checks the decoded size.
    """
    buf = _view(data)
    try:
        for marker, start, end in _jpeg_segments(buf):
            if marker == _SOS or marker == _EOI:
                return 1
            if marker != _APP1 or bytes(buf[start:start + 6]) != b"Exif\x00\x00":
                continue
            tiff = start + 6
            order = bytes(buf[tiff:tiff + 2])
            if order not in (b"II", b"MM"):
                return 1
            e = "<" if order == b"II" else ">"
            if tiff + 8 > end:
                return 1
            (ifd,) = struct.unpack_from(e + "I", buf, tiff + 4)
            at = tiff + ifd
            if ifd < 8 or at + 2 > end:
                return 1
            (count,) = struct.unpack_from(e + "H", buf, at)
            for i in range(min(count, 512)):  # IFD0 of a real photo has a dozen entries
                entry = at + 2 + 12 * i
                if entry + 12 > end:
                    return 1
                tag, kind, n = struct.unpack_from(e + "HHI", buf, entry)
                if tag == _ORIENTATION_TAG:
                    (value,) = struct.unpack_from(e + "H", buf, entry + 8)
                    return value if kind == 3 and n == 1 and 1 <= value <= 8 else 1
            return 1
    except (FormatError, struct.error):
        return 1
    return 1


def _jpeg_first_scan_end(buf) -> int:
    """Offset just past the first SOS segment's header, where entropy-coded data starts."""
    for marker, _start, end in _jpeg_segments(buf):
        if marker == _SOS:
            return end
        if marker == _EOI:
            raise FormatError("corrupt JPEG: end-of-image marker before the image data")
    raise FormatError("truncated JPEG: the data ends before the image data (no start-of-scan marker)")


# libjpeg makes a pass over the coefficient buffer for every scan of a progressive JPEG:
# real ones have about 10, while a small file can hold thousands of tiny ones, a known
# denial of service (libjpeg-turbo's djpeg -maxscans and TurboJPEG's scan limit exist for
# it; OpenCV sets no limit). FF DA never occurs inside entropy-coded data, so counting it
# counts the scans.
_JPEG_MAX_SCANS = 1000


def _jpeg_check(buf) -> None:
    # In entropy-coded data an FF byte is always followed by 00 (stuffing) or an RSTn marker,
    # so an FF D9 after the first scan starts is the end-of-image marker. (The table segments
    # between progressive scans could hold those two bytes in theory; that would only let a
    # truncated file through to the decoder.) Bytes after EOI are fine: cameras put data there.
    first_scan = _jpeg_first_scan_end(buf)
    if _FF_EOI.search(buf, first_scan) is None:
        raise FormatError("truncated JPEG: no end-of-image marker after the image data")
    scans = 1 + (buf if hasattr(buf, "count") else bytes(buf)).count(b"\xff\xda", first_scan)
    if scans > _JPEG_MAX_SCANS:
        raise FormatError(f"JPEG with {scans} scans refused (limit {_JPEG_MAX_SCANS}): each scan is "
                          "another pass over the whole image")


# ---------------------------------------------------------------------------- PNG

_PNG_MAX_DIMENSION = 2**31 - 1  # the spec's limit for IHDR width and height
_PNG_MAX_CHUNK = 2**31 - 1


def _png_header(buf) -> Header:
    length, tag, width, height = _unpack(">I4sII", buf, 8, "PNG header")
    if tag != b"IHDR" or length != 13:
        raise FormatError(f"corrupt PNG header: the first chunk is {_chunk_name(tag)!r} (length {length}), not IHDR")
    if width > _PNG_MAX_DIMENSION or height > _PNG_MAX_DIMENSION:
        raise FormatError(f"corrupt PNG header: image size {width}x{height} exceeds the PNG limit of 2**31-1")
    return _sized("PNG", width, height)


# Real PNGs have tens of chunks, or tens of thousands for a huge image cut into 8 KB IDAT
# chunks (256 MB, the default file cap, is 32768 of them). Without a cap, a file of empty
# chunks under that size cap would cost some 20 million Python-level steps to walk.
_PNG_MAX_CHUNKS = 100_000


def _png_check(buf) -> None:
    n = len(buf)
    pos = len(_PNG_SIGNATURE)
    seen_idat = False
    for _ in range(_PNG_MAX_CHUNKS):
        if pos + 8 > n:
            raise FormatError("truncated PNG: the data ends before the IEND chunk")
        length, tag = struct.unpack_from(">I4s", buf, pos)
        if length > _PNG_MAX_CHUNK:
            raise FormatError(f"corrupt PNG: chunk {_chunk_name(tag)!r} has length {length} (limit 2**31-1)")
        end = pos + 12 + length
        if end > n:
            raise FormatError(f"truncated PNG: the data ends inside the {_chunk_name(tag)!r} chunk")
        if tag == b"IDAT":
            seen_idat = True
        elif tag == b"IEND":
            if not seen_idat:
                raise FormatError("corrupt PNG: no IDAT (image data) chunk before IEND")
            return
        pos = end
    raise FormatError(f"corrupt PNG: more than {_PNG_MAX_CHUNKS} chunks")


# ---------------------------------------------------------------------------- GIF

_GIF_MAX_BLOCKS = 65536  # sub-blocks and blocks walked before the first image descriptor


def _gif_first_frame_extent(buf) -> tuple[int, int] | None:
    """(left + width, top + height) of the first image descriptor, or None when not found."""
    n = len(buf)
    packed = buf[10]
    pos = 13
    if packed & 0x80:
        pos += 3 << ((packed & 7) + 1)  # global colour table: 2**(N+1) RGB triples
    in_extension = False
    for _ in range(_GIF_MAX_BLOCKS):
        if pos >= n:
            return None
        if in_extension:  # size-prefixed sub-blocks up to a 0 size
            size = buf[pos]
            pos += 1 + size
            in_extension = size != 0
            continue
        block = buf[pos]
        if block == 0x2C:
            if pos + 9 > n:
                return None
            left, top, width, height = struct.unpack_from("<4H", buf, pos + 1)
            return left + width, top + height
        if block != 0x21:
            return None  # trailer (0x3B) before any image, or garbage
        pos += 2  # extension introducer and label
        in_extension = True
    return None


def _gif_header(buf) -> Header:
    screen_w, screen_h = _unpack("<HH", buf, 6, "GIF header")
    if len(buf) < 13:
        raise FormatError("truncated GIF header")
    if screen_w == 0 or screen_h == 0:  # OpenCV refuses an empty screen whatever the frames say
        raise FormatError(f"corrupt GIF header: image size {screen_w}x{screen_h}")
    # A frame may extend past the logical screen. Some decoders grow the canvas to fit
    # (Pillow); OpenCV refuses the file. The larger extent bounds what either allocates.
    extent = _gif_first_frame_extent(buf)
    if extent is None:
        return _sized("GIF", screen_w, screen_h)
    return _sized("GIF", max(screen_w, extent[0]), max(screen_h, extent[1]))


# ---------------------------------------------------------------------------- BMP

# BITMAPINFOHEADER (40) and its successors: 52/56 (Adobe's V2/V3), 64 (OS/2 2.x), 108 (V4), 124 (V5).
_BMP_INFO_HEADER_SIZES = frozenset({40, 52, 56, 64, 108, 124})


def _bmp_header(buf) -> Header:
    (dib_size,) = _unpack("<I", buf, 14, "BMP header")
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit sizes
        width, height = _unpack("<HH", buf, 18, "BMP header")
    elif dib_size in _BMP_INFO_HEADER_SIZES:
        width, height = _unpack("<ii", buf, 18, "BMP header")
        if width < 0:
            raise FormatError(f"corrupt BMP header: negative width {width}")
        height = abs(height)  # negative: rows stored top-down
    else:
        raise FormatError(f"corrupt BMP header: unknown DIB header size {dib_size}")
    return _sized("BMP", width, height)


# ---------------------------------------------------------------------------- TIFF

_TIFF_MAX_ENTRIES = 4096  # libtiff's own sanity limit on an IFD's entry count
_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_ROWS_PER_STRIP, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 256, 257, 278, 322, 323
_TIFF_TAG_NAMES = {
    _TIFF_WIDTH: "ImageWidth",
    _TIFF_LENGTH: "ImageLength",
    _TIFF_ROWS_PER_STRIP: "RowsPerStrip",
    _TIFF_TILE_WIDTH: "TileWidth",
    _TIFF_TILE_LENGTH: "TileLength",
}
_TIFF_INT_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8 (LONG8 fits inline only in BigTIFF)


def _tiff_header(buf) -> Header:
    order = "<" if buf[0:2] == b"II" else ">"
    (version,) = _unpack(order + "H", buf, 2, "TIFF header")
    if version == 42:
        (ifd,) = _unpack(order + "I", buf, 4, "TIFF header")
        count_fmt, entry_fmt = "H", "HHI4s"
    else:  # 43: BigTIFF
        bytesize, zero, ifd = _unpack(order + "HHQ", buf, 4, "TIFF header")
        if (bytesize, zero) != (8, 0):
            raise FormatError(f"corrupt TIFF header: BigTIFF offset size {bytesize} (expected 8)")
        count_fmt, entry_fmt = "Q", "HHQ8s"
    if ifd == 0:
        raise FormatError("corrupt TIFF header: no image file directory")
    if ifd >= len(buf):
        raise FormatError("truncated TIFF header: the first image file directory lies past the end of the data")
    (count,) = _unpack(order + count_fmt, buf, ifd, "TIFF header")
    if not 0 < count <= _TIFF_MAX_ENTRIES:
        raise FormatError(f"corrupt TIFF header: image file directory with {count} entries")
    entries = ifd + struct.calcsize(order + count_fmt)
    entry_size = struct.calcsize(order + entry_fmt)
    if entries + count * entry_size > len(buf):
        raise FormatError("truncated TIFF header: the image file directory runs past the end of the data")

    values: dict[int, int] = {}
    for tag, typ, n, raw in struct.iter_unpack(order + entry_fmt, buf[entries : entries + count * entry_size]):
        if tag not in _TIFF_TAG_NAMES or tag in values:  # libtiff keeps the first of duplicates
            continue
        code = _TIFF_INT_TYPES.get(typ)
        if n != 1 or code is None or struct.calcsize(code) > len(raw):
            raise FormatError(f"corrupt TIFF header: tag {_TIFF_TAG_NAMES[tag]} has type {typ} and count {n}")
        (values[tag],) = struct.unpack_from(order + code, raw)

    if _TIFF_WIDTH not in values or _TIFF_LENGTH not in values:
        raise FormatError("corrupt TIFF header: no ImageWidth or ImageLength tag in the first directory")
    width, height = values[_TIFF_WIDTH], values[_TIFF_LENGTH]
    if width == 0 or height == 0:
        raise FormatError(f"corrupt TIFF header: image size {width}x{height}")
    if _TIFF_TILE_WIDTH in values or _TIFF_TILE_LENGTH in values:
        tile_w, tile_h = values.get(_TIFF_TILE_WIDTH, 0), values.get(_TIFF_TILE_LENGTH, 0)
        if tile_w <= 0 or tile_h <= 0:
            raise FormatError(f"corrupt TIFF header: tile size {tile_w}x{tile_h}")
        alloc = tile_w * tile_h
    else:
        rows = values.get(_TIFF_ROWS_PER_STRIP, height)  # missing: one strip for the whole image
        if rows == 0:  # libtiff: 'Bad value 0 for "RowsPerStrip" tag', and OpenCV gives up
            raise FormatError("corrupt TIFF header: RowsPerStrip 0")
        alloc = width * min(rows, height)
    return Header("TIFF", width, height, alloc)


# ---------------------------------------------------------------------------- WebP


def _webp_header(buf) -> Header:
    tag, _size = _unpack("<4sI", buf, 12, "WebP header")
    data = 20
    if tag == b"VP8 ":
        # Lossy: a 3-byte frame tag (bit 0 clear on a key frame), the start code 9D 01 2A,
        # then 16-bit width and height whose top 2 bits are an upscaling hint.
        frame_tag, start_code, width, height = _unpack("<3s3sHH", buf, data, "WebP header")
        if frame_tag[0] & 1 or start_code != b"\x9d\x01\x2a":
            raise FormatError("corrupt WebP header: the VP8 frame is not a key frame")
        return _sized("WebP", width & 0x3FFF, height & 0x3FFF)
    if tag == b"VP8L":
        # Lossless: signature 0x2F, then 14 bits width-1, 14 bits height-1, 1 bit alpha and a
        # 3-bit version that must be 0, packed little-endian.
        signature, bits = _unpack("<BI", buf, data, "WebP header")
        if signature != 0x2F or bits >> 29:
            raise FormatError("corrupt WebP header: bad VP8L signature or version")
        return _sized("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if tag == b"VP8X":
        # Extended: flags, 3 reserved bytes, then 24-bit canvas width-1 and height-1. The
        # canvas is what libwebp decodes into (it checks that a still image matches it).
        (_flags, w_lo, w_hi, h_lo, h_hi) = _unpack("<B3xHBHB", buf, data, "WebP header")
        return _sized("WebP", (w_lo | w_hi << 16) + 1, (h_lo | h_hi << 16) + 1)
    raise FormatError(f"corrupt WebP header: unknown first chunk {_chunk_name(tag)!r}")


# ---------------------------------------------------------------------------- API

_PARSERS = {
    "JPEG": _jpeg_header,
    "PNG": _png_header,
    "GIF": _gif_header,
    "BMP": _bmp_header,
    "TIFF": _tiff_header,
    "WebP": _webp_header,
}


def read_header(data: bytes | bytearray | memoryview) -> Header:
    """The accepted format and declared size of ``data``; FormatError for anything else.

    Refused known formats, unknown content, damaged or truncated headers and zero sizes
    all raise FormatError with a message naming the problem.
    """
    buf = _view(data)
    name = sniff(buf)
    if name is None:
        raise FormatError(f"not a supported image format ({_ACCEPTED})")
    if name not in _PARSERS:
        raise FormatError(f"{name} images are not accepted ({_ACCEPTED})")
    return _PARSERS[name](buf)


def check_complete(data: bytes | bytearray | memoryview, header: Header) -> None:
    """Raise FormatError when a JPEG or PNG is visibly cut short; other formats pass.

    JPEG: an end-of-image marker must follow the first scan. PNG: the chunk structure must
    reach IEND inside the data, with image data (IDAT) before it. CRCs are left to libpng.
    """
    buf = _view(data)
    if header.format == "JPEG":
        _jpeg_check(buf)
    elif header.format == "PNG":
        _png_check(buf)
