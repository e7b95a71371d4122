"""edge-doctor: the diagnosis on injected facts (each problem a device can have, and its fix),
the probes' parsers, and real runs on this machine (text, --json, --model on a tiny model)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys

from conftest import script
from edge_classify.runtime.apps import doctor, doctor_facts
from edge_classify.runtime.apps.doctor import FAIL, NOTE, OK, WARN, diagnose, exit_code

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"


def healthy() -> dict:
    """The facts of a ready x86 CPU box (as gather() would report them)."""
    return {
        "edge_classify": "0.1.0",
        "request": {"provider": "auto"},
        "platform": {"os": "Ubuntu 22.04.4 LTS", "kernel": "Linux 6.8.0", "machine": "x86_64", "python": "3.10.12",
                     "executable": "/venv/bin/python", "jetson": None,
                     "cpu": {"model": "AMD EPYC", "cores": 2,
                             "flags": {"present": ["avx2", "fma", "f16c"], "missing": ["avx512f"]}}},
        "numpy": {"status": "ok", "version": "1.26.4"},
        "opencv": {"status": "ok", "version": "4.10.0", "distributions": [
            {"name": "opencv-python-headless", "version": "4.10.0.84", "location": "/venv/lib"}],
            "video_io": {"GStreamer": False, "FFMPEG": True, "V4L/V4L2": True}},
        "onnxruntime": {"status": "ok", "version": "1.18.0", "providers": [CPU], "unusable": {},
                        "distributions": [{"name": "onnxruntime", "version": "1.18.0", "location": "/venv/lib"}]},
        "openvino": {"status": "missing", "error": "No module named 'openvino'"},
        "gpu": {"name": None, "device": None, "tensorrt_python": None, "libraries": {
            k: {"found": False, "error": "not found", "elsewhere": None} for k in ("tensorrt", "cuda", "cudnn")}},
        "caches": [
            {"name": "home", "path": "/home/u/.cache/edge-classify", "enabled": True, "exists": True, "uid": 1000,
             "is_dir": True, "owner_uid": 1000, "symlink": False, "writable": True, "bytes": 4096},
            {"name": "graph cache", "path": "/home/u/.cache/edge-classify/ort-cache", "enabled": True,
             "exists": False, "uid": 1000, "creatable": True, "nearest": "/home/u/.cache/edge-classify"},
        ],
        "model": {"path": "/home/u/m.onnx", "source": "--model", "exists": True,
                  "contract": {"arch": "resnet50", "precision": "fp32", "input_size": [224, 224], "layout": "NHWC",
                               "preprocess": "caffe", "color_order": "BGR", "resize": "nearest", "labels": 1000,
                               "head": "softmax", "output": "probabilities", "batch": None},
                  "placement": {"requested": "auto", "plan": [CPU], "used": CPU, "precision": "fp32",
                                "warning": None, "nodes": {CPU: {"nodes": 122, "ops": {"Conv": 53, "Relu": 49}}}}},
    }


def gpu_box() -> dict:
    """An x86 box with an NVIDIA GPU, CUDA and cuDNN, and PyPI's onnxruntime-gpu."""
    f = healthy()
    f["onnxruntime"].update(providers=[TRT, CUDA, CPU], distributions=[
        {"name": "onnxruntime-gpu", "version": "1.20.1", "location": "/venv/lib"}])
    f["gpu"].update(name="NVIDIA L4, 8.9", device="/dev/nvidia0")
    f["gpu"]["libraries"]["cuda"] = {"found": True, "soname": "libcudart.so.12", "path": "/usr/lib/libcudart.so.12",
                                     "version": "12.4"}
    f["gpu"]["libraries"]["cudnn"] = {"found": True, "soname": "libcudnn.so.9", "path": "/usr/lib/libcudnn.so.9",
                                      "version": "9.1.0"}
    return f


def by_status(findings, status):
    return [f for f in findings if f.status == status]


