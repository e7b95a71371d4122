"""GPU providers on a real GPU: FP32, FP16 and INT8 files on CUDA and TensorRT, each against
the CPU provider on the same file and photos.

Runs where ONNX Runtime lists the provider *and* it can work (a GPU device, its libraries
load: ``providers.unusable_gpu_providers``, the same check ``auto`` makes); each provider is
skipped on its own, with the reason, elsewhere. The models are built with ``onnx`` helpers
(``tiny_models.make_conv``), and INT8 by the product's own quantizer, so nothing here needs
TensorFlow: the file runs on a Jetson with the runtime and test extras.
"""

from __future__ import annotations

import numpy as np
import pytest

import tiny_models
from edge_classify.runtime import Classifier, EngineOptions, TensorRTOptions
from edge_classify.runtime.engines.providers import unusable_gpu_providers
from edge_classify.runtime.host import gpu

ort = pytest.importorskip("onnxruntime")
LISTED = ort.get_available_providers()
PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# max |dp| against the CPU provider on the same file. TensorRT builds FP32 models in FP16 by
# default; INT8 kernels differ between providers (rounding, fused requantization).
ATOL = {("cuda", "fp32"): 1e-4, ("cuda", "fp16"): 5e-3, ("cuda", "int8"): 5e-2,
        ("tensorrt", "fp32"): 2e-2, ("tensorrt", "fp16"): 2e-2, ("tensorrt", "int8"): 1e-1}


def _skip_reason(name: str) -> str | None:
    if name not in LISTED:
        return f"{name} is not in this onnxruntime build"
    why = unusable_gpu_providers([name], gpu.nvidia_gpu_device(), gpu.provider_library_error).get(name)
    return f"{name}: {why}" if why else None


CASES = [
    pytest.param(short, precision, marks=pytest.mark.skipif(bool(_skip_reason(name)), reason=_skip_reason(name) or ""))
    for short, name in PROVIDERS.items() for precision in ("fp32", "fp16", "int8")
]


@pytest.fixture(scope="module")
def models(tmp_path_factory, photos) -> dict:
    d = tmp_path_factory.mktemp("gpu")
    return {p: tiny_models.make_conv(d / f"conv_{p}.onnx", p, calibration=photos[:8]) for p in ("fp32", "fp16", "int8")}


@pytest.mark.gpu
@pytest.mark.parametrize("provider, precision", CASES)
def test_gpu_provider_matches_cpu(provider, precision, models, photos, tmp_path):
    cpu = Classifier(models[precision], EngineOptions(providers="cpu")).predict(photos)
    assert len(set(cpu.argmax(1))) > 1  # the picture matters, so agreeing top-1 means something
    gpu = Classifier(models[precision], EngineOptions(providers=provider, tensorrt=TensorRTOptions(cache_dir=tmp_path)))
    assert gpu.provider == PROVIDERS[provider]  # really ran there, no silent fallback
    got = gpu.predict(photos)
    margin = np.sort(cpu, 1)[:, -1] - np.sort(cpu, 1)[:, -2]
    clear = margin > 2 * ATOL[provider, precision]  # near ties may flip under reduced precision
    assert clear.sum() >= len(photos) // 2
    assert np.array_equal(got.argmax(1)[clear], cpu.argmax(1)[clear])
    assert np.abs(got - cpu).max() <= ATOL[provider, precision]
    if provider == "tensorrt":
        engines = list(tmp_path.rglob("*.engine"))
        assert engines, "TensorRT cached no engine"
        again = Classifier(models[precision], EngineOptions(providers=provider, tensorrt=TensorRTOptions(cache_dir=tmp_path)))
        assert again.report.engine_built is False  # the second load reuses the cached engine


def test_gpu_tests_and_their_models_need_no_tensorflow(tmp_path):
    """Runs everywhere (no GPU needed): with TensorFlow and Keras unimportable, as on a Jetson
    with the runtime and test extras only, this module imports and its FP32/FP16/INT8 models
    are built and run, each predicting what FP32 predicts on most photos."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    code = f"""
import sys
sys.modules["tensorflow"] = None; sys.modules["keras"] = None; sys.modules["tf2onnx"] = None
sys.path.insert(0, {str(tests)!r})
from pathlib import Path
import numpy as np
import conftest, test_gpu, tiny_models
from edge_classify.runtime import Classifier, EngineOptions
photos = [conftest.SKIMAGE_DATA / f for f in conftest.PHOTO_FILES]
d = Path({str(tmp_path)!r})
top = {{p: Classifier(tiny_models.make_conv(d / f"{{p}}.onnx", p, calibration=photos[:8]), EngineOptions(providers="cpu"))
        .predict(photos).argmax(1) for p in ("fp32", "fp16", "int8")}}
assert len(set(top["fp32"])) > 1
import json
print(json.dumps({{p: float((t == top["fp32"]).mean()) for p, t in top.items()}}))
assert all("tensorflow" not in m and "keras" not in m for m in sys.modules if sys.modules[m] is not None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    agreement = json.loads(out.stdout.strip().splitlines()[-1])
    assert agreement["fp16"] == 1.0 and agreement["int8"] >= 0.8
