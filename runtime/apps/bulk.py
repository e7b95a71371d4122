"""``edge-classify-bulk``: classify a whole archive on Ray Data, resumably (runtime/apps/ray_bulk.py)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from .. import __version__
from ..cache.paths import default_model_path
from ..errors import (EXIT_INPUTS_FAILED, EXIT_MODEL, EXIT_OK, EXIT_STALLED, EdgeClassifyError,
                      exit_codes_help, first_line)
from . import flags, shell

EPILOG = """\
examples:
  edge-classify-bulk photos/ --out results/                  a local Ray instance on this machine's cores
  edge-classify-bulk 'traps/**/*.jpg' --out results/ --model m.int8.onnx --actors 8 --threads 2
  edge-classify-bulk /mnt/archive --out /mnt/results --ray-address ray://head:10001   join a cluster
  edge-classify-bulk photos/ --out results/                  again after a crash: only the rest is classified
  edge-classify-bulk photos/ --out results/ --engine openvino --threads 2    OpenVINO actors of 2 threads
  edge-classify-bulk /mnt/archive --out /mnt/results --provider cuda --ray-address auto   one actor per GPU

The engine flags mean what they mean for edge-classify: each actor loads the model through the
same loader on its own node, so --engine auto is measured there (once per kind of node, and
remembered in that node's cache), and GPU actors (one per GPU, ONNX Runtime's CUDA or TensorRT
provider) run where the cluster has GPUs, unless --provider cpu or --engine openvino says otherwise.

Results are part files in --out (Parquet by default, --format jsonl for JSON Lines), one row per
image, the row edge-classify --json writes: path, model_sha256, model_precision,
compute_precision, engine, provider, predictions, timings_ms, or error; and host and node_id,
the node that computed it. Read them with pyarrow/pandas (pd.read_parquet("results/")). Every
file must be readable at the same path on every node of the cluster (shared storage).

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
    p.add_argument("--actors", type=flags.positive_int, default=None,
                   help="classifier actors (default: as many as fit, node by node: its CPUs / --threads; GPU actors: one per "
                        "GPU)")
    flags.add_engine_flags(p, threads_default=1, threads_help="threads of each actor, for inference and for "
                                                             "decoding; an actor asks Ray for as many CPUs (default: 1)")
    # The defaults are edge-classify's: with the same settings, the same rows.
    flags.add_decode_flags(p)
    p.add_argument("--batch-size", type=flags.positive_int, default=8, help="images per inference batch (default: 8)")
    p.add_argument("--top-k", "-k", type=flags.positive_int, default=3, help="predictions per image (default: 3)")
    p.add_argument("--flush-rows", type=flags.positive_int, default=1000,
                   help="rows per part file; a killed job loses at most this many results (default: 1000)")
    p.add_argument("--stall-timeout", type=flags.non_negative, default=None, metavar="S",
                   help="stop with exit 75 when no results arrive for S seconds while the cluster cannot schedule "
                        "what the job needs, naming the demand and each node's free resources; a job that is only "
                        "slow is never stopped (default: 120; 0: never)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return shell.run("edge-classify-bulk", lambda: _run(args),
                     interrupted="interrupted; finished parts are kept, run again to resume")


