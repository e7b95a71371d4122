"""The alternating timing loop behind every speed comparison: the engine choice
(``policy.measure``), export's ``--precision auto`` and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def alternate(calls: dict[str, Callable[[], object]], iterations: int, warmup: int = 1, gap_s: float = 0.01,
              progress: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Seconds per call, ``iterations`` rounds of every call after ``warmup`` untimed ones.

    Round-robin, the starting call rotating each round (A B C, B C A, C A B), so a noisy
    machine's drift and the slow first call of a round (up to 25% slower on a 2-core VM,
    whatever ran it) land on every candidate alike. An untimed ``gap_s`` pause before each
    call lets the previous one's worker threads go idle: without it, ONNX Runtime timed
    right after OpenVINO measured 137 ms instead of 44 (OpenVINO's TBB workers still
    spinning on the 2 cores).
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    step = max(1, iterations // 10)
    for i in range(iterations):
        start = i % len(names)
        for n in names[start:] + names[:start]:
            if gap_s:
                time.sleep(gap_s)
            t0 = time.perf_counter()
            calls[n]()
            samples[n].append(time.perf_counter() - t0)
        if progress and (i + 1) % step == 0:
            progress(f"{i + 1}/{iterations}")
    return samples
