"""Preprocessing alone: edge-classify's OpenCV path vs Keras' ``load_img`` + ``preprocess_input``,
each in its own worker process (TensorFlow stays in the Keras one), alternating; both for the
model contract's preprocessing (input size, resize, mode)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import inference
from .pool import Pool
from .stats import round_ratios, summarize

OURS, THEIRS = "edge-classify (OpenCV)", "keras (PIL)"


def run(photos: list[Path], plan: dict, out: Path, say, spec, keras: bool = True) -> dict:
    """``spec``: the model's ``PreprocessSpec``; ``keras=False``: the OpenCV path alone (no
    TensorFlow), without the comparison."""
    impls = ((OURS, "opencv"), (THEIRS, "keras")) if keras else ((OURS, "opencv"),)
    specs = [{"type": "preprocess", "name": name, "impl": impl, "photos": [str(p) for p in photos],
              "preprocess": asdict(spec)} for name, impl in impls]
    dummy = inference.write_inputs(out / "inputs", [1], spec)[1]  # the systems ignore it
    with Pool(out / "workers") as pool:
        failed = pool.build(specs, parallel=plan["parallel_build"])
        if failed:
            raise SystemExit(f"edge-bench: preprocessing: {failed[0][1]}")
        saved = {}
        for w in pool:
            saved[w.name] = out / "outputs" / f"preprocess-{w.name.split()[0]}.npy"
            saved[w.name].parent.mkdir(parents=True, exist_ok=True)
            w.request("output", input=str(dummy), save=str(saved[w.name]))
        identical = max_diff = None
        if keras:
            ours, theirs = np.load(saved[OURS]), np.load(saved[THEIRS])
            identical = bool(np.array_equal(ours, theirs))
            max_diff = float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else None
        res = inference.timed_rounds(list(pool), dummy, plan["preprocess_rounds"], 1, warmup=2,
                                     gap_s=plan["gap_s"])
    out_rows: dict = {}
    for name, st in res.items():
        per_image = [t / len(photos) for t in st["round_p50_ms"]]
        s = summarize([t / 1e3 for t in per_image])
        out_rows[name] = {"ms_per_image_p50": s["p50_ms"], **s}
    out_rows["photos"] = len(photos)
    out_rows["identical_outputs"] = identical
    out_rows["max_abs_diff"] = max_diff
    if not keras:
        out_rows["speedup"] = out_rows["speedup_per_round"] = None
        say(f"preprocessing: OpenCV {out_rows[OURS]['p50_ms']:.2f} ms/image (no Keras to compare with)")
        return out_rows
    out_rows["speedup"] = out_rows[THEIRS]["p50_ms"] / out_rows[OURS]["p50_ms"]
    out_rows["speedup_per_round"] = round_ratios(res[THEIRS]["round_p50_ms"], res[OURS]["round_p50_ms"])
    say(f"preprocessing: OpenCV {out_rows[OURS]['p50_ms']:.2f} ms/image vs Keras {out_rows[THEIRS]['p50_ms']:.2f}; "
        f"identical {identical}")
    return out_rows
