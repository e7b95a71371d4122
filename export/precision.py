"""Choosing a precision with evidence: fidelity against FP32 and latency on this machine.

``--precision auto`` builds the FP16 and INT8 candidates (and, on a CPU with native BF16
and OpenVINO installed, BF16: the FP32 file run by OpenVINO in bf16), measures each one's
top-1 agreement with FP32 on held-out images and its batch-1 latency here, and keeps the
fastest one that clears the agreement bar. FP32 always clears it, so there is always
an answer. The decision and its numbers go into the model's metadata.

**BF16 is a precision of its own, never a silent substitute.** No BF16 file exists: BF16
is a way to run the FP32 file. Its fidelity is measured at export (``measure_bf16``) and
stored in the FP32 model's contract as ``parity["bf16"]``; the runtime
(``runtime/policy.compute_precision``) runs BF16 with ``--precision auto`` only when that
figure is there and passed. Where BF16 cannot be measured (no OpenVINO, or a CPU where
OpenVINO computes f32 when told bf16) the model gets no figure, so the runtime never runs
BF16 for it. On a CPU that only emulates bf16 (AVX-512 without AVX512-BF16/AMX) BF16 is no
``auto`` candidate; ``--bf16`` measures the emulated form, its fidelity and its speed
against OpenVINO's f32, and records it as emulated: a figure that never passes.
"""

from __future__ import annotations

import platform
import statistics

import numpy as np

from edge_classify.runtime.engines.runners import BF16_EMULATED
from edge_classify.runtime.engines.timing import alternate

DEFAULT_AGREEMENT_BAR = 0.99
BF16_LABEL = "bf16 (runs the FP32 file with OpenVINO in BF16)"


def int8_activations(requested: str) -> str:
    """``auto`` -> ``u8`` on x86-64, ``s8`` elsewhere.

    Measured on a 2-core AVX2 x86 CPU (ResNet50 batch 1, onnxruntime 1.32): FP32 63 ms,
    INT8 with symmetric int8 activations 74-91 ms (slower than FP32), INT8 with uint8
    activations 37-42 ms. ARM CPUs and TensorRT take int8 activations; TensorRT accepts
    only symmetric int8 (zero point 0), so export for Jetson with ``s8``.
    """
    if requested != "auto":
        return requested
    return "u8" if platform.machine().lower() in ("x86_64", "amd64") else "s8"


def latency_p50_ms(classifiers: dict, iterations: int = 20) -> dict[str, float]:
    """Batch-1 p50 of each candidate ``Classifier`` on this machine, in alternating rounds."""
    first = next(iter(classifiers.values()))
    x = np.random.default_rng(0).uniform(-120, 150, first.contract.preprocess.input_shape(1)).astype(np.float32)
    samples = alternate({n: (lambda c=c: c.run(x)) for n, c in classifiers.items()}, iterations, warmup=1, gap_s=0.01)
    return {n: statistics.median(v) * 1e3 for n, v in samples.items()}


def choose(agreement: dict[str, float], latency_ms: dict[str, float], bar: float,
           floors: dict[str, float] | None = None) -> tuple[str, str]:
    """(chosen precision, one-line reason): fastest whose top-1 agreement >= its bar.

    A candidate's bar is ``max(bar, floors[candidate])``: BF16's never drops below the
    runtime's (``policy.BF16_BAR``), or export would choose a BF16 the runtime refuses.
    """
    floors = floors or {}

    def bar_of(p: str) -> float:
        return max(bar, floors.get(p, 0.0))

    passing = [p for p in latency_ms if agreement.get(p, 0.0) >= bar_of(p)]
    chosen = min(passing, key=lambda p: latency_ms[p])
    rejected = [f"{p} (agreement {agreement[p]:.3f} < {bar_of(p)})" for p in latency_ms if p not in passing]
    reason = (f"{chosen} is the fastest candidate with top-1 agreement >= {bar} "
              f"({latency_ms[chosen]:.1f} ms p50 batch 1 on this machine)")
    if chosen == "bf16":
        reason = reason.replace("bf16 is", f"{BF16_LABEL} is", 1)
    if rejected:
        reason += "; rejected: " + ", ".join(rejected)
    return chosen, reason


# --- BF16: measured, gated, recorded ----------------------------------------------------
def bf16_support(facts=None) -> tuple[bool, str]:
    """(can native BF16 be measured here, why not), for the machine ``facts`` describe
    (``host.facts.MachineFacts``; default: this one)."""
    from edge_classify.runtime.host.deps import install_hint
    from edge_classify.runtime.host.facts import MachineFacts

    facts = facts or MachineFacts()
    if "openvino" not in facts.installed_engines():
        return False, f"OpenVINO is not installed ({install_hint('openvino')}), and only OpenVINO runs BF16"
    if not facts.bf16():
        return False, f"this CPU ({cpu_name()}) has no native BF16 (AMX-BF16 or AVX512-BF16)"
    return True, ""


