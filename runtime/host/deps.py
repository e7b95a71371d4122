"""Import OpenCV and ONNX Runtime on demand, naming the extra to install when absent.

Neither is a hard requirement of the package (see pyproject.toml: on a Jetson both come
from the platform), so a missing one is a user error with a precise fix, not a traceback.
"""

from __future__ import annotations

import functools

from ..errors import EdgeClassifyError

_INSTALL_HINT = (
    "install the extra for your machine: pip install 'edge-classify[cpu]' "
    "(x86/ARM CPU) or 'edge-classify[gpu]' (CUDA/TensorRT); on a Jetson use JetPack's "
    "OpenCV and NVIDIA's onnxruntime-gpu wheel for your JetPack release"
)


# OpenCV's own cap on decoded pixels (its default is 2**30) is read from the environment
# once, when cv2 is imported. The runtime checks its own, configurable cap from the header
# before OpenCV sees an image; this is the backstop behind it, set deliberately to that
# cap (or to a larger one requested before the import) unless the user set it already.
# images/safe_decode.py asks for its default when it is imported, before it decodes anything.
_opencv_pixel_limit = 0  # the largest cap asked for so far


def want_opencv_pixel_limit(pixels: int) -> None:
    """Ask for OpenCV's pixel cap to be at least ``pixels`` (effective if cv2 is not imported yet)."""
    global _opencv_pixel_limit
    _opencv_pixel_limit = max(_opencv_pixel_limit, int(pixels))


def cv2():
    import os
    import sys

    if "cv2" not in sys.modules and _opencv_pixel_limit:
        os.environ.setdefault("CV_IO_MAX_IMAGE_PIXELS", str(_opencv_pixel_limit))
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


def ray():
    try:
        import ray as _ray
    except ImportError as exc:
        raise EdgeClassifyError(f"Ray is not installed ({exc})",
                                hint="pip install 'edge-classify[ray]' (Ray Data and pyarrow)") from None
    return _ray


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


# Device nodes of an NVIDIA GPU: desktop/server driver, Jetson (nvgpu: JetPack 5 and 6), WSL2.
GPU_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu", "/dev/dxg")


@functools.lru_cache(maxsize=None)
def nvidia_gpu_device() -> str | None:
    """The first NVIDIA GPU device node present, or None (no GPU the CUDA provider could use)."""
    import os

    return next((node for node in GPU_DEVICE_NODES if os.path.exists(node)), None)


@functools.lru_cache(maxsize=None)
def provider_library_error(short: str) -> str | None:
    """Why ONNX Runtime's shared library for the ``cuda`` or ``tensorrt`` provider cannot be
    loaded here (its first missing dependency, e.g. "libnvinfer.so.10: cannot open shared
    object file"), or None when it loads or cannot be judged.

    This is the same ``dlopen`` of the same file that ONNX Runtime performs when a session asks
    for the provider, so it sees what ONNX Runtime would see (its RPATH, LD_LIBRARY_PATH,
    libraries preloaded with ``onnxruntime.preload_dlls``), without ONNX Runtime's error banner.
    PyPI's ``onnxruntime-gpu`` lists TensorRT on every machine, with or without TensorRT."""
    import ctypes
    import sys
    from pathlib import Path

    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = Path(onnxruntime().__file__).parent / "capi" / f"libonnxruntime_providers_{short}.so"
    except EdgeClassifyError:
        return None
    if not lib.is_file():
        return None
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot be loaded"
    return None
