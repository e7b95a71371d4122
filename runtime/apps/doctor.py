"""``edge-doctor``: is this device ready to run edge-classify, and if not, what to do.

Three layers, so that the judgement is tested without the hardware it judges:

1. **Facts**, gathered by small probes that return plain data and never raise: platform
   and Jetson release, CPU flags, the engines and their providers, which distributions
   installed them, the NVIDIA libraries (loaded with ``ctypes``, as ONNX Runtime loads
   them), OpenCV's build, the cache folders, and, for a model, where ONNX Runtime really
   places each node (its profiler's ``Node`` events name the provider that ran it).
2. ``diagnose(facts)``: a pure function from facts to ``Finding`` lines (ok / note / WARN /
   FAIL), each problem with one fix. Tests inject facts.
3. Rendering: text grouped by section, or one JSON object (``--json``).

Exit status: 0 when nothing FAILs (warnings do not fail), 1 when something does, 2 usage,
70 a bug in the doctor itself. Nothing here imports TensorFlow; missing ONNX Runtime,
OpenVINO or OpenCV are reported, not raised.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass

from .. import __version__
from ..engines.providers import GPU_PROVIDERS
from ..errors import EXIT_INPUTS_FAILED, EXIT_OK, EdgeClassifyError, exit_codes_help
from ..host.deps import install_hint
from . import shell
from .doctor_facts import VIDEO_IO, gather

EXIT_PROBLEMS = EXIT_INPUTS_FAILED  # something fails

EPILOG = """\
examples:
  edge-doctor                              check this device (and the default model, if there is one)
  edge-doctor --model resnet50.onnx        also check where ONNX Runtime runs each of the model's nodes
  edge-doctor -m resnet50.int8.onnx --provider tensorrt   ... on TensorRT (an engine is built on first use)
  edge-doctor --json | jq .problems        the problems and their fixes, for scripts

