"""Import OpenCV and ONNX Runtime on demand, naming the extra to install when absent.

Neither is a hard requirement of the package (see pyproject.toml: on a Jetson both come
from the platform), so a missing one is a user error with a precise fix, not a traceback.
"""

from __future__ import annotations

import functools

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


@functools.lru_cache(maxsize=None)
def tensorrt_version() -> str:
    """TensorRT's version for the engine-cache key: its Python package where installed
    (pip's ``tensorrt``, JetPack's python3-libnvinfer), else "unknown"."""
    import importlib.metadata as md

    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt_libs"):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return "unknown"


@functools.lru_cache(maxsize=None)
def gpu_name() -> str:
    """The GPU for the engine-cache key: a Jetson's model (device tree), else nvidia-smi's
    name and compute capability, else "unknown" (engines are then keyed without it).
    Asked once per process: ``nvidia-smi`` is a subprocess, and every TensorRT load needs it."""
    import subprocess

    try:
        with open("/proc/device-tree/model", "rb") as f:
            model = f.read().rstrip(b"\0").decode(errors="replace")
        if "jetson" in model.lower() or "orin" in model.lower():
            return model
    except OSError:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"
