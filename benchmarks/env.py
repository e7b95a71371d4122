"""The environment block: what machine and which versions produced the numbers."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess

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


def lscpu() -> dict:
    """lscpu's fields (model name, CPU(s), threads per core, MHz, caches, flags, ...), less
    the vulnerability lines; {} where lscpu is missing."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                              env=dict(os.environ, LC_ALL="C")).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if sep and not key.startswith("Vulnerability"):
            out[key.strip()] = val.strip()
    return out


def cpu_for_peak(ls: dict, usable: int) -> dict:
    """Physical cores usable and the clock, as peak.py needs them."""
    try:
        per_core = max(1, int(ls.get("Thread(s) per core", "1")))
    except ValueError:
        per_core = 1
    mhz, source = None, None
    for key in ("CPU max MHz", "CPU MHz"):
        try:
            mhz, source = float(ls[key]), f"lscpu {key}"
            break
        except (KeyError, ValueError):
            pass
    if mhz is None:
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("cpu MHz"):
                        mhz, source = float(line.partition(":")[2]), "/proc/cpuinfo cpu MHz (current, not max)"
                        break
        except (OSError, ValueError):
            pass
    return {"cores": max(1, usable // per_core), "threads_per_core": per_core,
            "mhz": mhz, "mhz_source": source}


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def cpu_flag_set() -> set[str]:
    return _cpuinfo()[1]


def gpu() -> dict:
    """The GPU facts a GPU run is read against, where present: the GPU (nvidia-smi's name and
    compute capability, or the Jetson's model), TensorRT's version, a Jetson's L4T / JetPack
    release (/etc/nv_tegra_release). {} on a machine with none of them."""
    from edge_classify.runtime.apps.doctor_facts import jetson_facts
    from edge_classify.runtime.host import gpu

    out = {"name": gpu.gpu_name(), "tensorrt": gpu.tensorrt_version()}
    out = {k: v for k, v in out.items() if v != "unknown"}
    jetson = jetson_facts()
    if jetson:
        out["jetson"] = {k: v for k, v in jetson.items() if v}
    return out


def environment(threads: dict | None = None) -> dict:
    model, flags = _cpuinfo()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    versions = {d: _version(d) for d in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino",
                                         "opencv-python-headless", "opencv-python", "tensorflow", "keras",
                                         "openvino", "nncf", "numpy", "edge-classify")}
    providers = []
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        pass
    ls = lscpu()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": model,
        "cpu_flags": {f: (f in flags) for f in INTERESTING_FLAGS},
        "lscpu": ls,
        "cpu_for_peak": cpu_for_peak(ls, affinity),
        "load_average_at_start": load,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": {k: v for k, v in versions.items() if v},
        "onnxruntime_providers": providers,
        "gpu": gpu(),
        "threads": threads or {},
    }
