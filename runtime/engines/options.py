"""How to run a model: one immutable ``EngineOptions`` from the caller to the loader.

Every field has a default that suits a one-off CPU run; the command lines fill them from
their flags (``edge-classify --engine --provider --device --precision --threads
--trt-cache --trt-fp32``) and the library never reads a flag itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TensorRTOptions:
    """TensorRT through ONNX Runtime (engines/tensorrt.py)."""

    cache_dir: str | os.PathLike | None = None  # engine cache; default providers.default_trt_cache_dir()
    fp16: bool = True  # FP16 kernels where TensorRT finds them faster


@dataclass(frozen=True)
class EngineOptions:
    """``engine``: ``auto``, ``onnxruntime`` or ``openvino`` (engines/policy.py).
    ``providers``: ONNX Runtime's, ``auto``, ``cpu``, ``cuda``, ``tensorrt`` or ``openvino``
    (engines/providers.py); naming one implies ONNX Runtime. ``device``: an OpenVINO device
    (``CPU``, ``GPU``, ``NPU``, ``AUTO``); naming one implies OpenVINO. ``precision``:
    ``auto``, ``fp32`` or ``bf16`` for an FP32 model (BF16 only on evidence: policy.py).
    ``threads``: intra-op threads (default: the engine's). ``spinning=False`` stops ONNX
    Runtime's worker threads from busy-waiting inside a run; turn it off when several
    sessions run back to back in one process (ort_runner.session_options). ``images_hint``:
    how many images will be classified, when known: a small run goes to the engine that
    starts leaner (policy.small_run)."""

    engine: str = "auto"
    providers: str = "auto"
    device: str | None = None
    precision: str = "auto"
    threads: int | None = None
    spinning: bool = True
    images_hint: int | None = None
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)

    @property
    def openvino_device(self) -> str:
        return self.device or "CPU"
