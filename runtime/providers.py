"""Execution-provider policy: which ONNX Runtime providers to ask for, and in what order.

Pure functions over the list ``onnxruntime.get_available_providers()`` returns, so the
policy is unit-tested by injecting lists (no GPU needed). ONNX Runtime silently drops a
provider that fails to initialise (missing CUDA/TensorRT libraries, for instance), so
``check_used`` compares what a session really got with what was asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EdgeClassifyError

ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",  # the onnxruntime-openvino distribution
    "cpu": "CPUExecutionProvider",
}
SHORT = {v: k for k, v in ALIASES.items()}
AUTO_ORDER = ("tensorrt", "cuda", "openvino", "cpu")
# OpenVINO is used only when named. Measured with onnxruntime-openvino 1.24.1 on a 2-core
# AMD EPYC (AVX2), ResNet50 batch 1, same process: INT8 34.5 ms vs 37.1 ms on the CPU
# provider, but FP32 72.3 vs 68.9 ms, and creating an OpenVINO session takes about 1.0 s
# (its cache_dir did not shorten it) against about 0.1 s for the CPU provider with the
# optimised-graph cache. For a one-image `edge-classify` run that second outweighs any
# per-image gain, so `auto` stays on the CPU provider; long-running INT8 services on x86
# can name `--provider openvino`.
AUTO_SKIPS = ("openvino",)
CHOICES = ("auto",) + AUTO_ORDER


@dataclass(frozen=True)
class ProviderPlan:
    requested: str
    providers: list[tuple[str, dict]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.providers]

    @property
    def primary(self) -> str:
        return self.providers[0][0]


def default_trt_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edge-classify" / "trt-engines"


def plan_providers(requested: str, available: list[str], trt_options: dict | None = None) -> ProviderPlan:
    """Resolve ``auto|tensorrt|cuda|cpu`` against the available providers.

    ``auto`` takes TensorRT, then CUDA, then CPU, keeping each that is available (later
    ones run the nodes earlier ones cannot). A named provider must be available; the
    providers below it stay as fallbacks (TensorRT -> CUDA -> CPU). OpenVINO runs only
    when named (see AUTO_SKIPS).
    """
    requested = (requested or "auto").lower()
    if requested not in CHOICES:
        raise EdgeClassifyError(
            f"unknown provider {requested!r}", hint=f"choose one of: {', '.join(CHOICES)}", exit_code=2
        )
    avail_short = [SHORT[p] for p in available if p in SHORT]
    if requested != "auto" and requested not in avail_short:
        raise EdgeClassifyError(
            f"provider {requested!r} ({ALIASES[requested]}) is not available in this onnxruntime build",
            hint=f"available: {', '.join(avail_short) or 'none'}"
            + {"cpu": "", "openvino": "; for ONNX Runtime's OpenVINO provider install edge-classify[ort-openvino] instead of "
                            "[cpu], or use the OpenVINO runtime: --engine openvino (extra [openvino])"}.get(
                requested, "; for CUDA/TensorRT install edge-classify[gpu] (or the Jetson wheel)"),
        )
    # The chain starts at the requested provider (all of AUTO_ORDER for auto); providers in
    # AUTO_SKIPS join it only when they are the one requested.
    start = 0 if requested == "auto" else AUTO_ORDER.index(requested)
    chain = [p for p in AUTO_ORDER[start:] if p in avail_short and (p == requested or p not in AUTO_SKIPS)]
    if "cpu" not in chain:  # ORT appends CPU anyway; make it explicit so reports are honest
        chain.append("cpu")
    providers = [(ALIASES[p], dict(trt_options or {}) if p == "tensorrt" else {}) for p in chain]
    return ProviderPlan(requested, providers)


def check_used(plan: ProviderPlan, session_providers: list[str]) -> tuple[str, str | None]:
    """Return (provider actually used, warning or None); raise if an explicit request was dropped.

    ONNX Runtime logs and drops a provider it cannot initialise. For ``auto`` that is a
    warning (it still runs, on the next provider); for an explicit request it is an error.
    """
    used = session_providers[0] if session_providers else "CPUExecutionProvider"
    if used == plan.primary:
        return used, None
    msg = f"{SHORT.get(plan.primary, plan.primary)} was requested but failed to initialise; running on {SHORT.get(used, used)}"
    if plan.requested != "auto":
        raise EdgeClassifyError(
            msg, hint="check the CUDA/cuDNN/TensorRT libraries onnxruntime needs, or use --provider auto"
        )
    return used, msg
