"""The NVIDIA GPU of this machine, as the engines need to know it: is there one, do ONNX
Runtime's GPU provider libraries load, what is it called (the TensorRT engine-cache key),
and which TensorRT is installed. Each is asked once per process.
"""

from __future__ import annotations

import functools

from . import deps

# Device nodes of an NVIDIA GPU: desktop/server driver, Jetson (nvgpu: JetPack 5 and 6), WSL2.
GPU_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu", "/dev/dxg")
DEVICE_TREE_MODEL = "/proc/device-tree/model"


def device_tree_model(path: str = DEVICE_TREE_MODEL) -> str:
    """The board's model from the device tree ("NVIDIA Jetson AGX Orin Developer Kit"), or ""."""
    try:
        with open(path, "rb") as f:
            return f.read().rstrip(b"\0").decode(errors="replace").strip()
    except OSError:
        return ""


def is_jetson_model(model: str) -> bool:
    return any(w in model.lower() for w in ("jetson", "orin", "xavier"))


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

    model = device_tree_model()
    if is_jetson_model(model):
        return model
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


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

    from ..errors import EdgeClassifyError

    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = Path(deps.onnxruntime().__file__).parent / "capi" / f"libonnxruntime_providers_{short}.so"
    except EdgeClassifyError:
        return None
    if not lib.is_file():
        return None
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot be loaded"
    return None
