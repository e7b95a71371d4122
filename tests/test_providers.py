"""Provider policy, tested by injecting what onnxruntime would report (no GPU needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edge_classify.runtime import EngineOptions, MachineFacts
from edge_classify.runtime.engines.providers import check_used, plan_providers, unusable_gpu_providers
from edge_classify.runtime.errors import EdgeClassifyError

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
OV = "OpenVINOExecutionProvider"
JETSON = [TRT, CUDA, CPU]
CUDA_ONLY = [CUDA, CPU]
CPU_ONLY = [CPU]


@pytest.mark.parametrize(
    "requested, available, expected",
    [
        ("auto", JETSON, [TRT, CUDA, CPU]),
        ("auto", CUDA_ONLY, [CUDA, CPU]),
        ("auto", CPU_ONLY, [CPU]),
        ("auto", ["AzureExecutionProvider", CPU], [CPU]),
        ("auto", [], [CPU]),
        ("tensorrt", JETSON, [TRT, CUDA, CPU]),
        ("cuda", JETSON, [CUDA, CPU]),
        ("cpu", JETSON, [CPU]),
        ("CUDA", CUDA_ONLY, [CUDA, CPU]),
        ("auto", [OV, CPU], [CPU]),  # measured no faster than CPU: only when named
        ("openvino", [OV, CPU], [OV, CPU]),
        ("cuda", [CUDA, OV, CPU], [CUDA, CPU]),  # a named GPU provider does not pull in OpenVINO
    ],
)
def test_plan(requested, available, expected):
    assert plan_providers(requested, available).names == expected


@pytest.mark.parametrize("requested, available",
                         [("tensorrt", CUDA_ONLY), ("cuda", CPU_ONLY), ("tensorrt", CPU_ONLY), ("openvino", CPU_ONLY)])
def test_unavailable_provider_lists_available(requested, available):
    with pytest.raises(EdgeClassifyError) as e:
        plan_providers(requested, available)
    assert requested in e.value.message and "not available" in e.value.message
    assert e.value.hint.startswith("available: ") and "cpu" in e.value.hint


def test_unknown_provider_is_usage_error():
    with pytest.raises(EdgeClassifyError) as e:
        plan_providers("npu", JETSON)
    assert e.value.exit_code == 2


def test_tensorrt_options_go_to_tensorrt_only():
    plan = plan_providers("auto", JETSON, {"trt_fp16_enable": True})
    assert plan.providers[0] == (TRT, {"trt_fp16_enable": True})
    assert plan.providers[1][0] == CUDA and "trt_fp16_enable" not in plan.providers[1][1]


def test_cuda_gets_inference_defaults():
    """cuDNN's exhaustive algorithm search (fastest kernels per shape) and an arena that grows
    by what is asked (a Jetson's GPU shares the board's RAM), wherever CUDA is in the chain."""
    for plan in (plan_providers("auto", JETSON), plan_providers("cuda", CUDA_ONLY)):
        opts = dict(plan.providers)[CUDA]
        assert opts["cudnn_conv_algo_search"] == "EXHAUSTIVE"
        assert opts["arena_extend_strategy"] == "kSameAsRequested"
    assert dict(plan_providers("auto", CPU_ONLY).providers)[CPU] == {}


def test_silent_fallback_is_reported():
    auto = plan_providers("auto", JETSON)
    used, warning = check_used(auto, [CUDA, CPU])  # TensorRT failed to initialise
    assert used == CUDA and "tensorrt" in warning and "cuda" in warning
    assert check_used(auto, [TRT, CUDA, CPU]) == (TRT, None)
    explicit = plan_providers("cuda", JETSON)
    with pytest.raises(EdgeClassifyError, match="cuda was requested"):
        check_used(explicit, [CPU])


# PyPI's onnxruntime-gpu lists TensorRT and CUDA on every machine (defect 5 of issue 11).
NO_LIBS = {"tensorrt": "libnvinfer.so.10: cannot open shared object file: No such file or directory",
           "cuda": None}


def test_gpu_providers_without_a_gpu_are_unusable():
    why = unusable_gpu_providers(JETSON, None, NO_LIBS.get)
    assert set(why) == {TRT, CUDA} and all("no NVIDIA GPU" in w for w in why.values())
    assert unusable_gpu_providers(CPU_ONLY, None, NO_LIBS.get) == {}


def test_tensorrt_listed_without_its_libraries_is_unusable_cuda_stays():
    why = unusable_gpu_providers(JETSON, "/dev/nvidia0", NO_LIBS.get)
    assert list(why) == [TRT] and "libnvinfer.so.10" in why[TRT]
    assert unusable_gpu_providers(JETSON, "/dev/nvidia0", lambda short: None) == {}


def test_auto_leaves_unusable_providers_out_and_says_why():
    why = unusable_gpu_providers(JETSON, "/dev/nvidia0", NO_LIBS.get)
    plan = plan_providers("auto", JETSON, {"trt_fp16_enable": True}, unusable=why)
    assert plan.names == [CUDA, CPU] and "libnvinfer" in plan.skipped[TRT]
    nothing = plan_providers("auto", JETSON, unusable=unusable_gpu_providers(JETSON, None, NO_LIBS.get))
    assert nothing.names == [CPU] and set(nothing.skipped) == {TRT, CUDA}


def test_a_named_provider_is_still_tried_and_its_failure_names_the_cause():
    why = unusable_gpu_providers(JETSON, "/dev/nvidia0", NO_LIBS.get)
    named = plan_providers("tensorrt", JETSON, unusable=why)
    assert named.primary == TRT and not named.skipped  # our detection could be wrong: ORT decides
    with pytest.raises(EdgeClassifyError, match="libnvinfer.so.10") as e:
        check_used(named, [CUDA, CPU], why[TRT])
    assert "install" in e.value.hint
    with pytest.raises(EdgeClassifyError, match="tensorrt was requested") as e:  # loads, yet failed
        check_used(named, [CUDA, CPU], None)
    assert "edge-doctor" in e.value.hint and "librar" not in str(e.value).split("hint")[0]


def test_auto_on_a_gpu_build_without_a_gpu_runs_quietly_on_the_cpu(tmp_path, monkeypatch, capfd):
    """What `edge-classify` does with PyPI's onnxruntime-gpu on a box without a GPU: no ONNX
    Runtime load errors, no warning; one informational note says why the GPU providers sat out."""
    import tiny_models
    from edge_classify.runtime import Classifier

    gpu_build = MachineFacts(ort_providers=tuple(JETSON), gpu_device=None)  # what onnxruntime-gpu lists, no GPU
    model = tiny_models.make(tmp_path / "m.onnx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    clf = Classifier(model, EngineOptions(engine="onnxruntime"), facts=gpu_build)
    assert clf.runner.provider == CPU and clf.report.provider_warning is None
    note, = clf.report.notes
    assert "no NVIDIA GPU" in note and "tensorrt" in note
    out, err = capfd.readouterr()
    assert "EP Error" not in out + err and "TensorrtExecutionProvider" not in out + err
    assert not (tmp_path / "cache" / "edge-classify" / "trt-engines").exists()  # no engine folder made for nothing
    both = Classifier(model, EngineOptions(images_hint=1),
                      facts=replace(gpu_build, engines=("onnxruntime", "openvino")))
    assert "GPU" not in both.report.engine_choice.reason  # an unusable GPU provider does not decide the engine
    assert " ".join(both.report.notes).count("no NVIDIA GPU") == 1  # one reason, said once for both providers


def test_provider_library_check_opens_onnxruntimes_own_provider_library(tmp_path, monkeypatch):
    """``gpu.provider_library_error`` dlopens ``onnxruntime/capi/libonnxruntime_providers_<p>.so``,
    the file ONNX Runtime itself loads: a library that cannot load is named with the loader's reason."""
    import ctypes.util
    import shutil
    import sys

    from edge_classify.runtime.host import deps, gpu

    if not sys.platform.startswith("linux"):
        pytest.skip("the check is for Linux (Jetson and x86 GPU boxes)")
    pkg = tmp_path / "onnxruntime"
    (pkg / "capi").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "capi" / "libonnxruntime_providers_tensorrt.so").write_bytes(b"not an ELF file")
    libm = ctypes.util.find_library("m")
    loadable = next(p for p in ("/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib")
                    if libm and (Path(p) / libm).exists())
    shutil.copy(Path(loadable) / libm, pkg / "capi" / "libonnxruntime_providers_cuda.so")
    fake = type("FakeOrt", (), {"__file__": str(pkg / "__init__.py")})()
    monkeypatch.setattr(deps, "onnxruntime", lambda: fake)
    gpu.provider_library_error.cache_clear()
    try:
        assert gpu.provider_library_error("tensorrt")  # the loader's reason (invalid ELF header)
        assert gpu.provider_library_error("cuda") is None
        assert gpu.provider_library_error("openvino") is None  # no such file: cannot judge
    finally:
        gpu.provider_library_error.cache_clear()
