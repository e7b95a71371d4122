"""Engine policy: which inference engine runs a model, and in which precision.

Pure functions over injected facts (installed engines, ONNX Runtime's providers, whether
the CPU has BF16), so the policy is tested without the hardware.

``--engine auto``:

1. An explicit ONNX Runtime provider (``--provider cpu|cuda|tensorrt|openvino``), or an
   available GPU provider (TensorRT, CUDA), means ONNX Runtime.
2. With one engine installed, that one.
3. A run of up to ``SMALL_RUN`` images (the CLI passes the count): ONNX Runtime, without
   measuring; start-up outweighs inference there (``small_run``).
4. Otherwise, with both, the faster **measured on this machine**: the first three runs of
   a model time both engines (batch 1 and a small batch, alternating, 1-3 s per run for
   ResNet50; ``export-model`` does them for the files it writes), and the choice, made on
   the medians, is stored in the cache home, keyed by the model's sha256, the CPU (model
   name and flags), both engines' versions and the request. A new model, CPU or engine
   version measures again. Where nothing can be stored (``EDGE_CLASSIFY_NO_CACHE=1``, an
   untrusted cache folder) it uses the prior below instead of measuring on every run.

An INT8 file is a candidate on an engine only with that engine's own fidelity figure
(``unverified``): engines quantize differently, and the export's gate describes the engine
it measured.

The prior, from measurements on the two machine kinds (ResNet50, 2 cores): INT8 files
run faster on OpenVINO (AMD EPYC AVX2: 21.9 vs 23.8 ms batch 1; Xeon AMX: 5.9 vs 11.7 ms).
FP32 files: OpenVINO 8% faster on the AVX2 machine (39.6 vs 43.4 ms), 7% slower in f32 on
the AVX-512 one (32.9 vs 30.5 ms); without a cache OpenVINO also compiles on every start,
so ONNX Runtime, unless BF16 is allowed, which only OpenVINO runs.

**BF16 is never a silent substitute** (``compute_precision``): OpenVINO computes FP32 by
default here; BF16 runs when asked for (``--precision bf16``) or, with ``auto``, only on a
CPU with native BF16 and only for a model whose export measured native BF16's top-1
agreement with FP32 and found it at or above the bar (``parity["bf16"]`` in the contract).
Emulated bf16 (an AVX-512 CPU without AVX512-BF16/AMX) is never run and never evidence.
"""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import EXIT_MODEL, EXIT_USAGE, EdgeClassifyError
from ..host import cpu
from ..host.deps import install_hint
from ..host.facts import ENGINES
from .providers import GPU_PROVIDERS
from .runners import BF16_EMULATED
from .timing import alternate

CHOICES = ("auto",) + ENGINES
PRECISIONS = ("auto", "fp32", "bf16")
BF16_BAR = 0.99  # top-1 agreement with FP32 on held-out photos, as for FP16 and INT8
_INSTALL = {
    "onnxruntime": f"{install_hint('cpu')} (or [gpu] for CUDA/TensorRT)",
    "openvino": f"{install_hint('openvino')} (the OpenVINO runtime, beside onnxruntime)",
}


@dataclass
class EngineChoice:
    engine: str
    reason: str
    measured: dict = field(default_factory=dict)  # engine -> {"batch1_ms": .., "batchN_ms_per_image": .., "n": ..}
    samples: list = field(default_factory=list)  # the measurements behind ``measured`` (one per run)
    fresh: bool = False  # measured in this run

    @property
    def settled(self) -> bool:
        return len(self.samples) >= SAMPLES