def cpu_name() -> str:
    from edge_classify.runtime.engines import policy

    return policy.cpu_signature().split("|", 1)[0] or platform.machine()


def bf16_classifier(fp32_model: bytes):
    """The FP32 model run by OpenVINO with the bf16 inference hint, whatever the CPU (facts
    claiming native BF16 let the hint through the runtime's policy); its ``runner.precision``
    says what OpenVINO then computes: bf16, ``BF16_EMULATED`` or fp32 (its own report)."""
    from edge_classify.runtime import Classifier, EngineOptions, MachineFacts

    return Classifier(fp32_model, EngineOptions(engine="openvino", precision="bf16"),
                      facts=MachineFacts(native_bf16=True))


def bf16_fidelity(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Top-1 agreement, top-5 overlap, max/mean |dp| of BF16 against FP32 (as for INT8)."""
    from .quantize import fidelity

    return fidelity(reference, candidate)


def measure_bf16(classifier, images: list, reference: np.ndarray, bar: float,
                 reference_text: str = "fp32 ONNX (ONNX Runtime CPU) on the verification photos") -> dict:
    """BF16's fidelity figure for the FP32 model's contract (``parity["bf16"]``).

    ``classifier``: ``bf16_classifier(fp32 bytes)``; ``reference``: the FP32 ONNX model's
    probabilities on ``images``. ``bar`` is never below the runtime's own floor.
    """
    from edge_classify.runtime.engines import policy

    f = bf16_fidelity(reference, classifier.predict(images))
    bar = max(bar, policy.BF16_BAR)
    ran = classifier.runner.precision  # what OpenVINO says it computed
    extra = {}
    if ran == BF16_EMULATED:  # the pipeline adds its speed (emulated_speed)
        extra = {"not_bf16": "OpenVINO emulated bf16 on this CPU (no native BF16): not evidence about native BF16"}
    elif ran != "bf16":
        extra = {"not_bf16": f"OpenVINO computed {ran or 'an unknown precision'}, not bf16: "
                             "this is not a BF16 measurement"}
    return {
        "reference": reference_text,
        **f,
        "image_files": [getattr(p, "name", str(p)) for p in images],
        "bar": bar,
        "passed": f["top1_agreement"] >= bar and ran == "bf16",
        **extra,
        "engine": "openvino",
        "openvino": policy.engine_versions(["openvino"]).get("openvino", ""),
        "openvino_precision": ran,
        "cpu": cpu_name(),
    }


def emulated_speed(bf16_clf, fp32_model: bytes) -> dict:
    """Batch-1 p50 of emulated bf16 against OpenVINO's own f32 on the same file, so that the
    figure says what emulation costs here (never chosen either way)."""
    from edge_classify.runtime import Classifier, EngineOptions

    f32 = Classifier(fp32_model, EngineOptions(engine="openvino", precision="fp32"))
    try:
        ms = latency_p50_ms({"bf16": bf16_clf, "fp32": f32})
    finally:
        f32.runner.close()
    return {"p50_ms_batch1": ms["bf16"], "fp32_p50_ms_batch1": ms["fp32"], "engine": "openvino"}


def describe_bf16(f: dict) -> str:
    """One line for progress and summaries."""
    if "emulated" in f:
        e = f["emulated"]
        return (f"bf16 emulated by OpenVINO on this CPU (no native BF16) vs FP32 on {f['images']} photos: top-1 "
                f"agreement {f['top1_agreement']:.1%}, max|dp| {f['max_abs_diff']:.2e}; {e['p50_ms_batch1']:.1f} ms "
                f"p50 batch 1 against {e['fp32_p50_ms_batch1']:.1f} ms in f32 "
                f"({e['p50_ms_batch1'] / e['fp32_p50_ms_batch1']:.2f}x); recorded as emulated, never run: "
                "the runtime keeps FP32 for this model")
    verdict = (f"passed (>= {f['bar']}): edge-classify may run it in BF16 with OpenVINO on CPUs with native BF16"
               if f["passed"] else f"FAILED (< {f['bar']}): the runtime keeps FP32 for this model")
    return (f"{BF16_LABEL} vs FP32 on {f['images']} photos: top-1 agreement {f['top1_agreement']:.1%}, "
            f"top-5 overlap {f['top5_overlap']:.1%}, max|dp| {f['max_abs_diff']:.2e}; {verdict}")
