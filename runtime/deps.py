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


def cv2():
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