def check_requested(requested: str, available: list[str], provider: str, device: str | None = None) -> str:
    """The engine request, validated; a ``device`` (OpenVINO's: CPU, GPU, NPU, ...) means OpenVINO."""
    requested = (requested or "auto").lower()
    if requested not in CHOICES:
        raise EdgeClassifyError(f"unknown engine {requested!r}", hint=f"choose one of: {', '.join(CHOICES)}",
                                exit_code=EXIT_USAGE)
    if device:
        if requested == "onnxruntime":
            raise EdgeClassifyError(f"--device {device} is an OpenVINO device; ONNX Runtime takes --provider",
                                    hint="drop --device, or use --engine openvino", exit_code=EXIT_USAGE)
        requested = "openvino"
    if requested != "auto" and requested not in available:
        raise EdgeClassifyError(
            f"engine {requested!r} is not installed",
            hint=f"installed: {', '.join(available) or 'none'}; to add it: {_INSTALL[requested]}",
            exit_code=EXIT_MODEL)
    if requested == "openvino" and (provider or "auto") not in ("auto", "cpu"):
        raise EdgeClassifyError(
            f"--provider {provider} is an ONNX Runtime provider; the openvino engine has its own devices",
            hint="use --engine onnxruntime with --provider, or --engine openvino alone", exit_code=EXIT_USAGE)
    if not available:
        raise EdgeClassifyError("no inference engine is installed", hint=_INSTALL["onnxruntime"])
    return requested


def decide_without_measuring(requested: str, available: list[str], provider: str,
                             ort_providers: list[str]) -> EngineChoice | None:
    """The engine when the policy needs no measurement (steps 1-2 above), else None."""
    if requested != "auto":
        return EngineChoice(requested, f"--engine {requested}")
    if (provider or "auto") != "auto":
        return EngineChoice("onnxruntime", f"--provider {provider} is an ONNX Runtime provider")
    if "onnxruntime" in available and any(p in ort_providers for p in GPU_PROVIDERS):
        return EngineChoice("onnxruntime", "a GPU provider is available to ONNX Runtime")
    if len(available) == 1:
        return EngineChoice(available[0], f"the only engine installed ({available[0]})")
    return None


def unverified(engine: str, file_precision: str, parity: dict | None) -> str | None:
    """Why ``auto`` may not run this quantized model on ``engine``, or None.

    An INT8 file's fidelity figure was measured on one engine (ONNX Runtime, unless the
    figure names another), and engines quantize differently: on the stand-in ResNet50 the
    same QDQ file agreed with FP32 on 67% of photos under ONNX Runtime and 58% under
    OpenVINO. So another engine is a candidate only with its own figure, within one point
    of the measured one and at or above the export's bar. Naming the engine still runs it.
    """
    parity = parity or {}
    if file_precision != "int8" or engine == parity.get("engine", "onnxruntime"):
        return None
    figure = (parity.get("engines") or {}).get(engine) or {}
    got = figure.get("top1_agreement")
    if not isinstance(got, (int, float)):
        return f"the model has no INT8 fidelity figure for {engine} (export it with {engine} installed)"
    ref = parity.get("top1_agreement")
    need = max([x for x in (parity.get("min_agreement"), (ref - 0.01) if isinstance(ref, (int, float)) else None)
                if isinstance(x, (int, float))] or [0.0])
    if got < need:
        return f"{engine}'s INT8 top-1 agreement with FP32 is {got:.3f}, below {need:.3f}"
    return None


def prior(file_precision: str, bf16: bool) -> EngineChoice:
    """Without a cache to remember a measurement in (see the module docstring)."""
    if bf16:
        return EngineChoice("openvino", "prior: BF16 is allowed for this model and only OpenVINO runs it")
    if file_precision == "int8":
        return EngineChoice("openvino", "prior: INT8 files run faster on OpenVINO on the x86 CPUs measured")
    return EngineChoice("onnxruntime", "prior: FP32/FP16 speeds differ by CPU, and without a cache "
                                       "OpenVINO compiles on every start")


