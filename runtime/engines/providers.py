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
from typing import Callable

from ..errors import EXIT_USAGE, EdgeClassifyError
from ..host.deps import install_hint

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


# CUDA provider options for inference, all known to ONNX Runtime 1.14+ (JetPack 5's wheels
# included: an unknown key fails the session). cuDNN tries every convolution algorithm once
# per input shape and keeps the fastest (a slower first run of each batch size, then the
# best kernels); the memory arena grows by what is asked rather than doubling, which on a
# Jetson, whose GPU shares the board's RAM with the CPU, leaves that RAM to the rest.
CUDA_OPTIONS = {
    "cudnn_conv_algo_search": "EXHAUSTIVE",
    "cudnn_conv_use_max_workspace": "1",
    "arena_extend_strategy": "kSameAsRequested",
    "do_copy_in_default_stream": "1",
}

GPU_PROVIDERS = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda"}


@dataclass(frozen=True)
class ProviderPlan:
    requested: str
    providers: list[tuple[str, dict]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # listed by ONNX Runtime, left out by auto: why

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.providers]

    @property
    def primary(self) -> str:
        return self.providers[0][0]


def default_trt_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edge-classify" / "trt-engines"


def unusable_gpu_providers(listed: list[str], gpu_device: str | None,
                           library_error: Callable[[str], str | None]) -> dict[str, str]:
    """The GPU providers ONNX Runtime lists that cannot work here, with the reason.

    PyPI's ``onnxruntime-gpu`` lists TensorRT and CUDA whether or not a GPU, CUDA, cuDNN or
    TensorRT is installed; asking for them anyway makes every ``auto`` run print ONNX
    Runtime's load errors and its fallback banner. ``gpu_device`` is the GPU's device node
    (None: no NVIDIA GPU); ``library_error(short)`` why the provider's library does not load.
    """
    out = {}
    for name, short in GPU_PROVIDERS.items():
        if name not in listed:
            continue
        if gpu_device is None:
            out[name] = "no NVIDIA GPU on this machine (no /dev/nvidia0, /dev/nvhost-ctrl-gpu, /dev/nvgpu or /dev/dxg)"
            continue
        error = library_error(short)
        if error:
            out[name] = f"its libraries are not installed ({error})"
    return out


def plan_providers(requested: str, available: list[str], trt_options: dict | None = None,
                   unusable: dict[str, str] | None = None) -> ProviderPlan:
    """Resolve ``auto|tensorrt|cuda|cpu`` against the available providers.

    ``auto`` takes TensorRT, then CUDA, then CPU, keeping each that is available (later
    ones run the nodes earlier ones cannot) and not ``unusable`` (see
    ``unusable_gpu_providers``; those land in ``skipped``). A named provider must be
    available, and is tried even if it looks unusable; the providers below it stay as
    fallbacks (TensorRT -> CUDA -> CPU). OpenVINO runs only when named (see AUTO_SKIPS).
    """
    requested = (requested or "auto").lower()
    if requested not in CHOICES:
        raise EdgeClassifyError(
            f"unknown provider {requested!r}", hint=f"choose one of: {', '.join(CHOICES)}", exit_code=EXIT_USAGE
        )
    avail_short = [SHORT[p] for p in available if p in SHORT]
    if requested != "auto" and requested not in avail_short:
        raise EdgeClassifyError(
            f"provider {requested!r} ({ALIASES[requested]}) is not available in this onnxruntime build",
            hint=f"available: {', '.join(avail_short) or 'none'}"
            + {"cpu": "", "openvino": f"; for ONNX Runtime's OpenVINO provider: {install_hint('ort-openvino')} instead of "
                            "[cpu], or use the OpenVINO runtime: --engine openvino (extra [openvino])"}.get(
                requested, f"; for CUDA/TensorRT: {install_hint('gpu')} (or the Jetson wheel)"),
        )
    # The chain starts at the requested provider (all of AUTO_ORDER for auto); providers in
    # AUTO_SKIPS join it only when they are the one requested.
    start = 0 if requested == "auto" else AUTO_ORDER.index(requested)
    skipped = {name: why for name, why in (unusable or {}).items() if requested == "auto" and name in available}
    chain = [p for p in AUTO_ORDER[start:] if p in avail_short and (p == requested or p not in AUTO_SKIPS)
             and ALIASES[p] not in skipped]
    if "cpu" not in chain:  # ORT appends CPU anyway; make it explicit so reports are honest
        chain.append("cpu")
    options = {"tensorrt": trt_options or {}, "cuda": CUDA_OPTIONS}
    providers = [(ALIASES[p], dict(options.get(p, {}))) for p in chain]
    return ProviderPlan(requested, providers, skipped)


def check_used(plan: ProviderPlan, session_providers: list[str], reason: str | None = None) -> tuple[str, str | None]:
    """Return (provider actually used, warning or None); raise if an explicit request was dropped.

    ONNX Runtime logs and drops a provider it cannot initialise. For ``auto`` that is a
    warning (it still runs, on the next provider); for an explicit request it is an error.
    ``reason``: why the requested provider cannot work here, where known (a missing library,
    no GPU: ``unusable_gpu_providers``); without one, the hint does not guess at libraries.
    """
    used = session_providers[0] if session_providers else "CPUExecutionProvider"
    if used == plan.primary:
        return used, None
    short = SHORT.get(plan.primary, plan.primary)
    msg = f"{short} was requested but failed to initialise" + (f": {reason}" if reason else "")
    msg += f"; running on {SHORT.get(used, used)}"
    if plan.requested != "auto":
        if reason and "libraries" in reason:
            hint = ("install what ONNX Runtime's GPU build needs (CUDA, cuDNN, TensorRT: see "
                    "https://onnxruntime.ai/docs/execution-providers/), or use --provider auto")
        elif reason:
            hint = "use --provider auto (or cpu) on this machine"
        else:
            hint = (f"its libraries load and a GPU is present, so it failed while starting: "
                    f"`edge-doctor --model MODEL --provider {short}` shows ONNX Runtime's own message")
        raise EdgeClassifyError(msg, hint=hint)
    return used, msg
