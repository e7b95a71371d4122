"""Latency, throughput and the isolation check, across worker processes (pool.py).

Every measurement is a series of rounds: in each round every worker is asked, in turn
(the starting one rotating), to time ``iterations`` calls; an untimed pause comes before
each request. The round's median per system is what per-round ratios compare.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pool import slug
from .stats import round_robin, summarize_rounds


def write_inputs(folder: Path, batches: list[int]) -> dict[int, Path]:
    """The input tensors, one .npy per batch size, shared by every worker: the same
    uniform noise in the model's input range (speed does not depend on pixel values)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for b in batches:
        seed = 0 if b == 1 else 1
        x = np.random.default_rng(seed).uniform(-120, 150, (b, 224, 224, 3)).astype(np.float32)
        paths[b] = folder / f"x_batch{b}.npy"
        np.save(paths[b], x)
    return paths


def outputs(workers, x_path: Path, folder: Path, reference: str) -> dict[str, dict]:
    """One untimed-by-the-rounds call per worker (its first inference), output saved;
    max |difference| of each output from ``reference``'s."""
    folder.mkdir(parents=True, exist_ok=True)
    firsts, saved = {}, {}
    for w in workers:
        saved[w.name] = folder / f"{slug(w.label)}.npy"
        reply = w.request("output", input=str(x_path), save=str(saved[w.name]))
        w.meta["info"] = reply.get("info", w.meta.get("info"))
        firsts[w.name] = reply["ms"]
    ref = np.load(saved[reference]) if reference in saved else None
    return {n: {"first_inference_ms": firsts[n],
                "max_abs_diff_vs_keras": float(np.abs(np.load(saved[n]) - ref).max()) if ref is not None else None}
            for n in saved}


def timed_rounds(workers, x_path: Path, rounds: int, iterations: int, warmup: int, gap_s: float,
                 say=None, ready_run: bool = True) -> dict[str, dict]:
    for w in workers:
        w.run(x_path, 0, warmup, ready_run)
    calls = {w.name: (lambda w=w: w.run(x_path, iterations, ready_run=ready_run)) for w in workers}
    per_round = round_robin(calls, rounds, gap_s, progress=say)
    return {n: {**summarize_rounds(v), "iterations_per_round": iterations} for n, v in per_round.items()}


def latency(workers, x1: Path, plan: dict, say) -> dict[str, dict]:
    rounds, iters = plan["latency"]
    return timed_rounds(workers, x1, rounds, iters, warmup=3, gap_s=plan["gap_s"], say=lambda m: say(f"latency {m}"))


def throughput(workers, inputs: dict[int, Path], plan: dict, say) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for batch, (rounds, iters) in plan["throughput"].items():
        res = timed_rounds(workers, inputs[batch], rounds, iters, warmup=plan["throughput_warmup"],
                           gap_s=plan["gap_s"], ready_run=plan["ready_run"])
        for name, st in res.items():
            out.setdefault(name, {})[str(batch)] = {
                "images_per_s": batch / (st["p50_ms"] / 1e3), **st,
                "round_images_per_s": [batch / (t / 1e3) for t in st["round_p50_ms"]]}
        say(f"batch {batch}: " + ", ".join(f"{n} {out[n][str(batch)]['images_per_s']:.1f}" for n in res) + " img/s")
    return out


def isolation(pool, name: str, x1: Path, plan: dict, in_rotation: dict, say) -> dict:
    """The same latency measurement of ``name`` with every other worker shut down.

    Idle workers sit blocked on a pipe read; if they did take CPU or cache from the one
    being timed, it would run faster alone, and solo/in-rotation would fall below 1.
    """
    pool.close(keep=(name,))
    rounds, iters = plan["latency"]
    solo = timed_rounds([pool[name]], x1, rounds, iters, warmup=3, gap_s=plan["gap_s"])[name]
    ratio = solo["p50_ms"] / in_rotation["p50_ms"]
    say(f"isolation: {name} alone p50 {solo['p50_ms']:.1f} ms vs {in_rotation['p50_ms']:.1f} ms in rotation "
        f"({ratio:.2f})")
    return {"system": name, "solo_p50_ms": solo["p50_ms"], "rotation_p50_ms": in_rotation["p50_ms"],
            "solo_over_rotation": ratio, "solo": solo}