""" + exit_codes_help("edge-doctor") + "\n"

OK, NOTE, WARN, FAIL = "ok", "note", "warn", "fail"
MARK = {OK: "ok", NOTE: "note", WARN: "WARN", FAIL: "FAIL"}
SECTIONS = ("platform", "engines", "gpu", "opencv", "numpy", "model", "caches")

LIB_LABEL = {"tensorrt": "TensorRT (libnvinfer)", "cuda": "CUDA runtime (libcudart)", "cudnn": "cuDNN (libcudnn)"}
PROVIDER_LIB = GPU_PROVIDERS  # provider -> its library's short name

CPU_EXTRA = install_hint("cpu")
GPU_EXTRA = install_hint("gpu")
JETSON_ORT = "NVIDIA's onnxruntime-gpu wheel for JetPack {jp} (pypi.jetson-ai-lab.io, or NVIDIA's Jetson Zoo)"


@dataclass(frozen=True)
class Finding:
    section: str
    status: str  # ok | note | warn | fail
    message: str
    fix: str | None = None


# --- diagnosis ----------------------------------------------------------------------------
def diagnose(facts: dict) -> list[Finding]:
    """Facts -> findings, in section order. Pure: no probing, no I/O."""
    out: list[Finding] = []
    for check in (_platform, _engines, _gpu, _opencv, _numpy, _model, _caches):
        out.extend(check(facts))
    return out


def _probe_failed(section: str, what: str, d) -> list[Finding]:
    if isinstance(d, dict) and d.get("status") == "probe-failed":
        return [Finding(section, WARN, f"could not check {what}: {d.get('error')}",
                        "this is a bug in edge-doctor; please report it with this output")]
    return []


def _jetpack(facts: dict) -> str | None:
    jetson = (facts.get("platform") or {}).get("jetson") or {}
    return jetson.get("jetpack")


def _is_jetson(facts: dict) -> bool:
    return bool((facts.get("platform") or {}).get("jetson"))


def _platform(facts: dict) -> list[Finding]:
    p = facts.get("platform") or {}
    bad = _probe_failed("platform", "the platform", p)
    if bad:
        return bad
    out = [Finding("platform", OK, f"{p.get('os')}, {p.get('kernel')} ({p.get('machine')}), "
                                   f"Python {p.get('python')}, edge-classify {facts.get('edge_classify')}")]
    jetson = p.get("jetson")
    if jetson:
        release = (f"L4T {jetson['l4t']} (JetPack {jetson['jetpack'] or '?'})" if jetson.get("l4t")
                   else "L4T release unknown (no /etc/nv_tegra_release)")
        out.append(Finding("platform", OK if jetson.get("l4t") else NOTE,
                           f"Jetson: {jetson.get('model') or 'unknown model'}, {release}"))
        if jetson.get("l4t") and not jetson.get("jetpack"):
            out.append(Finding("platform", WARN, f"L4T {jetson['l4t']} is not a JetPack release edge-classify knows "
                                                 "(JetPack 5 and 6 are supported)"))
    c = p.get("cpu") or {}
    flags = c.get("flags") or {}
    isa = " ".join(flags.get("present") or []) or "none of the tracked extensions"
    if flags.get("unknown"):
        isa = "flags unknown (no /proc/cpuinfo)"
    elif flags.get("missing"):
        isa += "; without " + " ".join(flags["missing"])
    out.append(Finding("platform", OK, f"CPU: {c.get('model') or 'unknown'}, {c.get('cores')} cores; {isa}"))
    if "avx2" in (flags.get("missing") or []):
        out.append(Finding("platform", NOTE, "no AVX2: ONNX Runtime and OpenVINO fall back to slower kernels"))
    return out


def _engines(facts: dict) -> list[Finding]:
    o, v = facts.get("onnxruntime") or {}, facts.get("openvino") or {}
    out = _probe_failed("engines", "onnxruntime", o) + _probe_failed("engines", "openvino", v)
    jp = _jetpack(facts)
    jetson = _is_jetson(facts)
    install_ort = JETSON_ORT.format(jp=jp or "5/6") if jetson else f"{CPU_EXTRA} (CPU) or {GPU_EXTRA} (NVIDIA GPU)"
    dists = o.get("distributions") or []
    names = [d["name"] for d in dists]
    status = o.get("status")
    if status == "ok":
        provided = ", ".join(f"{d['name']} {d['version']}" for d in dists) or "no pip distribution (a system package)"
        out.append(Finding("engines", OK, f"onnxruntime {o.get('version')} ({provided}): providers "
                                          + ", ".join(o.get("providers") or [])))
    elif status == "missing":
        alone = v.get("status") == "ok"
        out.append(Finding("engines", NOTE if alone else FAIL,
                           "onnxruntime is not installed" + (" (the openvino engine runs instead)" if alone else
                                                             ": no inference engine is installed"),
                           f"install it: {install_ort}"))
    elif status == "broken":
        out.append(Finding("engines", FAIL, f"onnxruntime is installed but does not import: {o.get('error')}",
                           f"reinstall it: pip uninstall -y {' '.join(names) or 'onnxruntime'}, then {install_ort}"))
    if len(dists) > 1:
        keep = next((n for n in names if "gpu" in n.lower()), None) or next(
            (n for n in names if "openvino" in n.lower()), names[0])
        reinstall = JETSON_ORT.format(jp=jp or "5/6") if jetson else f"pip install {keep}"
        out.append(Finding(
            "engines", FAIL,
            f"more than one onnxruntime distribution installed ({', '.join(names)}): they share the `onnxruntime` "
            "module, the last one installed wins, and uninstalling either breaks the other",
            f"pip uninstall -y {' '.join(sorted(set(names)))}, then reinstall the one you want: {reinstall}"))
    providers = o.get("providers") or []
    gpu_listed = [p for p in providers if p in PROVIDER_LIB]
    if status == "ok" and jetson and not gpu_listed:
        out.append(Finding("engines", WARN, "this Jetson's onnxruntime has no CUDA or TensorRT provider "
                                            "(PyPI's CPU build): the GPU is not used",
                           f"pip uninstall -y {' '.join(names) or 'onnxruntime'}, then install {install_ort}"))
    elif status == "ok" and not gpu_listed and (facts.get("gpu") or {}).get("device"):
        out.append(Finding("engines", NOTE, "an NVIDIA GPU is present but this onnxruntime is a CPU build",
                           f"to use the GPU: pip uninstall -y {' '.join(names) or 'onnxruntime'} && {GPU_EXTRA}"))
    out.extend(_provider_request(facts))
    vs = v.get("status")
    if vs == "ok":
        devices = ", ".join(v.get("devices") or []) or "none"
        out.append(Finding("engines", OK, f"openvino {v.get('version')}: devices {devices}"))
        if v.get("error"):
            out.append(Finding("engines", WARN, f"OpenVINO cannot list its devices: {v['error']}",
                               "reinstall it: pip install --force-reinstall openvino"))
    elif vs == "missing":
        out.append(Finding("engines", NOTE, "openvino is not installed (optional second engine on x86 CPUs)",
                           f"to add it: {install_hint('openvino')}"))
    elif vs == "broken":
        out.append(Finding("engines", WARN, f"openvino is installed but does not import: {v.get('error')}",
                           "reinstall it: pip install --force-reinstall openvino, or uninstall it"))
    return out


def _provider_request(facts: dict) -> list[Finding]:
    """What ``--provider`` resolves to here (the Classifier's own plan)."""
    from ..engines.providers import ALIASES, SHORT, plan_providers

    o = facts.get("onnxruntime") or {}
    requested = (facts.get("request") or {}).get("provider", "auto")
    if o.get("status") != "ok":
        if requested != "auto":
            return [Finding("engines", FAIL, f"--provider {requested} needs onnxruntime, which is not usable here",
                            "install onnxruntime first (see above)")]
        return []
    unusable = o.get("unusable") or {}
    try:
        plan = plan_providers(requested, o.get("providers") or [], unusable=unusable)
    except EdgeClassifyError as exc:
        return [Finding("engines", FAIL, exc.message, exc.hint)]
    out = []
    if requested != "auto" and ALIASES[requested] in unusable:
        out.append(Finding("engines", FAIL, f"--provider {requested} cannot work here: {unusable[ALIASES[requested]]}",
                           "use --provider auto (or cpu), or install what the provider needs (see gpu below)"))
    else:
        out.append(Finding("engines", OK, f"--provider {requested} runs on {SHORT.get(plan.primary, plan.primary)} "
                                          f"(plan: {', '.join(SHORT.get(n, n) for n in plan.names)})"))
    for name, why in plan.skipped.items():
        out.append(Finding("engines", NOTE, f"auto leaves out {SHORT.get(name, name)}: {why}"))
    return out


def _gpu(facts: dict) -> list[Finding]:
    g = facts.get("gpu") or {}
    bad = _probe_failed("gpu", "the GPU and NVIDIA libraries", g)
    if bad:
        return bad
    o = facts.get("onnxruntime") or {}
    providers = o.get("providers") or []
    libs = g.get("libraries") or {}
    out = []
    if g.get("name") or g.get("device"):
        out.append(Finding("gpu", OK, f"GPU: {g.get('name') or 'NVIDIA (name unknown)'}"
                                      + (f" ({g['device']})" if g.get("device") else "")))
    else:
        out.append(Finding("gpu", NOTE, "no NVIDIA GPU found (no device node, no nvidia-smi)"))
    found = []
    for key, label in LIB_LABEL.items():
        lib = libs.get(key) or {}
        if lib.get("found"):
            where = lib.get("path") or lib.get("soname")
            found.append(Finding("gpu", OK, f"{label} {lib.get('version') or '(version unknown)'}: {where}"))
    out.extend(found)
    missing = [k for k in LIB_LABEL if not (libs.get(k) or {}).get("found")]
    if missing:
        def name(k):
            copy = libs[k].get("elsewhere")
            return LIB_LABEL[k].split(" (")[0] + (f" (a copy is at {copy})" if copy else "")

        out.append(Finding("gpu", NOTE, "not found by the dynamic loader: " + ", ".join(name(k) for k in missing)))
    if g.get("tensorrt_python"):
        out.append(Finding("gpu", OK, f"TensorRT Python package {g['tensorrt_python']}"))
    dist = next((d["name"] for d in o.get("distributions") or []), "onnxruntime")
    cuda_ok = "CUDAExecutionProvider" in providers and (libs.get("cuda") or {}).get("found") and bool(g.get("device"))
    if "TensorrtExecutionProvider" in providers and g.get("device") and not (libs.get("tensorrt") or {}).get("found"):
        out.append(Finding("gpu", WARN, f"TensorRT is listed by {dist} but its libraries are not installed: "
                                        f"auto uses {'CUDA' if cuda_ok else 'CPU'}",
                           _on_loader_path(libs.get("tensorrt")) or
                           "to use TensorRT, install it (Jetson: sudo apt install nvidia-tensorrt, part of JetPack; "
                           "x86: NVIDIA's TensorRT matching this onnxruntime-gpu); CUDA alone needs nothing more"))
    if "CUDAExecutionProvider" in providers and g.get("device"):
        for key in ("cuda", "cudnn"):
            if not (libs.get(key) or {}).get("found"):
                out.append(Finding("gpu", WARN, f"CUDA is listed by {dist} but {LIB_LABEL[key]} is not loadable: "
                                                "auto runs on CPU",
                                   _on_loader_path(libs.get(key)) or
                                   "Jetson: sudo apt install nvidia-jetpack; x86: install the CUDA and cuDNN major "
                                   "versions this onnxruntime-gpu was built for "
                                   "(onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider)"))
    if any(p in providers for p in PROVIDER_LIB) and not g.get("device"):
        out.append(Finding("gpu", NOTE, f"{dist} lists GPU providers but there is no NVIDIA GPU: auto runs on CPU",
                           f"on a CPU-only machine the CPU build is smaller: pip uninstall -y {dist} && {CPU_EXTRA}"))
    return out


def _on_loader_path(lib: dict | None) -> str | None:
    """The fix for a library that is installed where the loader does not look."""
    where = (lib or {}).get("elsewhere")
    if not where:
        return None
    return (f"it is installed at {where} but not on the loader's path: export LD_LIBRARY_PATH="
            f"{os.path.dirname(where)}:$LD_LIBRARY_PATH (pip's nvidia-* wheels: or call onnxruntime.preload_dlls())")


def _opencv(facts: dict) -> list[Finding]:
    c = facts.get("opencv") or {}
    bad = _probe_failed("opencv", "OpenCV", c)
    if bad:
        return bad
    jetson = _is_jetson(facts)
    names = [d["name"] for d in c.get("distributions") or []]
    status = c.get("status")
    if status == "missing":
        fix = ("use JetPack's OpenCV: create the venv with --system-site-packages (python3 -m venv "
               "--system-site-packages .venv)" if jetson else f"{CPU_EXTRA} (installs opencv-python-headless)")
        return [Finding("opencv", FAIL, "OpenCV (cv2) is not installed: images cannot be decoded", fix)]
    if status == "broken":
        numpy_v = (facts.get("numpy") or {}).get("version") or "2"
        if c.get("numpy_abi") and not numpy_v.startswith(("0.", "1.")):
            return [Finding("opencv", FAIL, f"cv2 does not import under NumPy {numpy_v}: it was compiled against "
                                            f"NumPy 1.x ({c.get('error')})",
                            f"pip install 'numpy<2' (or the [jetson] extra: {install_hint('jetson')})")]
        return [Finding("opencv", FAIL, f"cv2 is installed but does not import: {c.get('error')}",
                        f"reinstall it: pip uninstall -y {' '.join(names) or 'opencv-python-headless'} && "
                        f"pip install opencv-python-headless")]
    source = ", ".join(names) or f"not from pip: {c.get('location')}"
    out = []
    vio = c.get("video_io")
    video = "; video I/O unknown"
    if vio:
        video = "; video I/O: " + ", ".join(f"{k} {'YES' if vio.get(k) else 'NO'}" for k in VIDEO_IO)
    out.append(Finding("opencv", OK, f"OpenCV {c.get('version')} ({source}){video}"))
    if len(names) > 1:
        out.append(Finding("opencv", WARN, f"more than one OpenCV distribution installed ({', '.join(names)}): they "
                                           "share the `cv2` module and the last one installed wins",
                           f"pip uninstall -y {' '.join(names)} && pip install opencv-python-headless"))
    if vio and not vio.get("GStreamer"):
        if jetson:
            out.append(Finding("opencv", WARN, "this OpenCV has no GStreamer: CSI cameras and GStreamer pipelines "
                                               "need JetPack's OpenCV (a pip OpenCV is shadowing it)",
                               f"pip uninstall -y {' '.join(names) or 'opencv-python opencv-python-headless'}; use "
                               "a venv made with --system-site-packages"))
        else:
            out.append(Finding("opencv", NOTE, "no GStreamer in this OpenCV: GStreamer pipelines and Jetson CSI "
                                               "cameras need JetPack's OpenCV (files, RTSP and V4L2 cameras work)"))
    if vio and not vio.get("FFMPEG") and not vio.get("GStreamer"):
        out.append(Finding("opencv", WARN, "this OpenCV has neither FFMPEG nor GStreamer: video files and streams "
                                           "cannot be read", "pip install opencv-python-headless"))
    return out


def _numpy(facts: dict) -> list[Finding]:
    n = facts.get("numpy") or {}
    bad = _probe_failed("numpy", "NumPy", n)
    if bad:
        return bad
    if n.get("status") != "ok":
        return [Finding("numpy", FAIL, f"NumPy does not import: {n.get('error')}", "pip install 'numpy>=1.24'")]
    return [Finding("numpy", OK, f"NumPy {n.get('version')}")]


def _model(facts: dict) -> list[Finding]:
    from ..engines.providers import ALIASES, SHORT

    m = facts.get("model") or {}
    bad = _probe_failed("model", "the model", m)
    if bad:
        return bad
    if not m.get("exists"):
        if m.get("source") == "default":
            return [Finding("model", NOTE, f"no model checked: none at the default path {m.get('path')}",
                            "pass --model PATH, or create it with `export-model`")]
        return [Finding("model", FAIL, f"model file not found: {m.get('path')}",
                        "check the path (run `export-model` to create one)")]
    if m.get("skipped"):
        return [Finding("model", NOTE, f"{m['path']} not checked: {m['skipped']}")]
    if m.get("error"):
        return [Finding("model", FAIL, m["error"], m.get("fix"))]
    c = m.get("contract") or {}
    h, w = (c.get("input_size") or [0, 0])[:2]
    out = [Finding("model", OK, f"{m['path']}: {c.get('arch')} {c.get('precision')}, input {h}x{w} {c.get('layout')}, "
                                f"preprocess {c.get('preprocess')} ({c.get('color_order')}, {c.get('resize')} resize), "
                                f"{c.get('labels')} labels, {c.get('head')} head, "
                                f"batch {c.get('batch') or 'dynamic'}")]
    pl = m.get("placement")
    if pl is None:
        if (facts.get("onnxruntime") or {}).get("status") == "ok":
            out.append(Finding("model", NOTE, "node placement not checked: the requested provider is not available"))
        else:
            out.append(Finding("model", NOTE, "node placement not checked: onnxruntime is not usable"))
        return out
    bad = _probe_failed("model", "where the model's nodes run", pl)
    if bad:
        return out + bad
    if pl.get("error"):
        msg = f"cannot load it with --provider {pl.get('requested')}: {pl['error']}"
        if pl.get("onnxruntime_message"):
            msg += f" (ONNX Runtime says: {pl['onnxruntime_message']})"
        return out + [Finding("model", FAIL, msg, pl.get("fix") or "re-export it with `export-model`")]
    plan = pl.get("plan") or []
    primary = plan[0] if plan else pl.get("used")
    if pl.get("warning"):
        out.append(Finding("model", WARN, pl["warning"],
                           "see the gpu section; `--provider X` makes this an error instead of a fallback"))
    if pl.get("profile_error"):
        out.append(Finding("model", WARN, f"the model loaded on {pl.get('used')} but one profiled batch failed: "
                                          f"{pl['profile_error']}", "re-export it with `export-model`"))
        return out
    nodes = pl.get("nodes") or {}
    total = sum(v["nodes"] for v in nodes.values())
    counts = ", ".join(f"{v['nodes']} on {k}" for k, v in sorted(nodes.items(), key=lambda kv: -kv[1]["nodes"]))
    if not total:
        out.append(Finding("model", WARN, f"ONNX Runtime's profile named no nodes (planned: {', '.join(plan)})",
                           "report it with this output"))
        return out
    off = {k: v for k, v in nodes.items() if k != primary}
    if not off:
        out.append(Finding("model", OK, f"nodes: {counts} (all on the requested provider; "
                                        f"precision {pl.get('precision')})"))
        return out
    n_off = sum(v["nodes"] for v in off.values())
    ops = sorted({op for v in off.values() for op in v["ops"]})
    wanted = SHORT.get(primary, primary)
    req = pl.get("requested")
    out.append(Finding(
        "model", WARN, f"nodes: {counts}: {n_off} of {total} not on {primary} ({', '.join(ops[:8])}"
                       f"{', ...' if len(ops) > 8 else ''})",
        f"those operators have no {wanted} kernel here and run on the next provider, with copies between them; a few "
        f"shape ops cost little, many do: compare `edge-bench` or --provider "
        f"{'cpu' if req in ('auto', None) or ALIASES.get(req) == primary else req}"))
    return out


def _caches(facts: dict) -> list[Finding]:
    caches = facts.get("caches")
    bad = _probe_failed("caches", "the cache folders", caches)
    if bad:
        return bad
    out = []
    for d in caches or []:
        name, path = d.get("name"), d.get("path")
        move = {"home": "set EDGE_CLASSIFY_HOME to a folder of your own",
                "graph cache": "set EDGE_CLASSIFY_HOME to a folder of your own (or EDGE_CLASSIFY_NO_CACHE=1)",
                "TensorRT engines": "pass --trt-cache DIR to edge-classify, or set XDG_CACHE_HOME"}.get(name, "")
        if d.get("error"):
            out.append(Finding("caches", FAIL, f"{name} {path}: {d['error']}", move))
        elif not d.get("exists"):
            if d.get("creatable"):
                out.append(Finding("caches", OK, f"{name}: {path} (not created yet; can be)"))
            else:
                out.append(Finding("caches", FAIL, f"{name}: {path} cannot be created ({d.get('nearest')} is not "
                                                   "writable)", move))
        elif not d.get("is_dir"):
            out.append(Finding("caches", FAIL, f"{name}: {path} exists but is not a folder",
                               f"move it away: mv {path} {path}.bak"))
        elif not d.get("writable"):
            mine = d.get("owner_uid") == d.get("uid")
            fix = (f"chmod u+rwx {path}" if mine else f"it belongs to uid {d.get('owner_uid')} (a run under sudo?): "
                                                       f"sudo chown -R $(id -u):$(id -g) {path}")
            out.append(Finding("caches", FAIL, f"{name}: {path} is not writable by you", f"{fix}; or {move}"))
        elif d.get("untrusted") or d.get("symlink"):
            why = d.get("untrusted") or "a symbolic link"
            out.append(Finding("caches", WARN, f"{name}: {path} is {why}: the runtime will not use it",
                               f"chmod 700 {path}" if d.get("untrusted") and "writable by others" in why
                               else f"remove it (the runtime creates its own), or {move}"))
        else:
            size = _size(d.get("bytes") or 0) + (" in all" if name == "home" else "")
            out.append(Finding("caches", OK, f"{name}: {path} ({size})"))
        if d.get("enabled") is False:
            out.append(Finding("caches", NOTE, f"{name} is off (EDGE_CLASSIFY_NO_CACHE is set): slower cold starts"))
    return out


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# --- output -------------------------------------------------------------------------------
def exit_code(findings: list[Finding]) -> int:
    return EXIT_PROBLEMS if any(f.status == FAIL for f in findings) else EXIT_OK


def _summary(findings: list[Finding]) -> str:
    fails = sum(f.status == FAIL for f in findings)
    warns = sum(f.status == WARN for f in findings)
    verdict = "not ready" if fails else "ready"
    return f"{verdict}: {fails} failure{'s' * (fails != 1)}, {warns} warning{'s' * (warns != 1)}"


def render_text(findings: list[Finding]) -> str:
    lines = [f"edge-doctor {__version__}: is this device ready for edge-classify?"]
    for section in SECTIONS:
        these = [f for f in findings if f.section == section]
        if not these:
            continue
        lines.append("")
        lines.append(section)
        for f in these:
            lines.append(f"  {MARK[f.status]:<4}  {f.message}")
            if f.fix and f.status in (WARN, FAIL, NOTE):
                lines.append(f"        fix: {f.fix}")
    lines += ["", _summary(findings)]
    return "\n".join(lines) + "\n"


def to_json(facts: dict, findings: list[Finding]) -> dict:
    sections = {s: [{"status": f.status, "message": f.message, "fix": f.fix} for f in findings if f.section == s]
                for s in SECTIONS}
    problems = [asdict(f) for f in findings if f.status in (WARN, FAIL)]
    return {"ok": exit_code(findings) == EXIT_OK, "summary": _summary(findings), "sections": sections,
            "problems": problems, "facts": facts}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-doctor",
        description="Check whether this device is ready to run edge-classify, and say what to fix when it is not.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", default=None, metavar="PATH",
                   help="an exported .onnx model: show its contract and where each node runs "
                        "(default: the default model, if there is one)")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda", "tensorrt", "openvino"],
                   help="the ONNX Runtime provider to check, as edge-classify --provider (default: auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object (sections, problems, facts, ok)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return shell.run("edge-doctor", lambda: _run(args))


def _run(args) -> int:
    facts = gather(args.model, args.provider)
    findings = diagnose(facts)
    if args.json:
        print(json.dumps(to_json(facts, findings), indent=2, default=str))
    else:
        sys.stdout.write(render_text(findings))
    return exit_code(findings)


if __name__ == "__main__":
    sys.exit(main())