def test_healthy_cpu_box_is_ready():
    findings = diagnose(healthy())
    assert exit_code(findings) == 0
    assert not by_status(findings, FAIL) and not by_status(findings, WARN), findings
    assert {f.section for f in findings} >= {"platform", "engines", "gpu", "opencv", "numpy", "model", "caches"}
    model = [f.message for f in findings if f.section == "model" and f.status == OK]
    assert any("nodes: 122 on CPUExecutionProvider" in m for m in model), model
    assert "resnet50 fp32, input 224x224 NHWC, preprocess caffe" in model[0]
    assert "1000 labels, softmax head" in model[0]
    out = doctor.to_json(healthy(), findings)
    assert out["ok"] is True and out["problems"] == []


def test_two_onnxruntime_distributions_fail_with_the_reinstall():
    f = gpu_box()
    f["gpu"]["libraries"]["tensorrt"] = {"found": True, "soname": "libnvinfer.so.10", "version": "10.3.0"}
    f["onnxruntime"]["distributions"].append({"name": "onnxruntime", "version": "1.20.1", "location": "/venv/lib"})
    findings = diagnose(f)
    fails = by_status(findings, FAIL)
    assert len(fails) == 1 and exit_code(findings) == 1
    assert "more than one onnxruntime distribution" in fails[0].message
    assert "onnxruntime-gpu, onnxruntime" in fails[0].message
    assert fails[0].fix.startswith("pip uninstall -y onnxruntime onnxruntime-gpu")
    assert "pip install onnxruntime-gpu" in fails[0].fix  # the GPU one is what comes back
    # One distribution: nothing to report.
    single = gpu_box()
    single["gpu"]["libraries"]["tensorrt"] = f["gpu"]["libraries"]["tensorrt"]
    assert exit_code(diagnose(single)) == 0


def test_two_distributions_on_a_jetson_name_the_jetson_wheel():
    f = healthy()
    f["platform"]["jetson"] = {"model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.3.0", "jetpack": "6"}
    f["onnxruntime"]["distributions"] = [{"name": "onnxruntime-gpu", "version": "1.18.0", "location": "/usr/lib"},
                                         {"name": "onnxruntime", "version": "1.20.1", "location": "/venv/lib"}]
    fails = by_status(diagnose(f), FAIL)
    assert len(fails) == 1 and "JetPack 6" in fails[0].fix
    # ... and PyPI's CPU build won: the GPU is unused, which is a warning of its own.
    assert any("no CUDA or TensorRT provider" in w.message for w in by_status(diagnose(f), WARN))


def test_tensorrt_listed_without_libnvinfer_is_a_warning_not_a_failure():
    f = gpu_box()
    findings = diagnose(f)
    warns = by_status(findings, WARN)
    assert [w.message for w in warns] == [
        "TensorRT is listed by onnxruntime-gpu but its libraries are not installed: auto uses CUDA"]
    assert warns[0].fix and "TensorRT" in warns[0].fix
    assert exit_code(findings) == 0
    # Where TensorRT is installed, nothing is said.
    f["gpu"]["libraries"]["tensorrt"] = {"found": True, "soname": "libnvinfer.so.10", "version": "10.3.0"}
    findings = diagnose(f)
    assert not by_status(findings, WARN)
    assert any(x.status == OK and "TensorRT (libnvinfer) 10.3.0" in x.message for x in findings)


def test_tensorrt_installed_off_the_loader_path_says_where():
    f = gpu_box()
    f["gpu"]["libraries"]["tensorrt"]["elsewhere"] = "/venv/lib/python3.10/site-packages/tensorrt_libs/libnvinfer.so.10"
    warn = by_status(diagnose(f), WARN)[0]
    assert "LD_LIBRARY_PATH=/venv/lib/python3.10/site-packages/tensorrt_libs:" in warn.fix


def test_gpu_providers_without_a_gpu_are_a_note():
    f = healthy()
    f["onnxruntime"].update(providers=[TRT, CUDA, CPU], distributions=[
        {"name": "onnxruntime-gpu", "version": "1.20.1", "location": "/venv/lib"}])
    findings = diagnose(f)
    assert exit_code(findings) == 0 and not by_status(findings, WARN)
    assert any("there is no NVIDIA GPU" in n.message for n in by_status(findings, NOTE))


