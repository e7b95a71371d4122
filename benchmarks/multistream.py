"""Many live sources, one model: throughput, fairness and latency of ``MultiStream`` against
the same model classifying batches in-process (a benchmark, not a test).

    python -m edge_classify.benchmarks.multistream --model m.onnx [--engine auto] [--sources 1,2,4,8]
        [--seconds 6] [--rounds 3] [--fps F] [-o bench-multistream]

Sources are synthetic live cameras (``SyntheticCamera``, opened through ``MultiStream``'s
``opener``): each delivers 640x480 frames (real photos), N sources together twice as many
frames per second as the model's measured batch-4 rate (``--fps`` sets each source's rate
instead), so the sources outrun the model and every round finds a new frame of each: the
loop, not the sources, is what is measured. Each read returns a fresh copy of its frame, as
a capture's buffer is.

Each N runs on a ``Classifier`` loaded for batch N, as ``edge-classify`` loads one for N
streams (``auto`` measures the engines at that batch; OpenVINO compiles it), and the
baseline on one loaded for batch 4. Per round, in rotating order so that drift hits every
system:

* ``batch4``: the baseline, the model alone: ``Classifier.run`` on a preprocessed batch of 4
  for ``--seconds``: images/s. The loop also resizes each frame from 640x480 and normalizes
  it, which this leaves out, so the ratio is a strict one.
* ``classify4``: ``Classifier.classify`` on lists of 4 such frames (resize, normalize,
  inference: the loop's work per frame, through the image API): images/s.
* ``streams N`` for each N: ``MultiStream`` over N sources for ``--seconds`` after a 1 s
  warm-up whose frames are not counted: total and per-source classified frames/s, frames
  dropped, latency from a frame's capture (its read) to its result, p50 / p99.

Ratios within each round: total / batch4, and each source's rate / (total / N) (fairness:
the lowest source against its fair share). Targets (issue 22): with 4 sources, total >= 0.9x
batch4, and no source below 0.8x its fair share. Writes ``multistream.json`` (every sample,
the environment with lscpu) and ``multistream.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .env import environment
from .stats import spread

SIZE = (640, 480)
WARMUP_S = 1.0


class SyntheticCamera:
    """A live capture that delivers a new frame every 1/fps seconds (never faster), cycling
    through ``pictures``: what ``cv2.VideoCapture`` gives ``MultiStream``'s reader."""

    def __init__(self, pictures: list[np.ndarray], fps: float, offset: int = 0):
        self.pictures, self.period, self.i = pictures, 1.0 / fps, offset
        self.next_at = time.perf_counter()
        self.released = False

    def isOpened(self) -> bool:
        return True

    def get(self, prop) -> float:
        return 1.0 / self.period

    def read(self):
        if self.released:
            return False, None
        wait = self.next_at - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self.next_at = max(self.next_at + self.period, time.perf_counter() - self.period)
        self.i += 1
        return True, self.pictures[self.i % len(self.pictures)].copy()

    def release(self) -> None:
        self.released = True


def pictures() -> list[np.ndarray]:
    """Real photos (scikit-image's bundled files), 640x480 BGR."""
    import cv2
    import skimage

    data = Path(skimage.__file__).parent / "data"
    names = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "hubble_deep_field.jpg",
             "retina.jpg", "brick.png"]
    out = [cv2.imread(str(data / n), cv2.IMREAD_COLOR) for n in names]
    return [cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA) for img in out if img is not None]


def batch4(clf, frames: list[np.ndarray], seconds: float) -> float:
    """Images/s of the model alone, ``clf.run`` on a preprocessed batch of 4."""
    from edge_classify.runtime.images import preprocess

    spec = clf.contract.preprocess
    tensor = preprocess.normalize(np.stack([preprocess.resize(f, spec) for f in frames[:4]]), spec)
    clf.run(tensor)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        clf.run(tensor)
        n += 4
    return n / (time.perf_counter() - t0)


