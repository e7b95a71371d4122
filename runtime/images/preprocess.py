"""Decoding and preprocessing: OpenCV + numpy, bit-exact with Keras' own pipeline.

Reproduces ``keras.utils.load_img(path, target_size=(h, w))`` + ``img_to_array`` +
``keras.applications.<model>.preprocess_input`` with max abs difference 0.0 on 8-bit
JPEG (baseline, progressive, grayscale), PNG (RGB, RGBA, palette, grayscale), BMP, TIFF,
WebP and GIF (tests/test_preprocess_parity.py). What makes it exact:

* ``load_img`` converts to RGB *before* resizing and resizes with PIL ``NEAREST``. PIL
  picks source pixel ``floor((dst + 0.5) * src / dst)``; OpenCV's ``INTER_NEAREST_EXACT``
  is documented to match PIL, and does. (``INTER_NEAREST`` and bilinear do not.)
* RGBA/LA lose alpha without compositing; palette and gray images expand to RGB. OpenCV's
  ``IMREAD_COLOR`` does the same; both use libjpeg-turbo's default (islow DCT, fancy
  upsampling) for JPEG, so decoded pixels are identical.
* ``preprocess_input`` works in float32 on the array; each mode's arithmetic is repeated
  here in the same order and precision (see ``normalize``).

``resize="bilinear"`` reproduces ``tf.image.resize(..., "bilinear")`` (what
``image_dataset_from_directory`` and ``keras.layers.Resizing`` use), float32, with max abs
difference 0.0 against TF 2.21 on 25 photos (scikit-image's, export/samples'): down to
224x224, 96x96, 32x32, 224x160, 17x1000, 1x1, up to 600x700, and at the same size
(tests/test_resize_modes.py). OpenCV's float32 INTER_LINEAR would be off by up to 0.012.
The whole ``image_dataset_from_directory`` path (``tf.io.decode_image``, then resize) is
matched exactly for PNG (0.0) but not for JPEG: TF decodes with libjpeg's INTEGER_FAST DCT
by default, OpenCV and PIL with the accurate one, so decoded pixels differ by up to 16
levels and resized ones by up to 14 (mean ~1) on the 0..255 scale. (TF with
``dct_method="INTEGER_ACCURATE"`` equals ours exactly; OpenCV offers no fast-DCT switch.)

Where Keras' path has quirks, the defaults and their switches (``DecodeOptions``):

* EXIF orientation: Keras ignores it (the photo is classified as stored). Default: ignore,
  like Keras. ``exif_orientation=True`` (CLI ``--exif-orientation``) applies it.
* 16-bit grayscale PNG/TIFF: PIL's ``convert("RGB")`` *clips* values to 255, so almost
  every pixel of a real 16-bit image turns white; that is a bug, not a contract. Default:
  scale to 8 bits by keeping the high byte (what libpng and PIL do for 16-bit *colour*
  images). ``sixteen_bit="clip"`` (CLI ``--16bit clip``) reproduces Keras.
* CMYK JPEG: OpenCV and PIL convert CMYK to RGB with different rounding (OpenCV divides
  by 256, PIL by 255), so channels differ by at most 1 level; OpenCV does not expose the
  raw CMYK planes to do otherwise. Accepted and tested (max difference 1).
* Big JPEGs: ``decode="fast"`` decodes them at 1/2, 1/4 or 1/8 scale in the DCT domain
  (not Keras' pixels; chosen on evidence with ``auto``): see fast_decode.py.

Every encoded image reaches OpenCV through ``safe_decode.imdecode`` (format allow-list,
pixel and file-size caps, corrupt-data detection); this module only decides the flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from ..errors import InputError
from ..host import deps
from ..model.contract import PreprocessSpec
from . import fast_decode, formats, safe_decode

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


@dataclass(frozen=True)
class DecodeOptions:
    exif_orientation: bool = False  # Keras ignores EXIF orientation
    sixteen_bit: str = "scale"  # "scale" (high byte) or "clip" (Keras/PIL behaviour)
    array_color_order: str = "RGB"  # channel order of decoded numpy arrays passed in
    # Limits on untrusted inputs (see safe_decode.py for why each exists).
    max_pixels: int = safe_decode.DEFAULT_MAX_PIXELS  # declared width x height, checked before decoding
    max_file_bytes: int = safe_decode.DEFAULT_MAX_FILE_BYTES
    allow_corrupt: bool = False  # classify images the codec reports as partly decoded (with a note)
    # exact | fast | auto (fast_decode.py). The library decodes exactly unless told; the
    # command lines default to auto, which a Classifier resolves against its model's evidence.
    decode: str = "exact"

    def __post_init__(self):
        if self.decode not in fast_decode.MODES:
            raise ValueError(f"decode must be one of {fast_decode.MODES}")
        if self.sixteen_bit not in ("scale", "clip"):
            raise ValueError("sixteen_bit must be 'scale' or 'clip'")
        if self.array_color_order not in ("RGB", "BGR"):
            raise ValueError("array_color_order must be 'RGB' or 'BGR'")
        if self.max_pixels < 1 or self.max_file_bytes < 1:
            raise ValueError("max_pixels and max_file_bytes must be positive")
        deps.want_opencv_pixel_limit(self.max_pixels)


DEFAULT_DECODE = DecodeOptions()

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def describe(source: ImageInput) -> str:
    """A short name for an input, for messages and JSON output."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)  # bytes paths: undecodable bytes kept as surrogates
    if isinstance(source, np.ndarray):
        return f"<array {'x'.join(map(str, source.shape))} {source.dtype}>"
    return f"<{len(source)} bytes>"


