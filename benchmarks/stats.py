"""Percentiles and the alternating timing loop every comparison uses."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def summarize(samples_s: list[float]) -> dict:
    """Seconds in, milliseconds out: min, p50, p90, p99, mean over ``n`` samples."""
    a = np.asarray(samples_s, dtype=np.float64) * 1e3
    return {
        "n": int(a.size),
        "min_ms": float(a.min()),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
    }


def alternate(calls: dict[str, Callable[[], object]], iterations: int, warmup: int = 3,
              progress: Callable[[str], None] | None = None, gap_s: float = 0.02) -> dict[str, list[float]]:
    """Time each call ``iterations`` times, round-robin (A B C A B C ...), after warm-up.

    Round-robin means slow drift of a noisy machine (thermal, neighbours) lands on every
    system alike, so within-run ratios stay fair even when absolute numbers wobble. The
    starting system rotates every round (A B C, B C A, C A B): on this 2-core VM the first
    call of a round measured up to 25% slower whatever system it was, so a fixed order
    would bill that to one system. An untimed ``gap_s`` pause before each call lets the
    previous system's worker threads go idle.
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    step = max(1, iterations // 10)
    names = list(calls)
    for i in range(iterations):
        start = i % len(names)
        for name in names[start:] + names[:start]:
            fn = calls[name]
            if gap_s:
                time.sleep(gap_s)
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
        if progress and (i + 1) % step == 0:
            progress(f"{i + 1}/{iterations}")
    return samples