def classify4(clf, frames: list[np.ndarray], seconds: float) -> float:
    """Images/s of ``clf.classify`` on lists of 4 frames (RGB, as arrays are passed)."""
    rgb = [f[..., ::-1] for f in frames]
    clf.classify(rgb[:4], top_k=3)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        k = n % len(rgb)
        clf.classify((rgb + rgb)[k:k + 4], top_k=3)
        n += 4
    return n / (time.perf_counter() - t0)


def streams(clf, frames: list[np.ndarray], n: int, fps: float, seconds: float) -> dict:
    from edge_classify.runtime.apps.multistream import MultiStream

    cams: dict[str, SyntheticCamera] = {}
    lock = threading.Lock()

    def opener(url, *api):
        with lock:
            cams[url] = SyntheticCamera(frames, fps, offset=len(cams))
            return cams[url]

    sources = [(f"cam{i}", f"rtsp://synthetic.local/cam{i}") for i in range(n)]
    counted = {name: 0 for name, _ in sources}
    dropped = dict(counted)
    latency: list[float] = []
    batches: list[int] = []
    run = MultiStream(clf, sources, top_k=3, opener=opener)
    t0 = time.perf_counter()
    start = end = None
    try:
        for r in run:
            now = time.perf_counter()
            if start is None and now - t0 >= WARMUP_S:
                start = now
            if start is None:
                continue
            if now - start >= seconds:
                end = now
                break
            counted[r.source] += 1
            dropped[r.source] += r.dropped_before
            latency.append(r.latency_ms)
            batches.append(r.classification.timings_ms.get("batch", 0))
    finally:
        run.close()
    took = (end or time.perf_counter()) - start
    total = sum(counted.values()) / took
    per = {k: v / took for k, v in counted.items()}
    return {"sources": n, "seconds": took, "total_fps": total, "per_source_fps": per,
            "min_share": min(per.values()) / (total / n) if total else 0.0,
            "dropped": dropped, "dropped_share": sum(dropped.values()) / max(1, sum(dropped.values()) + sum(counted.values())),
            "latency_ms": {"p50": float(np.percentile(latency, 50)), "p99": float(np.percentile(latency, 99))}
            if latency else {}, "mean_batch": statistics.mean(batches) if batches else 0.0}


def run(model: Path, counts: list[int], seconds: float, rounds: int, engine: str, fps: float | None,
        threads: int | None, say=print) -> dict:
    from edge_classify.runtime import Classifier, EngineOptions

    frames = pictures()
    clfs: dict[int, Classifier] = {}
    for n in sorted({4, *counts}):  # each loaded for its batch, as edge-classify loads it for N streams
        clfs[n] = Classifier(model, EngineOptions(engine=engine, threads=threads), batch_size=n)
        say(f"batch {n}: model {model.name} on {clfs[n].runner.engine} ({clfs[n].runner.provider}), "
            f"{clfs[n].runner.precision}")
    clf = clfs[4]
    base0 = batch4(clf, frames, min(seconds, 3.0))
    say(f"batch-4 in-process: {base0:.1f} images/s; the sources deliver "
        + (f"{fps:.0f} frames/s each" if fps else f"{2 * base0:.0f} frames/s together"))
    samples: dict = {"batch4": [], "classify4": []}
    samples.update({f"streams{n}": [] for n in counts})
    systems = ["batch4", "classify4"] + [f"streams{n}" for n in counts]
    for rnd in range(rounds):
        order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
        for name in order:
            if name in ("batch4", "classify4"):
                samples[name].append((batch4 if name == "batch4" else classify4)(clf, frames, seconds))
                say(f"round {rnd + 1}: {name} {samples[name][-1]:.1f} images/s")
            else:
                n = int(name[7:])
                res = streams(clfs[n], frames, n, fps or 2.0 * base0 / n, seconds)
                samples[name].append(res)
                say(f"round {rnd + 1}: {res['sources']} sources {res['total_fps']:.1f} frames/s, lowest source "
                    f"{res['min_share']:.2f}x its share, dropped {res['dropped_share']:.0%}, latency p50 "
                    f"{res['latency_ms'].get('p50', 0):.0f} / p99 {res['latency_ms'].get('p99', 0):.0f} ms")
    summary = {}
    for n in counts:
        got = samples[f"streams{n}"]
        summary[n] = {
            "total_fps": spread([g["total_fps"] for g in got]),
            "total_vs_batch4": spread([g["total_fps"] / b for g, b in zip(got, samples["batch4"])]),
            "total_vs_classify4": spread([g["total_fps"] / b for g, b in zip(got, samples["classify4"])]),
            "per_source_fps": spread([statistics.median(g["per_source_fps"].values()) for g in got]),
            "lowest_source_vs_fair_share": spread([g["min_share"] for g in got]),
            "dropped_share": spread([g["dropped_share"] for g in got]),
            "latency_p50_ms": spread([g["latency_ms"]["p50"] for g in got]),
            "latency_p99_ms": spread([g["latency_ms"]["p99"] for g in got]),
            "mean_batch": spread([g["mean_batch"] for g in got]),
        }
    return {"model": str(model), "engine": clf.runner.engine, "provider": clf.runner.provider,
            "engines_per_batch": {n: c.runner.engine for n, c in clfs.items()},
            "compute_precision": clf.runner.precision, "source_fps": fps or f"2 x {base0:.1f} / N",
            "seconds": seconds, "rounds": rounds, "frame_size": SIZE,
            "batch4_images_per_s": spread(samples["batch4"]), "classify4_images_per_s": spread(samples["classify4"]),
            "streams": summary,
            "samples": samples}