TIE = 0.03  # OpenVINO must be this much faster to be picked (see pick)
# Runs that measure. One run can land on a busy moment: with two other jobs on the 2 cores,
# ResNet50 FP32 measured 125 ms (ONNX Runtime) vs 75 ms (OpenVINO) instead of a 43.6/43.7
# tie, and a single sample would have fixed that choice for good. So the first SAMPLES runs
# of a model each measure, and the choice is made on the medians.
SAMPLES = 3
SMALL_RUN = 16  # images up to which start-up decides (see small_run)


def combine(samples: list[dict]) -> dict:
    """Per engine and metric, the median over the runs that measured."""
    engines_seen = set.intersection(*(set(s) for s in samples)) if samples else set()
    return {e: {k: statistics.median(s[e][k] for s in samples) for k in ("batch1_ms", "batchN_ms_per_image")}
            | {"n": samples[-1][e]["n"], "runs": len(samples)} for e in sorted(engines_seen)}


def small_run(images: int | None, candidates: list[str]) -> EngineChoice | None:
    """ONNX Runtime for a run of up to ``SMALL_RUN`` images (the CLI knows how many), without
    measuring anything: there start-up outweighs inference, and ONNX Runtime starts leaner
    and sooner. Cold one-image runs on a 2-core AMD EPYC: ResNet50 FP32 0.52 s / 190 MiB vs
    OpenVINO's 0.61 s / 336 MiB, INT8 0.36 s / 137 MiB vs 0.52 s / 194 MiB, while per-image
    differences were 3-4 ms (FP32 45.0 vs 41.9 ms)."""
    if images is None or images > SMALL_RUN or "onnxruntime" not in candidates:
        return None
    return EngineChoice("onnxruntime", f"a run of {images} image{'s' if images > 1 else ''}: start-up outweighs "
                                       "inference, and ONNX Runtime starts leaner")


def pick(measured: dict) -> EngineChoice:
    """The engine with the lower geometric mean of per-image time at batch 1 and batch N;
    within ``TIE`` of each other, ONNX Runtime (it starts leaner: ``small_run``)."""
    def score(m):
        return (m["batch1_ms"] * m["batchN_ms_per_image"]) ** 0.5

    best = min(sorted(measured), key=lambda e: score(measured[e]))
    if best != "onnxruntime" and "onnxruntime" in measured and \
            score(measured[best]) > (1 - TIE) * score(measured["onnxruntime"]):
        best = "onnxruntime"
    text = ", ".join(f"{e} {m['batch1_ms']:.1f} ms (batch 1), {m['batchN_ms_per_image']:.1f} ms/image "
                     f"(batch {m['n']})" for e, m in sorted(measured.items()))
    return EngineChoice(best, f"measured on this machine: {text}", measured)


def compute_precision(requested: str, engine: str, file_precision: str, hw_bf16: bool,
                      bf16_fidelity: dict | None) -> tuple[str, str]:
    """("fp32" | "bf16", why) for the arithmetic of a float model; INT8 files keep f32 for
    their non-quantized parts (OpenVINO would otherwise use bf16 there on AMX CPUs)."""
    requested = (requested or "auto").lower()
    if requested not in PRECISIONS:
        raise EdgeClassifyError(f"unknown precision {requested!r}", hint=f"choose one of: {', '.join(PRECISIONS)}",
                                exit_code=EXIT_USAGE)
    if requested == "fp32":
        return "fp32", "--precision fp32"
    if requested == "bf16":
        if engine != "openvino":
            raise EdgeClassifyError("--precision bf16 runs on the openvino engine only",
                                    hint=f"add --engine openvino ({install_hint('openvino')})",
                                    exit_code=EXIT_USAGE)
        if not hw_bf16:
            raise EdgeClassifyError("this CPU has no native BF16 (AMX-BF16 or AVX512-BF16)",
                                    hint="use --precision fp32 or auto", exit_code=EXIT_MODEL)
        if file_precision != "fp32":
            raise EdgeClassifyError(f"--precision bf16 needs the FP32 model, not the {file_precision} one",
                                    exit_code=EXIT_USAGE)
        return "bf16", "--precision bf16"
    agreement = (bf16_fidelity or {}).get("top1_agreement")
    if engine != "openvino" or file_precision != "fp32" or not hw_bf16:
        return "fp32", "BF16 not applicable (needs the openvino engine, an FP32 model and a CPU with BF16)"
    if not isinstance(agreement, (int, float)):
        return "fp32", "no BF16 fidelity figure in the model (export it with --bf16 on a BF16 CPU)"
    ran = (bf16_fidelity or {}).get("openvino_precision", "bf16")
    if ran == BF16_EMULATED:
        return "fp32", ("the model's BF16 figure was measured on a CPU that emulates bf16 (no native BF16): "
                        "not evidence about native BF16")
    if ran != "bf16":  # measured on a CPU where OpenVINO computed something else: not a BF16 figure
        return "fp32", f"the model's BF16 figure was measured while OpenVINO computed {ran}, not bf16"
    bar = (bf16_fidelity or {}).get("bar", BF16_BAR)
    if agreement < max(bar, BF16_BAR):
        return "fp32", f"BF16 top-1 agreement {agreement:.3f} is below {max(bar, BF16_BAR)}"
    return "bf16", f"BF16 top-1 agreement with FP32 {agreement:.3f} >= {max(bar, BF16_BAR)} (measured at export)"


