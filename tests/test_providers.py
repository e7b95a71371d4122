"""Provider policy, tested by injecting what onnxruntime would report (no GPU needed)."""

from __future__ import annotations

import pytest

from edge_classify.runtime.errors import EdgeClassifyError
from edge_classify.runtime.providers import check_used, plan_providers

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
    assert plan.providers[1] == (CUDA, {})


def test_silent_fallback_is_reported():
    auto = plan_providers("auto", JETSON)
    used, warning = check_used(auto, [CUDA, CPU])  # TensorRT failed to initialise
    assert used == CUDA and "tensorrt" in warning and "cuda" in warning
    assert check_used(auto, [TRT, CUDA, CPU]) == (TRT, None)
    explicit = plan_providers("cuda", JETSON)
    with pytest.raises(EdgeClassifyError, match="cuda was requested"):
        check_used(explicit, [CPU])
