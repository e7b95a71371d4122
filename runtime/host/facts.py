"""What this machine offers the engines, in one object: ``MachineFacts``.

The loader (engines/loader.py) and the export ask it which engines are installed, which
providers ONNX Runtime lists, whether an NVIDIA GPU is present and its provider libraries
load, and whether OpenVINO finds native BF16. A fact left as ``PROBE`` is asked of the
machine when first needed, so an ONNX Runtime run never imports OpenVINO; the probes that
cost (a dlopen, nvidia-smi, OpenVINO's capabilities) run once per process, the others
(an import lookup, ONNX Runtime's provider list) are cheap and asked as needed. Tests state the machine they mean: ``MachineFacts(engines=("onnxruntime",),
native_bf16=True)``.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Any, Mapping

from . import deps, gpu

ENGINES = ("onnxruntime", "openvino")  # the engines' Python packages, in the policy's order


class _Probe:
    def __repr__(self) -> str:
        return "PROBE"


PROBE: Any = _Probe()


@dataclass(frozen=True)
class MachineFacts:
    engines: tuple = PROBE  # installed engines, of ENGINES
    ort_providers: tuple = PROBE  # what onnxruntime.get_available_providers() lists
    gpu_device: str | None = PROBE  # an NVIDIA GPU's device node, None: no GPU
    library_errors: Mapping = PROBE  # short provider name ("cuda", "tensorrt") -> why its library does not load
    native_bf16: bool = PROBE  # OpenVINO lists BF16 among the device's capabilities (AMX / AVX512-BF16)

    def installed_engines(self) -> list[str]:
        return list(installed_engines() if self.engines is PROBE else self.engines)

    def onnxruntime_providers(self) -> list[str]:
        if self.ort_providers is not PROBE:
            return list(self.ort_providers)
        return onnxruntime_providers() if "onnxruntime" in self.installed_engines() else []

    def nvidia_gpu(self) -> str | None:
        return gpu.nvidia_gpu_device() if self.gpu_device is PROBE else self.gpu_device

    def library_error(self, short: str) -> str | None:
        return gpu.provider_library_error(short) if self.library_errors is PROBE else self.library_errors.get(short)

    def bf16(self, device: str = "CPU") -> bool:
        return openvino_native_bf16(device) if self.native_bf16 is PROBE else bool(self.native_bf16)


def installed_engines() -> list[str]:
    """Engines importable here, found without importing them (an import costs cold-start time)."""
    return [e for e in ENGINES if importlib.util.find_spec(e) is not None]


def onnxruntime_providers() -> list[str]:
    return list(deps.onnxruntime().get_available_providers())


@functools.lru_cache(maxsize=None)
def openvino_native_bf16(device: str = "CPU") -> bool:
    """Does OpenVINO find native BF16 on this device (AMX-BF16 / AVX512-BF16)? Its
    OPTIMIZATION_CAPABILITIES lists BF16 only then, not where it would emulate bf16."""
    try:
        return "BF16" in deps.openvino_core().get_property(device, "OPTIMIZATION_CAPABILITIES")
    except Exception:  # an unknown device or property: no BF16 claimed
        return False