def test_cv2_failing_under_numpy_2_names_the_pin():
    f = healthy()
    f["numpy"]["version"] = "2.1.0"
    f["opencv"] = {"status": "broken", "error": "numpy.core.multiarray failed to import", "numpy_abi": True,
                   "distributions": []}
    findings = diagnose(f)
    fails = by_status(findings, FAIL)
    assert len(fails) == 1 and exit_code(findings) == 1
    assert "NumPy 2.1.0" in fails[0].message and "NumPy 1.x" in fails[0].message
    assert "pip install 'numpy<2'" in fails[0].fix and "pip install -e '.[jetson]'" in fails[0].fix
    f["numpy"]["version"] = "1.26.4"  # not the NumPy-2 case: no pin to NumPy 1 is suggested
    fails = by_status(diagnose(f), FAIL)
    assert len(fails) == 1 and "numpy<2" not in fails[0].fix and "does not import" in fails[0].message


def test_cv2_probe_recognises_numpys_abi_failure(tmp_path, monkeypatch):
    """The real probe, on a cv2 that fails the way JetPack's does under NumPy 2: NumPy's banner on
    stderr, then an ImportError."""
    (tmp_path / "cv2.py").write_text(
        "import sys\n"
        "sys.stderr.write('A module that was compiled using NumPy 1.x cannot be run in '\n"
        "                 'NumPy 2.1.0 as it may crash.\\n')\n"
        "raise ImportError('numpy.core.multiarray failed to import')\n")
    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    facts = doctor_facts.opencv_facts()
    assert facts["status"] == "broken" and facts["numpy_abi"] is True
    assert facts["error"] == "numpy.core.multiarray failed to import"
    (tmp_path / "cv2.py").write_text("raise ImportError('libGL.so.1: cannot open shared object file')\n")
    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    assert doctor_facts.opencv_facts()["numpy_abi"] is False


def test_cv2_without_gstreamer_warns_only_on_a_jetson():
    f = healthy()
    notes = [n.message for n in by_status(diagnose(f), NOTE) if n.section == "opencv"]
    assert any("no GStreamer" in n for n in notes) and not by_status(diagnose(f), WARN)
    f["platform"]["jetson"] = {"model": "NVIDIA Jetson AGX Orin", "l4t": "35.4.1", "jetpack": "5"}
    f["onnxruntime"]["providers"] = [CUDA, CPU]  # NVIDIA's wheel: only the GStreamer problem is left
    f["gpu"]["device"] = "/dev/nvhost-ctrl-gpu"
    for k in ("cuda", "cudnn"):
        f["gpu"]["libraries"][k] = {"found": True, "soname": f"lib{k}.so", "version": "1"}
    warns = by_status(diagnose(f), WARN)
    assert [w.section for w in warns] == ["opencv"] and "JetPack's OpenCV" in warns[0].message


def test_non_writable_cache_dir_fails_with_the_fix():
    f = healthy()
    f["caches"][0].update(writable=False, owner_uid=0)  # made by a run under sudo
    findings = diagnose(f)
    fails = by_status(findings, FAIL)
    assert len(fails) == 1 and exit_code(findings) == 1
    assert "/home/u/.cache/edge-classify is not writable" in fails[0].message
    assert "sudo chown -R $(id -u):$(id -g) /home/u/.cache/edge-classify" in fails[0].fix
    assert "EDGE_CLASSIFY_HOME" in fails[0].fix
    f["caches"][0].update(owner_uid=1000)  # our own, read-only
    assert by_status(diagnose(f), FAIL)[0].fix.startswith("chmod u+rwx /home/u/.cache/edge-classify")


