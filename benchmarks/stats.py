"""Percentiles and the alternating timing loop every comparison uses."""

from __future__ import annotations

import time
from collections.abc import Callable

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


def round_robin(calls: dict[str, Callable[[], list[float]]], rounds: int, gap_s: float = 0.02,
                progress: Callable[[str], None] | None = None) -> dict[str, list[list[float]]]:
    """Like ``alternate``, for calls that time themselves (a worker process returns the
    samples it measured): ``rounds`` rounds, the starting system rotating every round, an
    untimed ``gap_s`` pause before each call. Returns each system's samples per round."""
    names = list(calls)
    out: dict[str, list[list[float]]] = {name: [] for name in names}
    step = max(1, rounds // 5)
    for r in range(rounds):
        start = r % len(names)
        for name in names[start:] + names[:start]:
            if gap_s:
                time.sleep(gap_s)
            out[name].append(list(calls[name]()))
        if progress and (r + 1) % step == 0:
            progress(f"round {r + 1}/{rounds}")
    return out


def summarize_rounds(per_round: list[list[float]]) -> dict:
    """``summarize`` over all samples, plus each round's median (what per-round ratios use)."""
    flat = [t for r in per_round for t in r]
    return {**summarize(flat), "rounds": len(per_round),
            "round_p50_ms": [float(np.median(r)) * 1e3 for r in per_round]}


def spread(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "p25": float(np.percentile(a, 25)), "p75": float(np.percentile(a, 75)),
            "min": float(a.min()), "max": float(a.max()), "rounds": int(a.size)}


def round_ratios(numerator: list[float], denominator: list[float]) -> dict:
    """Median and spread of ``numerator[r] / denominator[r]`` over rounds ``r``.

    Both were measured in the same round, seconds apart, so a round where the machine was
    slow for everyone cancels out; the ratio of two medians taken over the whole run does
    not, and on this VM batch-1 p50 moved by up to 40% between runs.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("per-round ratios need the same, non-zero number of rounds")
    return spread([n / d for n, d in zip(numerator, denominator)])
