"""GPU providers, run only where onnxruntime reports them (skipped cleanly elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_classify.runtime import Classifier


def _available() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.parametrize("provider, tensorrt_fp16_atol", [("cuda", None), ("tensorrt", 2e-2)])
def test_gpu_provider_matches_cpu(provider, tensorrt_fp16_atol, exported, photos, tmp_path):
    name = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[provider]
    if name not in _available():
        pytest.skip(f"{name} not available in this onnxruntime build")
    cpu = Classifier(exported["fp32"], providers="cpu").predict(photos[:6])
    gpu = Classifier(exported["fp32"], providers=provider, trt_cache_dir=tmp_path)
    assert gpu.provider == name  # really ran there, no silent fallback
    got = gpu.predict(photos[:6])
    assert np.array_equal(got.argmax(1), cpu.argmax(1))
    assert np.abs(got - cpu).max() <= (tensorrt_fp16_atol or 1e-4)
