"""The environment block: what machine and which versions produced the numbers."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

INTERESTING_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                     "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimddp", "sve")  # fmt: skip


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = val.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    return model, flags


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def environment(threads: dict | None = None) -> dict:
    model, flags = _cpuinfo()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    versions = {d: _version(d) for d in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino",
                                         "opencv-python-headless", "opencv-python", "tensorflow", "keras",
                                         "openvino", "numpy", "edge-classify")}
    providers = []
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        pass
    return {
        "cpu": model,
        "cpu_flags": {f: (f in flags) for f in INTERESTING_FLAGS},
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": {k: v for k, v in versions.items() if v},
        "onnxruntime_providers": providers,
        "threads": threads or {},
    }