def markdown(result: dict) -> str:
    env = result["environment"]
    b, c = result["batch4_images_per_s"], result["classify4_images_per_s"]
    flags = [k for k, on in env.get("cpu_flags", {}).items() if on]
    fps = result["source_fps"]
    lines = [f"# Many live sources, one model: {Path(result['model']).name} on {result['engine']} "
             f"({result['compute_precision']})", "",
             f"CPU: {env.get('cpu')}, {env.get('usable_cpus')} usable; flags: {', '.join(flags)}", "",
             f"Baseline, the model alone at batch 4 (`Classifier.run`): {b['median']:.1f} images/s "
             f"[{b['min']:.1f}-{b['max']:.1f}]; `Classifier.classify` on 4 frames: {c['median']:.1f} "
             f"[{c['min']:.1f}-{c['max']:.1f}]. Sources: {result['frame_size'][0]}x{result['frame_size'][1]}, "
             + (f"{fps:.0f} frames/s each" if isinstance(fps, (int, float)) else f"{fps} frames/s each")
             + f"; {result['rounds']} rounds of {result['seconds']:.0f} s; medians [min-max] over rounds", "",
             "| sources | total frames/s | total / batch-4 | total / classify-4 | per source | lowest / fair share "
             "| dropped | latency p50 / p99 ms | mean batch |", "|---|---|---|---|---|---|---|---|---|"]

    def f(s, fmt="{:.2f}"):
        return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}-{fmt.format(s['max'])}]"

    for n, s in result["streams"].items():
        lines.append(f"| {n} | {f(s['total_fps'], '{:.1f}')} | {f(s['total_vs_batch4'])} | "
                     f"{f(s['total_vs_classify4'])} | "
                     f"{f(s['per_source_fps'], '{:.1f}')} | {f(s['lowest_source_vs_fair_share'])} | "
                     f"{s['dropped_share']['median']:.0%} | {s['latency_p50_ms']['median']:.0f} / "
                     f"{s['latency_p99_ms']['median']:.0f} | {s['mean_batch']['median']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--engine", default="auto", choices=["auto", "onnxruntime", "openvino"])
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: the engine's)")
    p.add_argument("--sources", default="1,2,4,8", help="source counts (default 1,2,4,8)")
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per system per round (default 6)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fps", type=float, default=None, help="each source's frames/s (default: 2x batch-4 rate)")
    p.add_argument("-o", "--out", type=Path, default=Path("bench-multistream"))
    args = p.parse_args(argv)
    counts = [int(x) for x in args.sources.split(",")]
    result = run(args.model, counts, args.seconds, args.rounds, args.engine, args.fps, args.threads,
                 say=lambda m: print(m, file=sys.stderr, flush=True))
    result["environment"] = environment()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "multistream.json").write_text(json.dumps(result, indent=1, default=str))
    (args.out / "multistream.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
