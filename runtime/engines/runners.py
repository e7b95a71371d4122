"""The runner seam: one small interface per inference engine.

A ``Runner`` takes a preprocessed batch (the contract's layout, float32) and returns the
graph's output; it also says what really ran: ``engine``, ``device`` (ONNX Runtime's
provider or OpenVINO's device) and ``precision``. Loading is the constructor; the
``Classifier`` adds the contract, preprocessing and the ranking on top, and ``edge-bench``
times these same runners.

Engines: ``onnxruntime`` (``ort_runner.OrtRunner``: TensorRT / CUDA / OpenVINO EP / CPU
providers) and ``openvino`` (``openvino_runner.OpenVinoRunner``: the OpenVINO runtime, CPU
here; GPU/NPU where Intel's plugins find one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# A runner's ``precision`` where the engine computes bf16 without native BF16 instructions:
# OpenVINO 2026.4 on AVX-512 CPUs without AVX512-BF16/AMX takes the bf16 hint and has oneDNN
# emulate it (output 0.016 from f32 on the ResNet50 stand-in), while it reports no BF16 in
# OPTIMIZATION_CAPABILITIES. Never evidence about native BF16, and never chosen.
BF16_EMULATED = "bf16 (emulated)"


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as ``model_check`` reads it (ONNX Runtime's ``NodeArg`` shape)."""

    name: str
    shape: list  # ints for fixed dimensions, None for dynamic ones
    type: str  # "tensor(float)", ...


class Runner(Protocol):
    engine: str  # "onnxruntime" | "openvino"
    device: str  # e.g. "CPUExecutionProvider", "TensorrtExecutionProvider", "CPU"
    precision: str  # what the engine computes in: fp32 | fp16 | int8 | bf16 | BF16_EMULATED
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    cache_status: str  # "hit" | "stored" | "pending" | "off": the engine's compiled-model cache

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, ...) float32 in the contract's layout -> the graph's output (N, classes)."""

    def commit_cache(self) -> None:
        """Store what loading compiled, now that the model passed its checks."""

    def close(self) -> None:
        """Release the engine's memory and threads."""
