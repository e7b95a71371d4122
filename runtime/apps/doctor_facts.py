"""What ``edge-doctor`` looks at: small probes that return plain data and never raise.

Platform and Jetson release, CPU flags, the engines and their providers, which
distributions installed them, the NVIDIA libraries (loaded with ``ctypes``, as ONNX Runtime
loads them), OpenCV's build, the cache folders, and, for a model, where ONNX Runtime really
places each node (its profiler's ``Node`` events name the provider that ran it).
``doctor.diagnose`` judges these facts; ``gather`` collects them all.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import stat
import sys
from pathlib import Path

from .. import __version__
from ..errors import EdgeClassifyError, first_line
from ..host import gpu

# The instruction-set extensions ONNX Runtime's and OpenVINO's kernels dispatch on.
X86_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
ARM_FLAGS = ("asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "neon")  # neon: 32-bit ARM's name
JETPACK_FOR_L4T = {"32": "4", "35": "5", "36": "6"}

# (sonames to try, newest first; the function that reports the version)
NVIDIA_LIBS = {
    "tensorrt": (("libnvinfer.so.10", "libnvinfer.so.9", "libnvinfer.so.8", "libnvinfer.so.7", "libnvinfer.so"),
                 "getInferLibVersion"),
    "cuda": (("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"), "cudaRuntimeGetVersion"),
    "cudnn": (("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"), "cudnnGetVersion"),
}
VIDEO_IO = ("GStreamer", "FFMPEG", "V4L/V4L2")  # cv2.getBuildInformation()'s names, v4l/v4l2 renamed


def _probe(fn, *args) -> dict:
    """A probe's facts; a probe that raises is a bug in the doctor, reported as a fact."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 (a probe's bug becomes a reported fact, not a crash)
        return {"status": "probe-failed", "error": f"{type(exc).__name__}: {first_line(exc)}"}


def parse_tegra_release(text: str) -> dict | None:
    """``# R36 (release), REVISION: 3.0, ...`` -> {"l4t": "36.3.0", "jetpack": "6"}."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    if not m:
        return None
    major, revision = m.group(1), m.group(2).rstrip(".")
    return {"l4t": f"{major}.{revision}", "jetpack": JETPACK_FOR_L4T.get(major)}


def jetson_facts(model_file: str = gpu.DEVICE_TREE_MODEL,
                 release_file: str = "/etc/nv_tegra_release") -> dict | None:
    """The Jetson's model and L4T / JetPack release, or None on anything else."""
    model = gpu.device_tree_model(model_file)
    try:
        with open(release_file, encoding="utf-8", errors="replace") as f:
            release = parse_tegra_release(f.read())
    except OSError:
        release = None
    if release is None and not gpu.is_jetson_model(model):
        return None
    return {"model": model or None, "l4t": (release or {}).get("l4t"), "jetpack": (release or {}).get("jetpack")}


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}".strip()


def cpu_flags(machine: str, flags_line: str) -> dict:
    """The ISA flags that matter for this architecture: {"present": [...], "missing": [...]}."""
    have = set(flags_line.split())
    wanted = X86_FLAGS if machine.lower() in ("x86_64", "amd64", "i386", "i686") else (
        ARM_FLAGS if machine.lower().startswith(("aarch64", "arm")) else ())
    if machine.lower() == "aarch64":
        wanted = tuple(f for f in wanted if f != "neon")  # 64-bit ARM calls it asimd
    if not have:
        return {"present": [], "missing": [], "unknown": True}
    return {"present": [f for f in wanted if f in have], "missing": [f for f in wanted if f not in have]}


def platform_facts() -> dict:
    from ..host import cpu

    model, flags = cpu.info()
    machine = platform.machine()
    return {
        "os": _os_name(),
        "kernel": f"{platform.system()} {platform.release()}",
        "machine": machine,
        "python": platform.python_version(),
        "executable": sys.executable,
        "jetson": jetson_facts(),
        "cpu": {"model": model or platform.processor() or None, "cores": os.cpu_count(),
                "flags": cpu_flags(machine, flags)},
    }


