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

Every encoded image reaches OpenCV through ``safe_decode.imdecode`` (format allow-list,
pixel and file-size caps, corrupt-data detection); this module only decides the flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from . import deps, safe_decode
from .contract import PreprocessSpec
from .errors import InputError

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

    def __post_init__(self):
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


def decode_with_notes(data: bytes | bytearray | memoryview,
                      options: DecodeOptions = DEFAULT_DECODE) -> tuple[np.ndarray, list[str]]:
    """Encoded image bytes -> (uint8 HxWx3 BGR as Keras' ``load_img`` sees the pixels, codec notes)."""
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
            return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), notes
    flags = cv2.IMREAD_COLOR
    if not options.exif_orientation:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    return guarded(flags)


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


def load_with_notes(source: ImageInput, options: DecodeOptions = DEFAULT_DECODE) -> tuple[np.ndarray, list[str]]:
    """Any supported input (path, encoded bytes, array) -> (uint8 HxWx3 BGR at native size, codec notes)."""
    if isinstance(source, np.ndarray):
        return from_array(source, options), []
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_with_notes(source, options)
    if isinstance(source, (str, os.PathLike)):
        return decode_with_notes(read_bytes(source, options), options)
    raise InputError(f"unsupported input type {type(source).__name__}")


def load(source: ImageInput, options: DecodeOptions = DEFAULT_DECODE) -> np.ndarray:
    """Any supported input (path, encoded bytes, array) -> uint8 HxWx3 BGR at native size."""
    return load_with_notes(source, options)[0]


def resize(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize to ``spec.input_size`` as ``load_img(target_size=...)`` does (PIL NEAREST)."""
    h, w = spec.input_size
    if img.shape[:2] == (h, w):  # load_img skips the resize when sizes already match
        return img
    cv2 = deps.cv2()
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def prepare(source: ImageInput, spec: PreprocessSpec, options: DecodeOptions = DEFAULT_DECODE) -> np.ndarray:
    """Input -> uint8 HxWx3 BGR at the model's input size (the part that runs per image)."""
    return resize(load(source, options), spec)


def normalize(batch_bgr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 NxHxWx3 BGR -> the model's float32 input tensor.

    Repeats ``preprocess_input``'s float32 arithmetic step for step: Keras converts to
    float32, then applies Python-float constants to the float32 array, which NumPy
    evaluates in float32 (so do we, with float32 constants).
    """
    x = batch_bgr if spec.color_order == "BGR" else batch_bgr[..., ::-1]
    x = x.astype(np.float32)
    f32 = np.float32
    if spec.mode == "caffe":
        x -= np.asarray(spec.mean, dtype=f32)
    elif spec.mode == "tf":
        x /= f32(127.5)
        x -= f32(1.0)
    elif spec.mode == "torch":
        x /= f32(255.0)
        x -= np.asarray(spec.mean, dtype=f32)
        x /= np.asarray(spec.std, dtype=f32)
    else:  # meanstd
        x -= np.asarray(spec.mean, dtype=f32)
        x /= np.asarray(spec.std, dtype=f32)
    if spec.layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def preprocess(
    sources: Sequence[ImageInput], spec: PreprocessSpec, options: DecodeOptions = DEFAULT_DECODE
) -> np.ndarray:
    """Inputs -> the model's input tensor; the runtime's whole preprocessing in one call."""
    return normalize(np.stack([prepare(s, spec, options) for s in sources]), spec)
