"""The runner seam: one small interface per inference engine.

A ``Runner`` takes a preprocessed batch (the contract's layout, float32) and returns the
graph's output; it also says what really ran: ``engine``, ``device`` (ONNX Runtime's
provider or OpenVINO's device), ``provider`` (how rows name it) and ``precision``. The
loader (loader.py) builds one and checks it against the model's contract; the
``Classifier`` adds preprocessing and the ranking on top, and ``edge-bench`` times these
same runners. ``Runner`` is everything the product calls; ``BaseRunner`` holds what every
runner does around its engine's own ``_run`` (Polygraphy's ``BaseRunner.infer`` ->
``infer_impl``): the one-time contract check, static-batch padding, timing and close.

Engines: ``onnxruntime`` (``ort_runner.OrtRunner``: TensorRT / CUDA / OpenVINO EP / CPU
providers) and ``openvino`` (``openvino_runner.OpenVinoRunner``: the OpenVINO runtime, CPU
here; GPU/NPU where Intel's plugins find one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..model import checks
from ..model.contract import ModelContract

# A runner's ``precision`` where the engine computes bf16 without native BF16 instructions:
# OpenVINO 2026.4 on AVX-512 CPUs without AVX512-BF16/AMX takes the bf16 hint and has oneDNN
# emulate it (output 0.016 from f32 on the ResNet50 stand-in), while it reports no BF16 in
# OPTIMIZATION_CAPABILITIES. Never evidence about native BF16, and never chosen.
BF16_EMULATED = "bf16 (emulated)"


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as ``model/checks.py`` reads it (ONNX Runtime's ``NodeArg`` shape)."""

    name: str
    shape: list  # ints for fixed dimensions, None for dynamic ones
    type: str  # "tensor(float)", ...


class Runner(Protocol):
    engine: str  # "onnxruntime" | "openvino"
    device: str  # e.g. "CPUExecutionProvider", "TensorrtExecutionProvider", "CPU"
    provider: str  # what rows call where it ran: ONNX Runtime's provider, or "OpenVINO CPU"
    precision: str  # what the engine computes in: fp32 | fp16 | int8 | bf16 | BF16_EMULATED
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    cache_status: str  # "hit" | "stored" | "pending" | "miss" | "off": the engine's compiled-model cache
    notes: list[str]  # what loading did that the user should hear of (a provider that fell back)
    last_ms: float  # wall time of the last run

    def check(self, contract: ModelContract, name: str) -> None:
        """The graph against the model's contract (before anything runs or is cached)."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, ...) float32 in the contract's layout -> the graph's output (N, classes), any N."""

    def commit_cache(self) -> None:
        """Store what loading compiled, now that the model passed its checks."""

    def discard_pending(self) -> None:
        """Drop what loading compiled for the cache: the model was refused."""

    def close(self) -> None:
        """Release the engine's memory and threads."""


class BaseRunner:
    """What every runner does; an engine's runner implements ``_run`` (and, where it caches,
    ``commit_cache`` / ``discard_pending``) and sets the attributes of ``Runner``."""

    engine = ""
    device = ""
    precision = ""

    def __init__(self) -> None:
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.cache_status = "off"
        self.notes: list[str] = []
        self.last_ms = 0.0
        self._contract: ModelContract | None = None
        self._name = "model"
        self._fixed_batch: int | None = None
        self._width_checked = False

    @property
    def provider(self) -> str:
        return self.device

    def check(self, contract: ModelContract, name: str) -> None:
        checks.check(contract, self.inputs, self.outputs, name)
        self._contract, self._name, self._fixed_batch = contract, name, contract.model.batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        step = self._fixed_batch
        if not step or len(batch) == step:
            out = self._run(batch)
        else:  # a static-batch graph: whole batches, the last one padded with zeros
            outs = []
            for i in range(0, len(batch), step):
                chunk = batch[i : i + step]
                n = len(chunk)
                if n < step:
                    chunk = np.concatenate([chunk, np.zeros((step - n,) + chunk.shape[1:], chunk.dtype)])
                outs.append(self._run(chunk)[:n])
            out = np.concatenate(outs) if outs else np.zeros((0, self._contract.model.width), np.float32)
        if not self._width_checked and self._contract is not None and len(out):
            # graphs whose class dimension is symbolic: checked on the first run
            checks.check_output_width(self._contract, out.shape[-1] if out.ndim == 2 else -1, self._name)
            self._width_checked = True
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return out

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def commit_cache(self) -> None:
        pass

    def discard_pending(self) -> None:
        pass

    def close(self) -> None:
        self.discard_pending()
