"""Latency, throughput and the isolation check, across worker processes (pool.py).

Every measurement is a series of rounds: in each round every worker is asked, in turn
(the starting one rotating), to time ``iterations`` calls; an untimed pause comes before
each request. The round's median per system is what per-round ratios compare.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_classify.runtime.model.compare import compare
from edge_classify.runtime.model.heads import probabilities

from .pool import slug
from .stats import round_robin, summarize_rounds


def input_shape(spec) -> tuple[int, int, int]:
    """One image's input tensor shape for a ``PreprocessSpec``."""
    h, w = spec.input_size
    return (3, h, w) if spec.layout == "NCHW" else (h, w, 3)


def input_range(spec) -> tuple[float, float]:
    """(low, high) of the model's input for ``spec``: pixels 0..255 through its mode, each
    channel an affine map (x - a) / b, the range over the three channels."""
    mean = np.asarray(spec.mean if spec.mean is not None else (0.0,) * 3, np.float64)
    std = np.asarray(spec.std if spec.std is not None else (1.0,) * 3, np.float64)
    a, b = {"caffe": (mean, 1.0), "tf": (127.5, 127.5), "torch": (mean * 255, std * 255),
            "meanstd": (mean, std), "raw": (0.0, 1.0)}[spec.mode]
    ends = (np.array([0.0, 255.0])[:, None] - a) / b
    return float(ends.min()), float(ends.max())


def write_inputs(folder: Path, batches: list[int], spec) -> dict[int, Path]:
    """The input tensors, one .npy per batch size, shared by every worker: the same
    uniform noise in the range of the model's input (``spec``: its ``PreprocessSpec``;
    speed does not depend on pixel values)."""
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = input_range(spec)
    paths = {}
    for b in batches:
        seed = 0 if b == 1 else 1
        x = np.random.default_rng(seed).uniform(lo, hi, (b, *input_shape(spec))).astype(np.float32)
        paths[b] = folder / f"x_batch{b}.npy"
        np.save(paths[b], x)
    return paths


def outputs(workers, x_path: Path, folder: Path, reference: str, model=None) -> dict[str, dict]:
    """One untimed-by-the-rounds call per worker (its first inference), output saved;
    max |difference| of each output from ``reference``'s. Edge rows return probabilities
    (the contract's head applied); with ``model`` (the contract's ``ModelInfo``), the others'
    raw outputs (Keras, the peers) get the same head, so that all compare as probabilities."""
    folder.mkdir(parents=True, exist_ok=True)
    firsts, saved, probs = {}, {}, {}
    for w in workers:
        saved[w.name] = folder / f"{slug(w.label)}.npy"
        reply = w.request("output", input=str(x_path), save=str(saved[w.name]))
        w.meta["info"] = reply.get("info", w.meta.get("info"))
        firsts[w.name] = reply["ms"]
        probs[w.name] = np.load(saved[w.name])
        if model is not None and w.meta.get("kind") != "edge":
            probs[w.name] = probabilities(probs[w.name], model.head, model.output)
    ref = probs.get(reference)
    return {n: {"first_inference_ms": firsts[n],
                "max_abs_diff_vs_keras": compare(ref, probs[n]).max_abs_diff if ref is not None else None}
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
