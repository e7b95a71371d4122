"""Choosing a precision with evidence: fidelity against FP32 and latency on this machine.

``--precision auto`` builds the FP16 and INT8 candidates, measures each one's top-1
agreement with FP32 on held-out images and its batch-1 latency here, and keeps the
fastest one that clears the agreement bar. FP32 always clears it, so there is always
an answer. The decision and its numbers go into the model's metadata.
"""

from __future__ import annotations

import platform
import statistics

import numpy as np

DEFAULT_AGREEMENT_BAR = 0.99


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
    from edge_classify.benchmarks.stats import alternate

    first = next(iter(classifiers.values()))
    h, w = first.contract.preprocess.input_size
    shape = (h, w, 3) if first.contract.preprocess.layout == "NHWC" else (3, h, w)
    x = np.random.default_rng(0).uniform(-120, 150, (1,) + shape).astype(np.float32)
    samples = alternate({n: (lambda c=c: c.run(x)) for n, c in classifiers.items()}, iterations, warmup=1, gap_s=0.01)
    return {n: statistics.median(v) * 1e3 for n, v in samples.items()}


def choose(agreement: dict[str, float], latency_ms: dict[str, float], bar: float) -> tuple[str, str]:
    """(chosen precision, one-line reason): fastest whose top-1 agreement >= bar."""
    passing = [p for p in latency_ms if agreement.get(p, 0.0) >= bar]
    chosen = min(passing, key=lambda p: latency_ms[p])
    rejected = [f"{p} (agreement {agreement[p]:.3f} < {bar})" for p in latency_ms if p not in passing]
    reason = (f"{chosen} is the fastest candidate with top-1 agreement >= {bar} "
              f"({latency_ms[chosen]:.1f} ms p50 batch 1 on this machine)")
    if rejected:
        reason += "; rejected: " + ", ".join(rejected)
    return chosen, reason