def distributions_of(module: str, name_prefixes: tuple) -> list[dict]:
    """The installed distributions that provide ``module`` (several can: they overwrite each other)."""
    import importlib.metadata as md

    out = []
    for dist in md.distributions():
        name = dist.metadata["Name"] or ""
        if not name.lower().replace("_", "-").startswith(name_prefixes):
            continue
        top = dist.read_text("top_level.txt")
        owns = (module in top.split()) if top is not None else any(
            str(f).replace("\\", "/") == f"{module}/__init__.py" for f in (dist.files or ()))
        if owns:
            out.append({"name": name, "version": dist.version, "location": str(dist.locate_file(""))})
    return out


def _module_home(mod) -> str | None:
    f = getattr(mod, "__file__", None)
    return str(Path(f).resolve().parent.parent) if f else None


def onnxruntime_facts() -> dict:
    out = {"distributions": distributions_of("onnxruntime", ("onnxruntime", "ort-nightly"))}
    try:
        with contextlib.redirect_stdout(sys.stderr):
            import onnxruntime as ort
    except ImportError as exc:
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == "onnxruntime"
        out.update(status="missing" if missing else "broken", error=first_line(exc))
        return out
    except Exception as exc:  # noqa: BLE001 (a broken install raises anything (OSError, AttributeError...))
        out.update(status="broken", error=f"{type(exc).__name__}: {first_line(exc)}")
        return out
    out.update(status="ok", version=ort.__version__, providers=list(ort.get_available_providers()),
               location=_module_home(ort))
    from ..engines.providers import unusable_gpu_providers

    out["unusable"] = unusable_gpu_providers(out["providers"], gpu.nvidia_gpu_device(), gpu.provider_library_error)
    return out


def openvino_facts() -> dict:
    try:
        import openvino as ov
    except ImportError as exc:
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == "openvino"
        return {"status": "missing" if missing else "broken", "error": first_line(exc)}
    except Exception as exc:  # noqa: BLE001 (a broken install raises anything)
        return {"status": "broken", "error": f"{type(exc).__name__}: {first_line(exc)}"}
    out = {"status": "ok", "version": getattr(ov, "__version__", "unknown").split("-")[0]}
    try:
        out["devices"] = list(ov.Core().available_devices)
    except Exception as exc:  # noqa: BLE001 (a plugin that fails to load)
        out.update(devices=[], error=f"{type(exc).__name__}: {first_line(exc)}")
    return out


def nv_version(value: int) -> str:
    """TensorRT's and cuDNN's version integers: 8601 -> 8.6.1 (8.x), 100300 -> 10.3.0 (10.x; cuDNN 9.x)."""
    if value >= 10000:
        return f"{value // 10000}.{value // 100 % 100}.{value % 100}"
    return f"{value // 1000}.{value // 100 % 10}.{value % 100}"


def _loaded_path(stem: str) -> str | None:
    """Where the dynamic loader found a library this process has loaded (``/proc/self/maps``)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split(None, 5)[-1].strip()
                if os.path.basename(path).startswith(stem + ".so"):
                    return path
    except OSError:
        pass
    return None


def library_facts(key: str) -> dict:
    """Load one NVIDIA library the way ONNX Runtime does (``dlopen`` by soname) and ask its version."""
    import ctypes

    sonames, version_fn = NVIDIA_LIBS[key]
    errors = []
    for soname in sonames:
        try:
            lib = ctypes.CDLL(soname)
        except OSError as exc:
            errors.append(first_line(exc))
            continue
        out = {"found": True, "soname": soname, "path": _loaded_path(soname.split(".so")[0]), "version": None}
        try:
            fn = getattr(lib, version_fn)
            if key == "cuda":
                v = ctypes.c_int(0)
                if fn(ctypes.byref(v)) == 0:
                    out["version"] = f"{v.value // 1000}.{v.value % 1000 // 10}"
            else:
                fn.restype = ctypes.c_size_t if key == "cudnn" else ctypes.c_int
                out["version"] = nv_version(int(fn()))
        except (AttributeError, OSError, ValueError):
            pass
        return out
    return {"found": False, "error": errors[0] if errors else "not found", "elsewhere": _elsewhere(sonames[-1])}


def _elsewhere(stem_so: str) -> str | None:
    """A copy of a library the loader does not find: pip's nvidia-* / tensorrt wheels, a CUDA
    toolkit folder missing from the loader's configuration."""
    import glob

    dirs = [os.path.join(p, "nvidia", "*", "lib") for p in sys.path if p] + [
        os.path.join(p, "tensorrt_libs") for p in sys.path if p] + ["/usr/local/cuda*/lib64", "/usr/local/cuda*/lib",
                                                                     "/usr/local/cuda*/targets/*/lib"]
    for d in dirs:
        hits = sorted(glob.glob(os.path.join(d, stem_so + "*")))
        if hits:
            return hits[0]
    return None


