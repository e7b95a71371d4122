"""``edge-classify-bulk``: classify a whole archive on Ray Data, resumably (runtime/apps/ray_bulk.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from .. import __version__
from ..cache.paths import default_model_path
from ..errors import EXIT_INPUTS_FAILED, EXIT_MODEL, EXIT_OK, EXIT_USAGE, EdgeClassifyError, exit_codes_help
from . import shell

EPILOG = """\
examples:
  edge-classify-bulk photos/ --out results/                  a local Ray instance on this machine's cores
  edge-classify-bulk 'traps/**/*.jpg' --out results/ --model m.int8.onnx --actors 8 --threads 2
  edge-classify-bulk /mnt/archive --out /mnt/results --ray-address ray://head:10001   join a cluster
  edge-classify-bulk photos/ --out results/                  again after a crash: only the rest is classified

Results are part files in --out (Parquet by default, --format jsonl for JSON Lines), one row per
image, the row edge-classify --json writes: path, model_sha256, model_precision,
compute_precision, engine, provider, predictions, timings_ms, or error. Read them with
pyarrow/pandas (pd.read_parquet("results/")). Every file must be readable at the same path on
every node of the cluster (shared storage).

""" + exit_codes_help("edge-classify-bulk") + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-classify-bulk", epilog=EPILOG,
                                description="Classify many images on Ray Data with an exported model, resumably.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, directories or glob patterns")
    p.add_argument("--out", required=True, help="results folder (created; a rerun resumes into it)")
    p.add_argument("--model", "-m", default=None, help=f"exported .onnx model (default: {default_model_path()})")
    p.add_argument("--format", choices=["parquet", "jsonl"], default="parquet", help="part file format")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join this Ray cluster (default: start a local instance, or RAY_ADDRESS)")
    p.add_argument("--actors", type=int, default=None,
                   help="classifier actors (default: as many as the cluster's CPUs / --threads)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per actor (default: 1)")
    p.add_argument("--batch-size", type=int, default=16, help="images per inference batch (default: 16)")
    p.add_argument("--top-k", "-k", type=int, default=5, help="predictions per image (default: 5)")
    p.add_argument("--flush-rows", type=int, default=1000,
                   help="rows per part file; a killed job loses at most this many results (default: 1000)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("actors", "threads", "batch_size", "top_k", "flush_rows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"edge-classify-bulk: error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return EXIT_USAGE
    return shell.run("edge-classify-bulk", lambda: _run(args),
                     interrupted="interrupted; finished parts are kept, run again to resume")


def _run(args) -> int:
    from ..classifier import Classifier
    from ..engines.options import EngineOptions
    from ..images.files import expand_inputs
    from . import ray_bulk

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"edge-classify-bulk: {msg}", file=sys.stderr, flush=True)

    def warn(msg: str) -> None:
        print(f"edge-classify-bulk: warning: {msg}", file=sys.stderr, flush=True)

    model_path = args.model or str(default_model_path())
    model = open(model_path, "rb").read() if os.path.isfile(model_path) else None
    if model is None:
        raise EdgeClassifyError(f"model {model_path} not found", hint="export one with `export-model`",
                                exit_code=EXIT_MODEL)
    local = Classifier(model, EngineOptions(engine="onnxruntime"))  # checks the model once, here
    out = ray_bulk.ResultsDir(args.out, args.format)
    paths = ray_bulk.absolute_paths(expand_inputs(args.sources, warn))
    done = out.done(local.model_sha256)
    todo = [p for p in paths if p not in done]
    missing = [p for p in todo if not os.path.isfile(p)]
    todo = [p for p in todo if os.path.isfile(p)]
    earlier = [p for p in paths if p in done]
    failed_before = sum(done[p] for p in earlier)
    say(f"{len(paths)} image(s): {len(earlier)} already classified by this model"
        + (f" ({failed_before} of them failed: see their error column; a new --out retries them)"
           if failed_before else "")
        + f", {len(todo)} to do" + (f", {len(missing)} missing" if missing else ""))
    failures = len(missing)
    if missing:  # a row with the reason, like any other bad image
        out.write(ray_bulk.failed_rows(missing, "no such file", local.producer))
    if not todo:
        say("nothing left to classify")
        return EXIT_INPUTS_FAILED if failures else EXIT_OK

    ray = ray_bulk.ray()
    if not ray.is_initialized():
        ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
    ray.data.DataContext.get_current().enable_progress_bars = not args.quiet
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset INFO lines; progress bars say it
    cpus = ray.cluster_resources().get("CPU", 1)
    actors = ray_bulk.plan_actors(cpus, args.threads, args.actors)
    say(f"Ray cluster: {cpus:g} CPU(s); {actors} actor(s) x {args.threads} thread(s), batch {args.batch_size}")
    t0 = time.perf_counter()
    results = ray_bulk.classify_dataset(ray_bulk.read_images(todo), model, top_k=args.top_k, actors=actors,
                                        threads=args.threads, batch_size=args.batch_size)
    pending: list[dict] = []
    classified = 0
    for batch in results.iter_batches(batch_format="pyarrow", batch_size=None):
        pending += ray_bulk.batch_rows(batch)
        if len(pending) >= args.flush_rows:
            classified += len(pending)
            failures += sum(r.get("error") is not None for r in pending)
            out.write(pending)
            pending = []
    classified += len(pending)
    failures += sum(r.get("error") is not None for r in pending)
    out.write(pending)
    took = time.perf_counter() - t0
    say(f"{classified} image(s) classified in {took:.1f} s ({classified / took if took else 0:.1f} img/s) on "
        f"{actors} actor(s); {failures} failed (see their error column); results in {args.out}")
    return EXIT_INPUTS_FAILED if failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