def _run(args) -> int:
    from ..engines import loader
    from ..images.files import expand_inputs
    from ..results import Producer
    from . import ray_bulk

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"edge-classify-bulk: {msg}", file=sys.stderr, flush=True)

    def warn(msg: str) -> None:
        print(f"edge-classify-bulk: warning: {msg}", file=sys.stderr, flush=True)

    model_path = args.model or str(default_model_path())
    if not os.path.isfile(model_path):
        raise EdgeClassifyError(f"model {model_path} not found", hint="export one with `export-model`",
                                exit_code=EXIT_MODEL)
    paths = ray_bulk.absolute_paths(expand_inputs(args.sources, warn))
    out = ray_bulk.ResultsDir(args.out, args.format)
    # What the actors will load, refused here if it cannot be (an engine not installed, not a model):
    options = flags.engine_options(args, images_hint=len(paths) or None, spinning=False)
    contract, sha256 = loader.inspect(model_path, options)
    done = out.done(sha256)
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
    if missing:  # a row with the reason, like any other bad image; no engine computed it
        out.write(ray_bulk.failed_rows(missing, "no such file", Producer(sha256, contract.model.precision, None,
                                                                          None, None)))
    if not todo:
        say("nothing left to classify")
        return EXIT_INPUTS_FAILED if failures else EXIT_OK

    ray = ray_bulk.ray()
    if not ray.is_initialized():
        ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
    ray.data.DataContext.get_current().enable_progress_bars = not args.quiet
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset INFO lines; progress bars say it
    nodes = ray_bulk.cluster_nodes()
    plan = ray_bulk.plan_actors(nodes, args.threads, args.actors, ray_bulk.gpu_allowed(options))
    total = {k: sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
    say(f"Ray cluster: {len(nodes)} node(s), {total['CPU']:g} CPU(s)" + (f", {total['GPU']:g} GPU(s)"
                                                                          if total["GPU"] else "")
        + f"; {plan.describe()}, batch {args.batch_size}, engine {args.engine}")
    t0 = time.perf_counter()
    results = ray_bulk.classify_dataset(ray_bulk.read_images(todo, plan.actors), model_path, top_k=args.top_k,
                                        threads=args.threads, batch_size=args.batch_size, options=options, plan=plan,
                                        decode=flags.decode_options(args))
    stall_s = ray_bulk.STALL_S if args.stall_timeout is None else args.stall_timeout
    stopped = threading.Event()  # the main thread has taken the stall (or ended)

    def on_stall(reason: str) -> None:
        # A real SIGINT: it wakes the main thread from a blocking wait inside Ray's iterator,
        # where _thread.interrupt_main() (a flag checked between bytecodes) was never seen.
        if stopped.is_set():  # the job ended meanwhile: nothing to stop
            return
        os.kill(os.getpid(), signal.SIGINT)
        if not stopped.wait(30):  # still stuck: say why and leave (unwritten rows are redone by a rerun)
            print(f"edge-classify-bulk: error: the job is stalled: {reason}", file=sys.stderr, flush=True)
            os._exit(EXIT_STALLED)

    watchdog = ray_bulk.Watchdog(stall_s, on_stall=on_stall)
    if stall_s:
        watchdog.start()
    pending: list[dict] = []
    classified = 0
    engines: dict[str, int] = {}

    def flush() -> None:
        nonlocal pending, classified, failures
        classified += len(pending)
        failures += sum(r.get("error") is not None for r in pending)
        for r in pending:
            if r.get("engine"):
                key = f"{r['engine']} ({r['provider']}, {r['compute_precision']})"
                engines[key] = engines.get(key, 0) + 1
        out.write(pending)
        pending = []

    try:
        for batch in results.iter_batches(batch_format="pyarrow", batch_size=None):
            watchdog.progress()
            pending += ray_bulk.batch_rows(batch)
            if len(pending) >= args.flush_rows:
                flush()
    except ray.exceptions.RayError as exc:  # every row that arrived is kept; then say what failed
        stopped.set()
        flush()
        raise _ray_failure(exc, ray.exceptions, classified) from None
    except KeyboardInterrupt:
        stopped.set()
        if watchdog.reason is None:
            raise
        flush()  # every row that arrived is kept
        raise EdgeClassifyError(f"the job is stalled: {watchdog.reason}",
                                hint="the finished parts are kept and a rerun resumes; give the cluster nodes with "
                                     f"more free CPUs, or ask for fewer --threads or --actors ({classified} image(s) "
                                     "classified before it stalled)", exit_code=EXIT_STALLED) from None
    finally:
        stopped.set()
        watchdog.stop()
    flush()
    took = time.perf_counter() - t0
    say(f"{classified} image(s) classified in {took:.1f} s ({classified / took if took else 0:.1f} img/s) on "
        f"{plan.actors} actor(s); {failures} failed (see their error column); results in {args.out}")
    if engines:
        say("computed by " + "; ".join(f"{k}: {n}" for k, n in sorted(engines.items())))
    return EXIT_INPUTS_FAILED if failures else EXIT_OK


def _ray_failure(exc, errors, classified: int) -> BaseException:
    """What a failure inside Ray means for the user. An actor whose constructor raised could not
    load the model on its node (an engine or device that node lacks): a model error, with the
    loader's own message. A task that raised is a bug (the shell reports it as one). Anything
    else is the cluster failing (a node or an actor lost): running again resumes."""
    if isinstance(exc, errors.RayActorError) and getattr(exc, "_actor_init_failed", False):
        text = getattr(exc, "error_msg", "") or str(exc)
        said = [ln.split("EdgeClassifyError: ", 1)[1] for ln in text.splitlines() if "EdgeClassifyError: " in ln]
        return EdgeClassifyError(f"an actor could not load the model on its node: {said[-1] if said else first_line(text)}",
                                 hint="every node needs the engine, device and model the options ask for; "
                                      f"{classified} image(s) classified before (their parts are kept)",
                                 exit_code=EXIT_MODEL)
    if isinstance(exc, errors.RayTaskError):
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, EdgeClassifyError) else exc
    return EdgeClassifyError(f"the Ray cluster failed during the job: {first_line(str(exc))}",
                             hint=f"{classified} image(s) classified before; their parts are kept and running again "
                                  "resumes", exit_code=EXIT_STALLED)


if __name__ == "__main__":
    sys.exit(main())