def gpu_facts() -> dict:
    name = gpu.gpu_name()
    trt_py = gpu.tensorrt_version()
    return {
        "name": None if name == "unknown" else name,
        "device": gpu.nvidia_gpu_device(),
        "tensorrt_python": None if trt_py == "unknown" else trt_py,
        "libraries": {key: _probe(library_facts, key) for key in NVIDIA_LIBS},
    }


def parse_video_io(build_info: str) -> dict:
    """The "Video I/O" section of ``cv2.getBuildInformation()``: {"GStreamer": True, ...}."""
    out = {}
    section = False
    for line in (build_info or "").splitlines():
        if line.strip().startswith("Video I/O"):
            section = True
            continue
        if section:
            if line.strip() and not line.startswith("    "):
                break
            key, _, value = line.strip().partition(":")
            for name in ("GStreamer", "FFMPEG", "v4l/v4l2"):
                if key.strip().lower() == name.lower():
                    out["V4L/V4L2" if name == "v4l/v4l2" else name] = value.strip().upper().startswith("YES")
    for name in VIDEO_IO:
        out.setdefault(name, False)
    return out


def opencv_facts() -> dict:
    out = {"distributions": distributions_of("cv2", ("opencv",))}
    said = io.StringIO()  # NumPy prints its "compiled using NumPy 1.x" banner before the ImportError
    try:
        with contextlib.redirect_stderr(said):
            import cv2
    except ImportError as exc:
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == "cv2"
        out.update(status="missing" if missing else "broken", error=first_line(exc))
        text = f"{exc}\n{said.getvalue()}"
        out["numpy_abi"] = any(s in text for s in ("compiled using NumPy 1", "_ARRAY_API not found",
                                                   "numpy.core.multiarray failed to import"))
        return out
    except Exception as exc:  # noqa: BLE001 (a broken install raises anything)
        out.update(status="broken", error=f"{type(exc).__name__}: {first_line(exc)}", numpy_abi=False)
        return out
    out.update(status="ok", version=cv2.__version__, location=_module_home(cv2))
    try:
        out["video_io"] = parse_video_io(cv2.getBuildInformation())
    except Exception:  # noqa: BLE001 (an unusual build string)
        out["video_io"] = None
    return out


def numpy_facts() -> dict:
    try:
        import numpy
    except Exception as exc:  # noqa: BLE001 (a broken install raises anything)
        return {"status": "missing", "error": first_line(exc)}
    return {"status": "ok", "version": numpy.__version__}


def _disk_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return total


def dir_facts(name: str, path, enabled: bool = True, private: bool = False) -> dict:
    """A folder the runtime writes: whether it exists, can be written (or created), its size."""
    p = Path(path)
    out = {"name": name, "path": str(p), "enabled": enabled, "exists": False, "uid": _uid()}
    try:
        st = os.stat(p)
    except FileNotFoundError:
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        out.update(creatable=os.access(parent, os.W_OK | os.X_OK), nearest=str(parent))
        return out
    except OSError as exc:
        out["error"] = exc.strerror or str(exc)
        return out
    out.update(exists=True, is_dir=stat.S_ISDIR(st.st_mode), owner_uid=st.st_uid, symlink=p.is_symlink(),
               writable=os.access(p, os.W_OK | os.X_OK))
    if out["is_dir"]:
        out["bytes"] = _disk_bytes(p)
    if private:
        from ..cache.store import untrusted_reason

        out["untrusted"] = untrusted_reason(st)
    return out


