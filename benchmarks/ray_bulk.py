"""Bulk on Ray Data against one process, on the same cores (a benchmark, not a test).

    python -m edge_classify.benchmarks.ray_bulk --model m.onnx [--engine auto] [--images 256] [--rounds 3] [-o bench-ray]

What is timed, per round and in rotating order, on one folder of distinct JPEGs (real photos
re-encoded):

* ``single``: one process, ``Classifier(model, threads=<all cores>).classify(paths)``, which is
  what ``edge-classify DIR -o results.jsonl`` does: model load + decode + inference;
* ``ray AxT``: ``ray_bulk.classify_dataset(read_images(paths))`` with A actors of T threads,
  every result row pulled back to the driver: actor start-up (each loads the model) + read +
  decode + inference + transfer. The Ray instance itself is started once, before the rounds
  (``ray_init_s``), as a cluster would already be running.

Each is also run on a small job (one batch per actor), in the same round: the **steady** rate
``(N - n_small) / (t_N - t_small)`` leaves out what every job pays once (model loads, actor
start-up), which is the rate a long job runs at. The overhead ratio is ``ray / single``
images/s in the same round (median and spread over rounds). The per-actor rate (images/s / actors) is what each further core adds on more nodes;
the driver's cost of writing result rows (``driver_write_rows_per_s``) bounds the scaling from
the other side, because ``edge-classify-bulk`` collects rows on the driver.

Both sides run the engine policy's ``--engine`` (default ``auto``). ``auto`` is measured per
thread count, so before the rounds the model is loaded until the choice has settled, for the
one process's threads and for each actor's; the rows' ``engine`` column says what ran.

Writes ``ray_bulk.json`` (every sample, the environment with lscpu) and ``ray_bulk.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from edge_classify.runtime.images.preprocess import DecodeOptions

from .env import environment
from .model_files import sample_photos
from .stats import round_ratios, spread
from .warm_bulk import _jpegs


ENGINES_SEEN: dict[str, set] = {}  # configuration -> the engines its rows name
DECODE: dict = {}  # "options": both sides' DecodeOptions


def _options(engine: str, threads: int, spinning: bool = True):
    """No ``images_hint``: the small jobs that the steady rate subtracts must run the same engine
    (the CLIs give ONNX Runtime to runs of up to 16 images: policy.small_run)."""
    from edge_classify.runtime import EngineOptions

    return EngineOptions(engine=engine, threads=threads, spinning=spinning)


def _settle(model: Path, engine: str, threads: int) -> str:
    """``auto``'s choice for ``threads``, settled now (``loader.settle``, as ``edge-classify --warmup``)."""
    from edge_classify.runtime.engines import loader

    choice = loader.settle(model, _options(engine, threads))
    return f"{choice.engine}: {choice.reason}"


def _single(model: Path, paths: list[str], threads: int, batch: int, engine: str) -> float:
    from edge_classify.runtime import Classifier

    t0 = time.perf_counter()
    clf = Classifier(model, _options(engine, threads), batch_size=batch, decode=DECODE["options"])
    results = clf.classify(paths, top_k=5, errors="collect")
    took = time.perf_counter() - t0
    if not all(r.ok for r in results):
        raise SystemExit("ray_bulk bench: an image failed in the single-process run")
    ENGINES_SEEN.setdefault("single", set()).add(clf.runner.engine)
    return took


def _ray(model: Path, paths: list[str], actors: int, threads: int, batch: int, engine: str) -> float:
    from edge_classify.runtime.apps import ray_bulk

    t0 = time.perf_counter()
    ds = ray_bulk.classify_dataset(ray_bulk.read_images(paths, actors), model, top_k=5, actors=actors, threads=threads,
                                   batch_size=batch, options=_options(engine, threads, False), decode=DECODE["options"])
    rows = 0
    for b in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        rows += b.num_rows
        if any(e is not None for e in b.column("error").to_pylist()):
            raise SystemExit("ray_bulk bench: an image failed on Ray")
        ENGINES_SEEN.setdefault(f"ray {actors}x{threads}", set()).update(b.column("engine").to_pylist())
    took = time.perf_counter() - t0
    if rows != len(paths):
        raise SystemExit(f"ray_bulk bench: {rows} rows for {len(paths)} images")
    return took


