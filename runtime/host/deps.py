"""Import OpenCV, ONNX Runtime, OpenVINO and Ray on demand, naming the extra to install when absent.

None is a hard requirement of the package (see pyproject.toml: on a Jetson OpenCV and ONNX
Runtime come from the platform), so a missing one is a user error with a precise fix, not a
traceback. ``install_hint`` is the one way every message spells that fix.
"""

from __future__ import annotations

import functools

from ..errors import EdgeClassifyError


def install_hint(*extras: str) -> str:
    """How to add extras, as the README installs edge-classify: from its checkout."""
    return f"pip install -e '.[{','.join(extras)}]' in the edge-classify checkout"


_INSTALL_HINT = (f"install the extra for your machine: {install_hint('cpu')} (x86/ARM CPU), or [gpu] for "
                 "CUDA/TensorRT; on a Jetson use JetPack's OpenCV and NVIDIA's onnxruntime-gpu wheel for your "
                 "JetPack release")


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


def _optional(module: str, what: str, hint: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EdgeClassifyError(f"{what} is not installed ({exc})", hint=hint) from None


def onnxruntime():
    return _optional("onnxruntime", "ONNX Runtime", _INSTALL_HINT)


def openvino():
    return _optional("openvino", "OpenVINO", f"{install_hint('openvino')} (installs beside onnxruntime)")


@functools.lru_cache(maxsize=None)
def openvino_core():
    """One ``ov.Core`` per process: it loads the device plugins (50 ms the first time here);
    runners' settings go to ``compile_model``, not to the Core, so it is shared."""
    return openvino().Core()


def ray():
    return _optional("ray", "Ray", f"{install_hint('ray')} (Ray Data and pyarrow)")


def serve_parts():
    """Starlette, uvicorn and prometheus-client: what edge-serve runs on (the [serve] extra)."""
    hint = install_hint("serve")
    for module in ("starlette", "uvicorn", "prometheus_client"):
        _optional(module, f"edge-serve's {module}", hint)