def _uid():
    return os.geteuid() if hasattr(os, "geteuid") else None


def cache_facts() -> list[dict]:
    from ..cache import store
    from ..cache.paths import home
    from ..engines.providers import default_trt_cache_dir

    return [
        dir_facts("home", home()),
        dir_facts("graph cache", store.cache_dir(), store.enabled(), private=True),
        dir_facts("TensorRT engines", default_trt_cache_dir()),
    ]


def contract_facts(contract) -> dict:
    m, pre = contract.model, contract.preprocess
    return {"arch": m.arch, "precision": m.precision, "input_size": list(pre.input_size), "layout": pre.layout,
            "preprocess": pre.mode, "color_order": pre.color_order, "resize": pre.resize,
            "labels": len(contract.labels), "head": m.head, "output": m.output, "batch": m.batch,
            "input_name": m.input_name, "schema": contract.schema}


def count_nodes(events) -> dict:
    """ONNX Runtime profile events -> {provider: {"nodes": n, "ops": {op: n}}}, each node once
    (a node has kernel, fence_before and fence_after events, and one set per run)."""
    if isinstance(events, dict):  # some versions wrap the list
        events = events.get("traceEvents", [])
    seen = {}
    for e in events:
        if not isinstance(e, dict) or e.get("cat") != "Node":
            continue
        args = e.get("args") or {}
        provider = args.get("provider")
        if not provider:
            continue
        name = re.sub(r"_(kernel_time|fence_before|fence_after)$", "", str(e.get("name", "")))
        seen[(provider, name)] = args.get("op_name") or "?"
    out = {}
    for (provider, _name), op in seen.items():
        entry = out.setdefault(provider, {"nodes": 0, "ops": {}})
        entry["nodes"] += 1
        entry["ops"][op] = entry["ops"].get(op, 0) + 1
    return out


def profile_nodes(ort, source: str, providers: list, input_name: str, shape: tuple) -> dict:
    """Run one zero batch in a profiling session on ``providers`` (session options as the
    Classifier's) and count where each node ran; the profile file is removed."""
    import shutil
    import tempfile

    import numpy as np

    from ..engines.ort_runner import session_options

    tmp = tempfile.mkdtemp(prefix="edge-doctor-")
    try:
        so = session_options(ort, None)
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "profile")
        with contextlib.redirect_stdout(sys.stderr):  # ORT's fallback banner must stay out of --json
            session = ort.InferenceSession(source, so, providers=providers)
        x = session.get_inputs()[0]
        dtype = np.float16 if x.type == "tensor(float16)" else np.float32
        session.run(None, {input_name or x.name: np.zeros(shape, dtype)})
        with open(session.end_profiling(), encoding="utf-8") as f:
            return count_nodes(json.load(f))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _raw_session_error(ort, source: str, provider: str) -> str | None:
    """ONNX Runtime's own message for a provider that fails (no fallback, no banner)."""
    from ..engines.ort_runner import session_options

    try:
        with contextlib.redirect_stdout(sys.stderr):
            ort.InferenceSession(source, session_options(ort, None),
                                 providers=[provider, "CPUExecutionProvider"], enable_fallback=0)
    except Exception as exc:  # noqa: BLE001 (any failure is the message we want)
        return " ".join(str(exc).split())[:600] or type(exc).__name__
    return None


def _status(message: str) -> None:
    """A long one-time step while loading (a TensorRT engine build): said as it happens."""
    print(f"edge-doctor: {message}", file=sys.stderr, flush=True)