def _driver_write_rate(n: int = 20000) -> float:
    """Rows/s the driver writes to a Parquet part (top-5 rows): the serial step of edge-classify-bulk."""
    from edge_classify.runtime.apps import ray_bulk

    from edge_classify.runtime.results import Classification, Prediction, Producer, row

    producer = Producer("0" * 64, "fp32", "fp32", "onnxruntime", "CPUExecutionProvider")
    top5 = [Prediction(i, None, label, p) for i, label, p in zip(range(1, 6), "abcde", (0.5, 0.2, 0.1, 0.1, 0.1))]
    timings = {"decode": 1.0, "normalize": 0.1, "inference": 10.0, "batch": 16}
    rows = [row(Classification(f"/archive/{i:07d}.jpg", top5, timings_ms=timings), producer) for i in range(n)]
    folder = Path(tempfile.mkdtemp(prefix="edge-bench-write-"))
    try:
        t0 = time.perf_counter()
        ray_bulk.ResultsDir(folder).write(rows)
        return n / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_classify.benchmarks.ray_bulk", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="exported .onnx model (e.g. ResNet50 FP32)")
    p.add_argument("--images", type=int, default=256, help="distinct JPEGs per run (default 256)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each times every configuration once (default 3)")
    p.add_argument("--batch-size", type=int, default=8, help="inference batch, both paths (default 8, as the CLIs)")
    p.add_argument("--engine", default="auto", choices=["auto", "onnxruntime", "openvino"],
                   help="engine of both sides (default auto: the policy's measured choice)")
    p.add_argument("--camera", action="store_true",
                   help="camera-size JPEGs (8-20 MP, benchmarks/camera_photos.py) instead of photo crops; --images of them")
    p.add_argument("--decode", default="exact", choices=["exact", "fast", "auto"],
                   help="JPEG decoding on both sides (default exact)")
    p.add_argument("-o", "--out", type=Path, default=Path("bench-ray"), help="output folder (default bench-ray)")
    args = p.parse_args(argv)

    from edge_classify.runtime.apps import ray_bulk

    from edge_classify.runtime.host.cpu import usable_cores

    cores = usable_cores()
    model = args.model.resolve()
    env = environment()
    folder = Path(tempfile.mkdtemp(prefix="edge-bench-ray-"))
    try:
        if args.camera:
            from .camera_photos import build

            paths = [str(q) for q in sorted(build(n=args.images, say=lambda m: print(m, file=sys.stderr)).glob("*.jpg"))]
        else:
            paths = [str(q) for q in _jpegs(sample_photos(), args.images, folder)]
        DECODE["options"] = DecodeOptions(decode=args.decode)
        r = ray_bulk.ray()
        t0 = time.perf_counter()
        r.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray_init_s = time.perf_counter() - t0
        r.data.DataContext.get_current().enable_progress_bars = False
        b = args.batch_size
        e = args.engine
        configs = {"single": lambda n: _single(model, paths[:n], cores, b, e)}
        small = {"single": b}
        shapes = sorted({(cores, 1), (1, cores)} | ({(cores // 2, 2)} if cores >= 4 else set()))
        for actors, threads in shapes:
            configs[f"ray {actors}x{threads}"] = lambda n, a=actors, t=threads: _ray(model, paths[:n], a, t, b, e)
            small[f"ray {actors}x{threads}"] = b * actors
        choices = {t: _settle(model, e, t) for t in sorted({cores} | {t for _, t in shapes})}
        print(f"ray_bulk bench: {args.images} JPEGs, {cores} cores, Ray started in {ray_init_s:.1f} s; engine "
              f"{e}: " + "; ".join(f"{t} thread(s): {c}" for t, c in choices.items()) + "; warm-up", file=sys.stderr)
        for fn in configs.values():  # files in the page cache, ORT's code paths touched
            fn(len(paths))
        times: dict[str, list[float]] = {k: [] for k in configs}
        steady: dict[str, list[float]] = {k: [] for k in configs}
        names = list(configs)
        for rnd in range(args.rounds):
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                took = configs[name](len(paths))
                took_small = configs[name](small[name])
                rate_steady = (len(paths) - small[name]) / max(1e-9, took - took_small)
                times[name].append(took)
                steady[name].append(rate_steady)
                print(f"  round {rnd + 1}: {name}: {args.images / took:.1f} img/s for the whole job, "
                      f"{rate_steady:.1f} steady", file=sys.stderr)
        r.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    rate = {k: [args.images / t for t in v] for k, v in times.items()}
    rows = {}
    for name, v in rate.items():
        row = {"images_per_s": spread(v), "steady_images_per_s": spread(steady[name]), "seconds": times[name]}
        if name != "single":
            actors = int(name.split()[1].split("x")[0])
            row["actors"], row["threads"] = actors, int(name.split("x")[1])
            row["per_actor_steady_images_per_s"] = statistics.median(steady[name]) / actors
            row["ray_over_single"] = round_ratios(rate[name], rate["single"])
            row["ray_over_single_steady"] = round_ratios(steady[name], steady["single"])
        rows[name] = row
    write_rate = _driver_write_rate()
    for name, seen in ENGINES_SEEN.items():
        rows[name]["engines"] = sorted(seen)
    report = {"images": args.images, "photos": "camera-size JPEGs" if args.camera else "photo crops",
              "decode": args.decode, "batch_size": args.batch_size, "rounds": args.rounds, "cores": cores,
              "engine": args.engine, "engine_choices": {str(t): c for t, c in choices.items()},
              "model": str(args.model), "ray_init_s": ray_init_s, "driver_write_rows_per_s": write_rate,
              "ray_version": r.__version__, "rows": rows, "environment": env}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_bulk.json").write_text(json.dumps(report, indent=2))
    (args.out / "ray_bulk.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


def _markdown(rep: dict) -> str:
    env = rep["environment"]
    flags = " ".join(f for f, on in env["cpu_flags"].items() if on)
    lines = [f"# Ray Data bulk vs one process: {rep['images']} {rep['photos']}, decode {rep['decode']}, batch {rep['batch_size']}, "
             f"{rep['rounds']} rounds", "",
             f"CPU: {env['cpu']} ({rep['cores']} usable cores; flags: {flags}); Ray {rep['ray_version']}; "
             f"model {Path(rep['model']).name}; engine {rep['engine']}: "
             + "; ".join(f"{t} thread(s): {c}" for t, c in rep["engine_choices"].items()), "",
             "Whole job: model load(s) + read + decode + inference + rows back to the driver. Steady: "
             "(N - n_small) / (t_N - t_small) with a one-batch-per-actor job, which leaves out start-up. Medians over rounds (min-max); ratios per round.", "",
             "| run | engine | whole job img/s | Ray / single | steady img/s | Ray / single | steady per actor |",
             "|---|---|---|---|---|---|---|"]

    def cell(s: dict | None, fmt: str) -> str:
        return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})" if s else "-"

    for name, row in rep["rows"].items():
        lines.append(f"| {name} | {', '.join(row.get('engines', []))} | {cell(row['images_per_s'], '.1f')} | {cell(row.get('ray_over_single'), '.2f')} | "
                     f"{cell(row['steady_images_per_s'], '.1f')} | {cell(row.get('ray_over_single_steady'), '.2f')} | "
                     + (f"{row['per_actor_steady_images_per_s']:.1f} |" if "actors" in row else "- |"))
    lines += ["", f"Ray instance start: {rep['ray_init_s']:.1f} s (once per job with a local instance; "
              "none when joining a running cluster).",
              f"Driver writing result rows to Parquet: {rep['driver_write_rows_per_s']:,.0f} rows/s "
              "(the serial step: a ceiling on the whole cluster's rate).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
