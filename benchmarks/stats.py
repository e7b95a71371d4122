"""Percentiles, per-round ratios, and the round-robin over worker processes (the in-process
loop is ``edge_classify.runtime.engines.timing.alternate``)."""

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


def round_robin(calls: dict[str, Callable[[], list[float]]], rounds: int, gap_s: float = 0.02,
                progress: Callable[[str], None] | None = None) -> dict[str, list[list[float]]]:
    """Like ``runtime.timing.alternate``, for calls that time themselves (a worker process returns the
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