def placement_facts(path: Path, requested: str) -> dict:
    """Load the model exactly as ``edge-classify --engine onnxruntime --provider REQUESTED`` does
    (a Classifier: contract checks, provider plan, TensorRT options and fallbacks), then profile
    one batch on the providers that load settled on."""
    from ..engines.loader import load
    from ..engines.options import EngineOptions
    from ..engines.providers import ALIASES
    from ..host import deps

    out = {"requested": requested}
    try:
        loaded = load(path, EngineOptions(engine="onnxruntime", providers=requested), measure_batch=1,
                      on_status=_status)
    except EdgeClassifyError as exc:
        out.update(error=exc.message, fix=exc.hint)
        # A provider that failed to start: ONNX Runtime's whole message, which the runtime cuts
        # to its first line (the messages are ort_runner's and providers.check_used's).
        started = any(s in exc.message for s in ("could not create a session", "failed to initialise"))
        if requested not in ("auto", "cpu") and started:
            out["onnxruntime_message"] = _raw_session_error(deps.onnxruntime(), str(path), ALIASES[requested])
        return out
    plan, report, runner = loaded.report.provider_plan, loaded.report, loaded.runner
    out.update(plan=plan.names, skipped=dict(plan.skipped), used=runner.provider, precision=runner.precision,
               warning=report.provider_warning, note="; ".join(report.notes) or None)
    m, pre = loaded.contract.model, loaded.contract.preprocess
    shape = pre.input_shape(m.batch or 1)
    runner.close()  # one session at a time: a GPU may not hold two
    try:
        out["nodes"] = profile_nodes(deps.onnxruntime(), str(path), plan.providers, m.input_name, shape)
    except Exception as exc:  # noqa: BLE001 (any failure is reported)
        out["profile_error"] = f"{type(exc).__name__}: {first_line(exc)}"
    return out


def model_facts(path, source: str, requested: str, onnxruntime_ok: bool) -> dict:
    from ..model import onnx_meta
    from ..model.contract import ModelContract

    p = Path(path)
    out = {"path": str(p), "source": source, "exists": p.is_file()}
    if not out["exists"]:
        return out
    try:
        contract = ModelContract.from_metadata(onnx_meta.metadata(p), str(p))
    except EdgeClassifyError as exc:
        out.update(error=exc.message, fix=exc.hint or "re-export it with `export-model`")
        return out
    except (onnx_meta.NotOnnx, OSError) as exc:
        out.update(error=f"{p} is not a readable ONNX model ({first_line(exc)})",
                   fix="re-export it with `export-model`")
        return out
    out["contract"] = contract_facts(contract)
    if onnxruntime_ok:
        out["placement"] = _probe(placement_facts, p, requested)
    return out


def gather(model: str | None = None, provider: str = "auto") -> dict:
    """Every fact the diagnosis needs, as plain (JSON-ready) data."""
    from ..cache.paths import default_model_path

    facts = {"edge_classify": __version__, "request": {"provider": provider}}
    facts["platform"] = _probe(platform_facts)
    facts["numpy"] = _probe(numpy_facts)
    facts["opencv"] = _probe(opencv_facts)
    facts["onnxruntime"] = _probe(onnxruntime_facts)
    facts["openvino"] = _probe(openvino_facts)
    facts["gpu"] = _probe(gpu_facts)
    facts["caches"] = _probe(cache_facts)
    if model is not None:
        path, source = Path(model), "--model"
    else:
        path, source = default_model_path(), "default"
    if facts["numpy"].get("status") != "ok":  # the contract's reader needs it
        facts["model"] = {"path": str(path), "source": source, "exists": path.is_file(), "skipped": "NumPy is missing"}
    else:
        ort_ok = facts["onnxruntime"].get("status") == "ok" and _plannable(facts["onnxruntime"], provider)
        facts["model"] = _probe(model_facts, path, source, provider, ort_ok)
    return facts


def _plannable(ort_facts: dict, requested: str) -> bool:
    from ..engines.providers import plan_providers

    try:
        plan_providers(requested, ort_facts.get("providers") or [])
    except EdgeClassifyError:
        return False
    return True