def test_cache_dir_that_cannot_be_created_or_is_shared():
    f = healthy()
    f["caches"][1].update(creatable=False, nearest="/home/u/.cache")
    assert "cannot be created" in by_status(diagnose(f), FAIL)[0].message
    f = healthy()
    f["caches"][1] = dict(f["caches"][0], name="graph cache", path="/shared/ort-cache",
                          untrusted="writable by others (mode 0777)")
    warn = by_status(diagnose(f), WARN)[0]
    assert "will not use it" in warn.message and warn.fix == "chmod 700 /shared/ort-cache"


def test_nodes_off_the_requested_provider_are_a_warning():
    f = gpu_box()
    f["gpu"]["libraries"]["tensorrt"] = {"found": True, "soname": "libnvinfer.so.10", "version": "10.3.0"}
    f["request"]["provider"] = "cuda"
    f["model"]["placement"] = {"requested": "cuda", "plan": [CUDA, CPU], "used": CUDA, "precision": "fp32",
                               "warning": None,
                               "nodes": {CUDA: {"nodes": 118, "ops": {"Conv": 53}},
                                         CPU: {"nodes": 4, "ops": {"Shape": 2, "Gather": 2}}}}
    findings = diagnose(f)
    warns = by_status(findings, WARN)
    assert len(warns) == 1 and exit_code(findings) == 0
    assert warns[0].section == "model"
    assert "118 on CUDAExecutionProvider, 4 on CPUExecutionProvider" in warns[0].message
    assert "4 of 122 not on CUDAExecutionProvider (Gather, Shape)" in warns[0].message
    assert warns[0].fix
    # TensorRT's fused subgraphs count as TensorRT's.
    f["model"]["placement"].update(plan=[TRT, CUDA, CPU], used=TRT,
                                   nodes={TRT: {"nodes": 1, "ops": {"TRTKernel_graph_main_0": 1}}})
    f["request"]["provider"] = "auto"
    assert not by_status(diagnose(f), WARN)


def test_requested_provider_that_is_not_available_fails():
    f = healthy()
    f["request"]["provider"] = "cuda"
    f["model"].pop("placement")  # gather() does not load a model on a provider that is not there
    findings = diagnose(f)
    fails = by_status(findings, FAIL)
    assert len(fails) == 1 and exit_code(findings) == 1
    assert "provider 'cuda' (CUDAExecutionProvider) is not available" in fails[0].message
    assert "available: cpu" in fails[0].fix
    assert any("placement not checked" in n.message for n in by_status(findings, NOTE))


def test_a_model_that_fails_to_load_on_the_provider_shows_onnxruntimes_message():
    f = gpu_box()
    f["request"]["provider"] = "cuda"
    f["model"]["placement"] = {"requested": "cuda", "error": "cuda could not create a session for this model: x",
                               "fix": "--provider auto runs on the next provider instead",
                               "onnxruntime_message": "CUDA failure 100: no CUDA-capable device is detected"}
    fails = by_status(diagnose(f), FAIL)
    assert len(fails) == 1 and "ONNX Runtime says: CUDA failure 100" in fails[0].message


def test_missing_engines_and_a_failed_probe_are_reported():
    f = healthy()
    f["onnxruntime"] = {"status": "missing", "error": "No module named 'onnxruntime'", "distributions": []}
    f["model"].pop("placement")
    fails = by_status(diagnose(f), FAIL)
    assert [x.section for x in fails] == ["engines"] and "no inference engine" in fails[0].message
    f["openvino"] = {"status": "ok", "version": "2024.4.0", "devices": ["CPU"]}
    assert exit_code(diagnose(f)) == 0  # the openvino engine runs without onnxruntime
    f["gpu"] = {"status": "probe-failed", "error": "KeyError: 'x'"}
    warns = by_status(diagnose(f), WARN)
    assert warns and "could not check" in warns[0].message


