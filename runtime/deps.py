"""Import OpenCV and ONNX Runtime on demand, naming the extra to install when absent.

Neither is a hard requirement of the package (see pyproject.toml: on a Jetson both come
from the platform), so a missing one is a user error with a precise fix, not a traceback.
"""

from __future__ import annotations

from .errors import EdgeClassifyError

_INSTALL_HINT = (
    "install the extra for your machine: pip install 'edge-classify[cpu]' "
    "(x86/ARM CPU) or 'edge-classify[gpu]' (CUDA/TensorRT); on a Jetson use JetPack's "
    "OpenCV and NVIDIA's onnxruntime-gpu wheel for your JetPack release"
)


# OpenCV's own cap on decoded pixels (its default is 2**30) is read from the environment
# once, when cv2 is imported. The runtime checks its own, configurable cap from the header
# before OpenCV sees an image; this is the backstop behind it, set deliberately to that
# cap (or to a larger one requested before the import) unless the user set it already.
_opencv_pixel_limit = 0  # the largest cap asked for so far; safe_decode's default at least


def want_opencv_pixel_limit(pixels: int) -> None:
    """Ask for OpenCV's pixel cap to be at least ``pixels`` (effective if cv2 is not imported yet)."""
    global _opencv_pixel_limit
    _opencv_pixel_limit = max(_opencv_pixel_limit, int(pixels))


def cv2():
    import os
    import sys

    if "cv2" not in sys.modules:
        from .safe_decode import DEFAULT_MAX_PIXELS

        os.environ.setdefault("CV_IO_MAX_IMAGE_PIXELS", str(max(_opencv_pixel_limit, DEFAULT_MAX_PIXELS)))
    try:
        import cv2 as _cv2
    except ImportError as exc:
        raise EdgeClassifyError(f"OpenCV is not installed ({exc})", hint=_INSTALL_HINT) from None
    return _cv2


def onnxruntime():
    try:
        import onnxruntime as _ort
    except ImportError as exc:
        raise EdgeClassifyError(f"ONNX Runtime is not installed ({exc})", hint=_INSTALL_HINT) from None
    return _ort


def openvino():
    try:
        import openvino as _ov
    except ImportError as exc:
        raise EdgeClassifyError(f"OpenVINO is not installed ({exc})",
                                hint="pip install 'edge-classify[openvino]' (installs beside onnxruntime)") from None
    return _ov