def read_bytes(path: str | os.PathLike, options: DecodeOptions = DEFAULT_DECODE) -> bytes:
    return safe_decode.read_file(path, options.max_file_bytes)


@dataclass(frozen=True)
class Decoded:
    image: np.ndarray  # uint8 HxWx3 BGR
    notes: list[str]  # what the codec said of an image it still decoded
    decode: str | None  # which decode ran: "exact" or "fast 1/N" (fast_decode.label); None for arrays


def decode_at(data: bytes | bytearray | memoryview, options: DecodeOptions = DEFAULT_DECODE,
              target: tuple[int, int] | None = None) -> Decoded:
    """Encoded image bytes -> ``Decoded``. Exact (as Keras' ``load_img`` sees the pixels)
    unless ``options.decode == "fast"``, the image is a JPEG and ``target`` (the model's
    input (height, width)) fits at least twice into it (fast_decode.scale_for)."""
    cv2 = deps.cv2()
    if len(data) == 0:
        raise InputError("empty input")

    def guarded(flags):
        return safe_decode.imdecode(data, flags, options.max_pixels, options.allow_corrupt)

    if options.sixteen_bit == "clip" and (bytes(data[:8]) == _PNG_MAGIC or bytes(data[:4]) in _TIFF_MAGIC):
        raw, notes = guarded(cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if raw.dtype == np.uint16 and (raw.ndim == 2 or raw.shape[2] == 1):
            # PIL's I;16 -> RGB conversion saturates at 255 (what Keras sees).
            gray = np.minimum(raw.reshape(raw.shape[:2]), 255).astype(np.uint8)
            return Decoded(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), notes, "exact")
    orient = 0 if options.exif_orientation else cv2.IMREAD_IGNORE_ORIENTATION
    scale = _fast_scale(data, options, target)
    if scale > 1:
        # The same guarded path (format allow-list, pixel cap on the declared size, the
        # pixel budget, corrupt-data detection: libjpeg still reads every scan), only the
        # inverse DCT is scaled.
        img, notes = guarded(_REDUCED[scale] | orient)
        if img.shape[0] >= target[0] and img.shape[1] >= target[1]:
            return Decoded(img, notes, fast_decode.label(scale))
        # Smaller than planned: an EXIF orientation read differently from OpenCV. Exact then.
    img, notes = guarded(cv2.IMREAD_COLOR | orient)
    return Decoded(img, notes, "exact")


# OpenCV's flags for libjpeg's DCT scaling (IMREAD_REDUCED_COLOR_N; values fixed in its API).
_REDUCED = {2: 17, 4: 33, 8: 65}


def _fast_scale(data, options: DecodeOptions, target: tuple[int, int] | None) -> int:
    """1 (exact) or the DCT scale a fast decode of ``data`` uses."""
    if options.decode != "fast" or target is None or bytes(data[:3]) != b"\xff\xd8\xff":
        return 1
    try:
        header = formats.read_header(data)
    except formats.FormatError:
        return 1  # the exact path refuses it, with the reason
    if header.format != "JPEG":
        return 1
    orientation = formats.jpeg_orientation(data) if options.exif_orientation else 1
    return fast_decode.scale_for(header.width, header.height, target, orientation)