def test_probe_parsers():
    assert doctor_facts.parse_tegra_release("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64") \
        == {"l4t": "36.3.0", "jetpack": "6"}
    assert doctor_facts.parse_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178") == {"l4t": "35.4.1",
                                                                                            "jetpack": "5"}
    assert doctor_facts.parse_tegra_release("garbage") is None
    assert doctor_facts.nv_version(8601) == "8.6.1" and doctor_facts.nv_version(100300) == "10.3.0"
    assert doctor_facts.nv_version(8906) == "8.9.6" and doctor_facts.nv_version(90300) == "9.3.0"  # cuDNN 8 / 9
    info = ("  Video I/O:\n    DC1394:                      NO\n    FFMPEG:                      YES\n"
            "      avcodec:                   YES (59.37.100)\n    GStreamer:                   YES (1.20.3)\n"
            "    v4l/v4l2:                    YES (linux/videodev2.h)\n\n  Parallel framework:            pthreads\n")
    assert doctor_facts.parse_video_io(info) == {"FFMPEG": True, "GStreamer": True, "V4L/V4L2": True}
    assert doctor_facts.parse_video_io(info.replace("(1.20.3)", "").replace("GStreamer:                   YES",
                                                                      "GStreamer:                   NO"))["GStreamer"] \
        is False
    assert doctor_facts.cpu_flags("x86_64", "fpu avx2 fma avx512f") == {
        "present": ["avx2", "fma", "avx512f"],
        "missing": ["f16c", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"]}
    assert doctor_facts.cpu_flags("aarch64", "fp asimd asimddp")["present"] == ["asimd", "asimddp"]


def test_jetson_facts_from_its_files(tmp_path):
    model, release = tmp_path / "model", tmp_path / "nv_tegra_release"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\0")
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    assert doctor_facts.jetson_facts(str(model), str(release)) == {
        "model": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "36.4.3", "jetpack": "6"}
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    assert doctor_facts.jetson_facts(str(model), str(tmp_path / "absent")) is None


def test_count_nodes_counts_each_node_once_per_provider():
    def ev(name, provider, op, cat="Node"):
        return {"cat": cat, "name": name, "args": {"provider": provider, "op_name": op}}

    run = [ev("conv1_fence_before", CPU, "Conv"), ev("conv1_kernel_time", CPU, "Conv"),
           ev("conv1_fence_after", CPU, "Conv"), ev("TRTKernel_graph_0_kernel_time", TRT, "TRTKernel_graph_0"),
           {"cat": "Session", "name": "model_run", "args": {}}]
    assert doctor_facts.count_nodes(run + run) == {CPU: {"nodes": 1, "ops": {"Conv": 1}},
                                             TRT: {"nodes": 1, "ops": {"TRTKernel_graph_0": 1}}}
    assert doctor_facts.count_nodes({"traceEvents": run})[CPU]["nodes"] == 1


def test_dir_facts_on_real_folders(tmp_path):
    d = tmp_path / "cache"
    d.mkdir()
    (d / "blob").write_bytes(b"x" * 10000)
    facts = doctor_facts.dir_facts("home", d)
    assert facts["exists"] and facts["is_dir"] and facts["writable"] and facts["bytes"] >= 10000
    absent = doctor_facts.dir_facts("home", tmp_path / "a" / "b")
    assert absent["exists"] is False and absent["creatable"] is True and absent["nearest"] == str(tmp_path)
    f = tmp_path / "file"
    f.write_text("x")
    assert doctor_facts.dir_facts("home", f)["is_dir"] is False


def test_help_has_examples_and_exit_codes():
    text = doctor.build_parser().format_help()
    assert "edge-doctor --model resnet50.onnx" in text and "exit codes: 0 nothing failed" in text


# --- real runs on this machine --------------------------------------------------------------
def _lscpu_model() -> str | None:
    if not shutil.which("lscpu") or platform.machine() != "x86_64":
        return None
    out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True,
                         env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    return next((line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith("Model name")),
                None)


def test_edge_doctor_on_this_machine():
    import onnxruntime

    exe = script("edge-doctor")
    text = subprocess.run([exe], check=False, capture_output=True, text=True, timeout=120)
    js = subprocess.run([exe, "--json"], check=False, capture_output=True, text=True, timeout=120)
    data = json.loads(js.stdout)
    assert js.returncode == text.returncode == (0 if data["ok"] else 1), (text.stdout, js.stderr)
    assert data["ok"] == (not any(p["status"] == "fail" for p in data["problems"]))
    facts = data["facts"]
    assert facts["onnxruntime"]["version"] == onnxruntime.__version__
    assert facts["onnxruntime"]["providers"] == onnxruntime.get_available_providers()
    assert f"onnxruntime {onnxruntime.__version__} (" in text.stdout
    model = _lscpu_model()
    if model:
        assert facts["platform"]["cpu"]["model"] == model
        assert f"CPU: {model}, " in text.stdout
    for section in doctor.SECTIONS:
        assert f"\n{section}\n" in text.stdout
    assert text.stdout.rstrip().splitlines()[-1] == data["summary"]
    # Every problem in the text has its fix line, and each status mark is one of the four.
    lines = text.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("  WARN  ", "  FAIL  ")):
            assert lines[i + 1].startswith("        fix: "), line
    marks = {line[2:6].strip() for line in lines if line.startswith("  ") and not line.startswith("        ")}
    assert marks <= {"ok", "note", "WARN", "FAIL"}


def test_edge_doctor_on_a_tiny_model(tmp_path):
    """Where ONNX Runtime really runs the model's nodes: the profiler's count must equal the nodes
    of the graph ONNX Runtime optimised (saved here by a session of our own); no TensorFlow."""
    import onnx
    import onnxruntime as ort

    import tiny_models

    model = tiny_models.make(tmp_path / "tiny.onnx", classes=7)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(model), so, providers=[CPU])
    optimised = onnx.load(str(tmp_path / "optimised.onnx")).graph.node
    assert 0 < len(optimised) <= len(onnx.load(str(model)).graph.node)

    code = ("import sys; from edge_classify.runtime.apps.doctor import main; rc = main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules, 'edge-doctor imported TensorFlow'; sys.exit(rc)")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    run = subprocess.run([sys.executable, "-c", code, "--json", "--model", str(model), "--provider", "cpu"],
                         check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert run.returncode in (0, 1), run.stderr
    data = json.loads(run.stdout)
    m = data["facts"]["model"]
    assert m["contract"]["arch"] == "tiny" and m["contract"]["labels"] == 7
    assert m["contract"]["input_size"] == [224, 224] and m["contract"]["preprocess"] == "caffe"
    placement = m["placement"]
    assert placement["plan"] == [CPU] and placement["used"] == CPU
    assert list(placement["nodes"]) == [CPU]
    assert placement["nodes"][CPU]["nodes"] == len(optimised)
    assert placement["nodes"][CPU]["ops"] == {op: sum(n.op_type == op for n in optimised)
                                              for op in {n.op_type for n in optimised}}
    assert not [p for p in data["problems"] if p["section"] == "model"]
    assert any(f"nodes: {len(optimised)} on CPUExecutionProvider" in s["message"] for s in data["sections"]["model"])
    # The profile is removed: nothing of ours is left in the temp dir (onnxruntime's import leaves
    # a `.ses` file there, of its own) or in the working directory.
    assert [p.name for p in tmp.iterdir() if p.name.startswith("edge-doctor") or "profile" in p.name] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optimised.onnx", "tiny.onnx", "tmp"]


def test_edge_doctor_without_engines_or_opencv(capsys, tmp_path, monkeypatch):
    """onnxruntime, OpenVINO and OpenCV all missing: reported with fixes, exit 1, no crash."""
    for name in ("onnxruntime", "openvino", "cv2"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ModuleNotFoundError
    rc = doctor.main(["--json", "--model", str(tmp_path / "absent.onnx")])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1 and data["ok"] is False
    fails = {(p["section"], p["message"].split(":")[0]) for p in data["problems"] if p["status"] == "fail"}
    assert fails == {("engines", "onnxruntime is not installed"), ("opencv", "OpenCV (cv2) is not installed"),
                     ("model", "model file not found")}
    assert all(p["fix"] for p in data["problems"])
