"""GPU providers, run only where onnxruntime reports them (skipped cleanly elsewhere)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edge_classify.runtime import Classifier

AVAILABLE = ort.get_available_providers()
GPU_PROVIDERS = [
    pytest.param(alias, name, atol, marks=pytest.mark.skipif(name not in AVAILABLE, reason=f"{name} not available"))
    for alias, name, atol in [
        ("cuda", "CUDAExecutionProvider", 1e-4),
        ("tensorrt", "TensorrtExecutionProvider", 2e-2),  # TensorRT runs FP16 by default
    ]
]


@pytest.mark.gpu
@pytest.mark.parametrize("provider, name, atol", GPU_PROVIDERS)
def test_gpu_provider_matches_cpu(provider, name, atol, exported, photos, tmp_path):
    cpu = Classifier(exported["fp32"], providers="cpu").predict(photos[:6])
    gpu = Classifier(exported["fp32"], providers=provider, trt_cache_dir=tmp_path)
    assert gpu.provider == name  # really ran there, no silent fallback
    got = gpu.predict(photos[:6])
    assert np.array_equal(got.argmax(1), cpu.argmax(1))
    assert np.abs(got - cpu).max() <= atol