def decode_with_notes(data: bytes | bytearray | memoryview,
                      options: DecodeOptions = DEFAULT_DECODE) -> tuple[np.ndarray, list[str]]:
    """Encoded image bytes -> (uint8 HxWx3 BGR as Keras' ``load_img`` sees the pixels, codec notes)."""
    d = decode_at(data, options)
    return d.image, d.notes


def decode(data: bytes | bytearray | memoryview, options: DecodeOptions = DEFAULT_DECODE) -> np.ndarray:
    """Encoded image bytes -> uint8 HxWx3 BGR, as Keras' ``load_img`` sees the pixels."""
    return decode_with_notes(data, options)[0]


def from_array(arr: np.ndarray, options: DecodeOptions = DEFAULT_DECODE) -> np.ndarray:
    """A decoded image array (HxW, HxWx1, HxWx3 or HxWx4) -> uint8 HxWx3 BGR.

    Arrays are RGB by default (PIL, Keras, scikit-image); pass
    ``DecodeOptions(array_color_order="BGR")`` for ``cv2.imread`` output. Non-uint8 arrays
    are accepted when they hold whole numbers in 0..255 (e.g. ``img_to_array`` output).
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or 0 in arr.shape:
        raise InputError(f"array of shape {arr.shape} is not an image (HxW, HxWx1, HxWx3 or HxWx4)")
    if arr.dtype != np.uint8:
        if not (np.issubdtype(arr.dtype, np.number) and np.all((arr >= 0) & (arr <= 255) & (arr == np.round(arr)))):
            raise InputError(f"{arr.dtype} array must hold whole numbers in 0..255")
        arr = arr.astype(np.uint8)
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    arr = arr[:, :, :3]
    if options.array_color_order == "RGB":
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


def load_decoded(source: ImageInput, options: DecodeOptions = DEFAULT_DECODE,
                 target: tuple[int, int] | None = None) -> Decoded:
    """Any supported input (path, encoded bytes, array) -> ``Decoded``: at native size, or
    reduced toward ``target`` (the model's input (height, width)) by a fast decode."""
    if isinstance(source, np.ndarray):
        return Decoded(from_array(source, options), [], None)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_at(source, options, target)
    if isinstance(source, (str, os.PathLike)):
        return decode_at(read_bytes(source, options), options, target)
    raise InputError(f"unsupported input type {type(source).__name__}")


def load_with_notes(source: ImageInput, options: DecodeOptions = DEFAULT_DECODE) -> tuple[np.ndarray, list[str]]:
    """Any supported input (path, encoded bytes, array) -> (uint8 HxWx3 BGR at native size, codec notes)."""
    d = load_decoded(source, options)
    return d.image, d.notes


def load(source: ImageInput, options: DecodeOptions = DEFAULT_DECODE) -> np.ndarray:
    """Any supported input (path, encoded bytes, array) -> uint8 HxWx3 BGR at native size."""
    return load_with_notes(source, options)[0]


def resize(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 HxWx3 BGR -> the image at ``spec.input_size``, still BGR.

    ``nearest``: uint8, as ``load_img(target_size=...)`` (PIL NEAREST).
    ``bilinear``: float32, as ``tf.image.resize(method="bilinear")`` (not rounded, like TF).
    """
    h, w = spec.input_size
    if spec.resize == "bilinear":
        if img.shape[:2] == (h, w):  # TF returns the pixels unchanged, as float32
            return img.astype(np.float32)
        return _resize_bilinear_tf(img, h, w)
    if img.shape[:2] == (h, w):  # load_img skips the resize when sizes already match
        return img
    cv2 = deps.cv2()
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def _tf_interpolation(out_size: int, in_size: int):
    """(lower, upper, lerp) per output index: TF's ``compute_interpolation_weights`` with
    ``HalfPixelScaler``, in float32 step for step (resize_bilinear_op.cc)."""
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    x = (np.arange(out_size, dtype=f32) + f32(0.5)) * scale - f32(0.5)
    floor = np.floor(x)
    lower = np.maximum(floor, 0).astype(np.intp)
    upper = np.minimum(np.ceil(x), in_size - 1).astype(np.intp)
    return lower, upper, x - floor


def _resize_bilinear_tf(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """TF's CPU ``ResizeBilinear`` (half-pixel centres, edges clamped, no antialias) in numpy.

    Why not ``cv2.resize(float32, INTER_LINEAR)``: it differs from TF by up to 0.0116 on
    the 0..255 scale (0.005-0.012 at most sizes tested; TF computes sample positions in
    float32 from a float32 scale, OpenCV more precisely). This repeats TF's float32
    arithmetic in TF's order, horizontal lerps ``l + (r - l) * x_lerp`` then
    ``t + (b - t) * y_lerp``, and
    equals TF bit for bit (max diff 0.0) on every photo and size tested. It is slower than
    OpenCV (2-core VM, noisy: 512x512 or 872x1000 -> 224x224 0.9 ms vs 0.2-0.4 ms, TF
    0.6 ms; -> 600x700 4-13 ms, mostly page faults on fresh buffers, vs 0.3-0.7 ms, TF
    3 ms), which is small beside decoding for usual input sizes. Gathers use flat 2-D
    indices (contiguous inner loops); each needed source row is lerped once.
    """
    H, W, C = img.shape
    ylo, yhi, y_lerp = _tf_interpolation(h, H)
    xlo, xhi, x_lerp = _tf_interpolation(w, W)
    rows, where = np.unique(np.concatenate([ylo, yhi]), return_inverse=True)
    src = np.ascontiguousarray(img[rows]).reshape(len(rows), W * C)
    chan = np.arange(C)
    left = np.take(src, (xlo[:, None] * C + chan).ravel(), axis=1).astype(np.float32)
    right = np.take(src, (xhi[:, None] * C + chan).ravel(), axis=1).astype(np.float32)
    right -= left
    right *= np.repeat(x_lerp, C)
    left += right  # each needed source row, resampled horizontally
    top = np.take(left, where[:h], axis=0)
    bottom = np.take(left, where[h:], axis=0)
    bottom -= top
    bottom *= y_lerp[:, None]
    top += bottom
    return top.reshape(h, w, C)


def prepare(source: ImageInput, spec: PreprocessSpec, options: DecodeOptions = DEFAULT_DECODE) -> np.ndarray:
    """Input -> HxWx3 BGR at the model's input size (the part that runs per image):
    uint8 for ``resize="nearest"``, float32 for ``"bilinear"`` (see ``resize``)."""
    return resize(load_decoded(source, options, spec.input_size).image, spec)


def normalize(batch_bgr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """NxHxWx3 BGR (uint8 from nearest, float32 from bilinear) -> the model's float32 input.

    Repeats ``preprocess_input``'s float32 arithmetic step for step: Keras converts to
    float32, then applies Python-float constants to the float32 array, which NumPy
    evaluates in float32 (so do we, with float32 constants). The one conversion copy
    (``astype``, fused with the channel flip) is the output buffer the modes then work in
    place on, so the result never shares memory with ``batch_bgr`` (``raw`` included).
    """
    x = batch_bgr if spec.color_order == "BGR" else batch_bgr[..., ::-1]
    x = x.astype(np.float32)
    f32 = np.float32
    # Per-channel constants go through rows of W*3 values (``_channels``): the same float32
    # operation on every element as broadcasting a 3-vector, whose 3-long inner loop made the
    # caffe subtraction 1.14 ms for 4 images at 224x224 against 0.36 ms this way.
    if spec.mode == "caffe":
        _channels(x).__isub__(_tiled(spec.mean, x))
    elif spec.mode == "tf":
        x /= f32(127.5)
        x -= f32(1.0)
    elif spec.mode == "torch":
        x /= f32(255.0)
        _channels(x).__isub__(_tiled(spec.mean, x))
        _channels(x).__itruediv__(_tiled(spec.std, x))
    elif spec.mode == "meanstd":
        _channels(x).__isub__(_tiled(spec.mean, x))
        _channels(x).__itruediv__(_tiled(spec.std, x))
    # raw: the float32 pixels (0..255) as they are; the model normalises
    if spec.layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _channels(x: np.ndarray) -> np.ndarray:
    """A contiguous NxHxWxC array as rows of W*C values (a view: writes go to ``x``)."""
    return x.reshape(-1, x.shape[-2] * x.shape[-1])


def _tiled(values, x: np.ndarray) -> np.ndarray:
    """Per-channel float32 constants repeated along a row of ``_channels(x)``."""
    return np.tile(np.asarray(values, dtype=np.float32), x.shape[-2])


def preprocess(
    sources: Sequence[ImageInput], spec: PreprocessSpec, options: DecodeOptions = DEFAULT_DECODE
) -> np.ndarray:
    """Inputs -> the model's input tensor; the runtime's whole preprocessing in one call."""
    return normalize(np.stack([prepare(s, spec, options) for s in sources]), spec)