# --- the measured choice, remembered per machine --------------------------------------
def cpu_signature() -> str:
    model, flags = cpu.info()
    return f"{model or platform.machine()}|{' '.join(sorted(flags.split()))}"


def engine_versions(available: list[str]) -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for e in available:
        for dist in ((e,) if e == "openvino" else ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino")):
            try:
                out[e] = md.version(dist)
                break
            except md.PackageNotFoundError:
                continue
    return out


def choice_key(model_sha256: str, cpu: str, versions: dict[str, str], precision_request: str,
               threads: int | None) -> str:
    text = json.dumps([1, model_sha256, cpu, sorted(versions.items()), precision_request, threads or 0])
    return hashlib.sha256(text.encode()).hexdigest()[:40] + ".engine"


def load_choice(cache, key: str) -> EngineChoice | None:
    text = cache.read_record(key) if cache is not None else None
    try:
        data = json.loads(text) if text else None
        if data and data.get("engine") in ENGINES:
            samples = [x for x in data.get("samples", []) if isinstance(x, dict)][-SAMPLES:]
            return EngineChoice(data["engine"], "measured on this machine earlier: " + data.get("reason", ""),
                                data.get("measured", {}), samples)
    except (ValueError, AttributeError):
        pass
    return None


def save_choice(cache, key: str, choice: EngineChoice) -> None:
    if cache is not None:
        reason = choice.reason.split(": ", 1)[-1]
        cache.write_record(key, json.dumps({"engine": choice.engine, "reason": reason,
                                            "measured": choice.measured, "samples": choice.samples,
                                            "created": time.time()}))


def measure(runners: dict, sample: np.ndarray, batch: int, rounds: int = 7, gap_s: float = 0.03) -> dict:
    """Per-image time of each runner at batch 1 and at ``batch``, alternating so drift lands
    on both (``timing.alternate``). ``sample``: one preprocessed image, shape (1, ...)."""
    xn = np.repeat(sample, batch, axis=0)
    # Warm-up inside each phase: first runs allocate and, for OpenVINO, compile that size.
    t1 = alternate({n: (lambda r=r: r.run(sample)) for n, r in runners.items()}, rounds, warmup=1, gap_s=gap_s)
    tn = alternate({n: (lambda r=r: r.run(xn)) for n, r in runners.items()}, max(2, rounds // 3), warmup=1,
                   gap_s=gap_s)
    return {n: {"batch1_ms": statistics.median(t1[n]) * 1e3,
                "batchN_ms_per_image": statistics.median(tn[n]) / batch * 1e3, "n": batch} for n in runners}
