"""``edge-classify``: a thin command line over ``Classifier``.

Imports only the standard library until it has to classify, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .. import __version__
from ..cache.paths import default_model_path
from ..engines.providers import default_trt_cache_dir
from ..errors import EXIT_INPUTS_FAILED, EXIT_OK, EXIT_USAGE, EdgeClassifyError, exit_codes_help
from ..images.files import expand_inputs
from . import flags, shell

EPILOG = """\
examples:
  edge-classify elephant.jpg                 top-3 with the default model
  edge-classify photos/ --top-k 5 --json     every image in a folder, JSON Lines
  edge-classify 'shots/*.png' --batch-size 16 --threads 2
  edge-classify img.jpg --model resnet101.onnx --provider tensorrt
  edge-classify --model m.onnx --warmup      build and cache the TensorRT engine ahead of deployment
  edge-classify photos/ --engine openvino    the OpenVINO runtime (the [openvino] extra)
  edge-classify photos/ --device GPU         OpenVINO on an Intel GPU (NPU likewise)
  edge-classify img.jpg --engine openvino --precision bf16   BF16 on AMX / AVX512-BF16 CPUs
  edge-classify archive/ -o results.jsonl    bulk: rows appended to a file as they finish
  edge-classify archive/ -o results.jsonl --resume   continue after a crash or kill
  edge-classify big.tif --max-pixels 200M    accept larger images than the default cap
  edge-classify shot.jpg -m tags.onnx --threshold 0.3   a multi-label model: every label above 0.3
  edge-classify clip.mp4 --json --every 5    every 5th frame of a video, one JSON line per frame
  edge-classify rtsp://cam/stream --save out.mp4   a live stream (stale frames dropped), annotated copy
  edge-classify --camera 0                   a V4L2 camera, until Ctrl-C
  edge-classify rtsp://gate/s rtsp://dock/s --camera 0 --json   three live sources at once, batched
  edge-classify --sources cams.txt --save out/   sources from a file ([NAME=]SOURCE per line); one annotated
                                             video per source in out/, and out/mosaic.mp4 with them all
  edge-classify --sources cams.txt --mosaic wall.jpg   a grid of every source, rewritten each second

""" + exit_codes_help("edge-classify") + "\n"

FPS_REPORT_EVERY_S = 2.0  # videos and streams: a rolling-FPS line on stderr this often (not with -q)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-classify",
        description="Classify images with a model exported by `export-model` (no TensorFlow needed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", metavar="IMG",
                   help="image files, directories or glob patterns; video files, rtsp:// / http:// stream URLs and "
                        "GStreamer pipelines are classified frame by frame")
    p.add_argument("--model", "-m", type=Path, default=None,
                   help=f"exported .onnx model (default: {default_model_path()}; EDGE_CLASSIFY_HOME moves it)")
    p.add_argument("--top-k", "-k", type=flags.positive_int, default=3, help="predictions per image (default: 3)")
    p.add_argument("--json", action="store_true", help="one JSON object per image (JSON Lines) on stdout")
    p.add_argument("--camera", type=int, action="append", default=None, metavar="N",
                   help="classify camera N (V4L2 index) frame by frame; repeatable")
    p.add_argument("--sources", type=Path, action="append", default=None, metavar="FILE",
                   help="videos and streams listed in FILE, one per line as [NAME=]SOURCE (# comments; relative "
                        "paths from FILE's folder). Several videos and streams are classified concurrently: one "
                        "reader per source, the newest frame of each batched into one inference")
    p.add_argument("--every", type=flags.positive_int, default=1, metavar="N",
                   help="videos and streams: classify every Nth frame (default: every frame)")
    p.add_argument("--save", type=Path, default=None, metavar="PATH",
                   help="one video or stream: write an annotated copy (.mp4/.avi video, or .jpg/.png: the last "
                        "frame) with the top-k drawn on each frame; several: PATH is a folder that gets NAME.mp4 per "
                        "source and mosaic.mp4")
    p.add_argument("--mosaic", type=Path, default=None, metavar="PATH",
                   help="videos and streams: every source in one grid with its labels, for a monitor: a video "
                        "(.mp4/.avi/.mkv, 10 frames/s of wall time) or an image (.jpg/.png, rewritten each second)")
    p.add_argument("--reconnect", type=float, default=30.0, metavar="SECONDS",
                   help="live streams: how long to keep reconnecting a lost stream before it counts as lost; the "
                        "others go on, and the run ends (exit 75) when every live source is lost")
    p.add_argument("--stop-on-loss", action="store_true",
                   help="several streams: end the run at the first source lost (exit 75) or video that cannot be "
                        "read (exit 1), instead of going on with the others")
    p.add_argument("--threshold", type=flags.probability, default=None, metavar="P",
                   help="multi-label models: print every label scoring above P (default: the model's, 0.5); "
                        "JSON rows carry every label's score either way")
    p.add_argument("--output", "-o", type=Path, default=None, metavar="FILE",
                   help="append one JSON line per image to FILE as each finishes (stdout then shows progress "
                        "only); refuses a FILE that already holds results unless --resume")
    p.add_argument("--resume", action="store_true",
                   help="with --output: skip inputs that FILE already has a row for (made by this model)")
    flags.add_engine_flags(p)
    p.add_argument("--batch-size", type=flags.positive_int, default=8, help="images per inference batch (default: 8)")
    flags.add_decode_flags(p)
    p.add_argument("--warmup", action="store_true",
                   help="load the model and run blank batches before any input: builds and caches the TensorRT "
                        "engine ahead of deployment (minutes, once), and with --engine auto measures the engine choice "
                        "until it is settled, so later runs do not measure; alone, exits 0 when done")
    p.add_argument("--quiet", "-q", action="store_true", help="no informational lines on stderr")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def format_predictions(predictions) -> list[str]:
    return [f"{i}. {p.label}: {p.probability * 100:.2f}%" for i, p in enumerate(predictions, 1)]


def format_result(res) -> list[str]:
    """Top-k lines; for a multi-label model, every label above the threshold instead."""
    if res.positive is None:
        return format_predictions(res.predictions)
    if not res.positive:
        return [f"(no label above {res.threshold:g})"]
    return [f"{p.label}: {p.probability * 100:.2f}%" for p in res.positive]


def main(argv: list[str] | None = None) -> int:
    if sys.stderr is None:  # started with stderr closed (2>&-): argparse would print to nowhere
        sys.stderr = open(os.devnull, "w")
    args = build_parser().parse_args(argv)
    if args.resume and args.output is None:
        build_parser().error("--resume needs --output FILE")
    try:
        return shell.run("edge-classify", lambda: _run(args))
    finally:
        _settle_stderr()


def _settle_stderr() -> None:
    """Every stderr line of this run is out before main returns (see codec_messages)."""
    if "edge_classify.runtime.images.codec_messages" in sys.modules:
        sys.modules["edge_classify.runtime.images.codec_messages"].settle()


def _run(args) -> int:
    from ..classifier import Classifier  # heavy imports only past argument parsing
    from ..results import display_name
    from .results_file import ResultsFile

    def info(msg: str) -> None:
        if not args.quiet:
            print(f"edge-classify: {msg}", file=sys.stderr)

    def warn(msg: str) -> None:
        print(f"edge-classify: warning: {msg}", file=sys.stderr)

    model = args.model or default_model_path()
    if args.model is None:
        _check_default_model(model)
    inputs = expand_inputs(args.inputs, warn) + [f"camera:{n}" for n in (args.camera or [])]
    videos: list = [a for a in inputs if _is_stream(a)]
    inputs = [a for a in inputs if a not in videos]
    if args.sources:
        from .multistream import read_sources_file

        for listed in args.sources:
            videos += read_sources_file(listed)
    if videos and args.output is not None:
        print("edge-classify: error: --output is for images; videos and streams print per-frame rows "
              "(--json) on stdout", file=sys.stderr)
        return EXIT_USAGE
    if (args.save is not None or args.mosaic is not None) and not videos:
        print("edge-classify: error: --save and --mosaic need a video or stream", file=sys.stderr)
        return EXIT_USAGE
    recorder = None
    if videos:
        from .multistream import Recorder, named_sources

        videos = named_sources(videos)
        recorder = Recorder(videos, save=args.save, mosaic=args.mosaic, every=args.every)  # paths checked now
    # auto: a small run goes to the leaner start-up
    options = flags.engine_options(args, images_hint=(len(inputs) or None) if not videos else None)
    decode = flags.decode_options(args)
    # Live streams alone: a round holds at most one frame per source, so the model is loaded,
    # measured and compiled for that batch. Loaded for 8, OpenVINO ran 4 cameras' rounds padded
    # to its batch-8 model: half of each inference wasted (186 against 360 frames/s, INT8
    # ResNet50). Video files alone fill whole batches (multistream.py).
    live = videos and not inputs and any(s.source.live for s in videos)
    batch = min(args.batch_size, len(videos)) if live else args.batch_size
    if args.warmup and args.engine == "auto":  # measure auto's choice now, not in the next runs' time
        from ..engines import loader

        t0 = time.perf_counter()
        choice = loader.settle(model, options, measure_batch=batch, on_status=info)
        info(f"engine choice settled in {time.perf_counter() - t0:.1f} s: {choice.engine} "
             f"({choice.reason.split(': ', 1)[-1]})")
    clf = Classifier(model, options, batch_size=batch, decode=decode, threshold=args.threshold, on_status=info)
    _render_report(clf, model, args.engine == "auto", info, warn)
    if args.threshold is not None and clf.threshold is None:
        warn(f"--threshold applies to multi-label models; this one has a {clf.contract.model.head} head (ignored)")
    if clf.contract.weights_origin == "random":
        warn("this model was exported with --weights random (smoke test): its predictions are meaningless")

    if args.warmup:
        took = clf.warmup(batch_sizes=(1, args.batch_size))
        info("warm-up: " + ", ".join(f"batch {n} in {ms:.1f} ms" for n, ms in took.items())
             + (f"; TensorRT engine cached under {args.trt_cache or default_trt_cache_dir()}"
                if clf.report.engine_built is not None else ""))
        if not inputs and not videos:
            return 0
    if not inputs and not videos:
        print("edge-classify: error: no images to classify", file=sys.stderr)
        return EXIT_USAGE

    results = None
    skipped = 0
    if args.output is not None:
        results = ResultsFile(args.output, clf.model_sha256, args.resume)
        if results.cut_partial_line:
            info(f"{args.output}: removed the incomplete last line a killed run left")
        if results.unreadable_lines:
            warn(f"{args.output}: {results.unreadable_lines} line(s) are not result rows; left as they are")
        if results.other_model_rows:
            warn(f"{args.output}: {results.other_model_rows} row(s) come from another model; "
                 "their inputs are classified again with this one")
        inputs, skipped = results.pending(inputs)  # each input once per results file
        if skipped:
            info(f"{skipped} input(s) already in {args.output}: skipped")

    failed = done = 0
    several = len(inputs) > 1
    first = True
    progress = shell.Progress("edge-classify", enabled=results is not None and not args.quiet)
    progress.count(len(inputs))
    try:
        for res in clf.iter_classify(inputs, top_k=args.top_k, errors="collect"):
            done += 1
            shown = display_name(res.source)
            if res.error:
                failed += 1
                print(f"edge-classify: {shown}: {res.error}", file=sys.stderr)
            for note in res.notes:
                warn(f"{shown}: {note}")
            if results is not None:
                results.write(clf.row(res))
                progress.step(failed)
            elif args.json:
                print(json.dumps(clf.row(res)), flush=True)
            elif not res.error:
                if several:
                    print(("" if first else "\n") + shown)
                print("\n".join(format_result(res)), flush=True)
                first = False
    finally:
        if results is not None:
            results.close()
        progress.finish(done, failed, skipped)
    frames_failed = _run_streams(clf, videos, recorder, args, info, warn) if videos else 0
    if failed:
        info(f"{failed} of {len(inputs)} input(s) could not be classified")
    return EXIT_INPUTS_FAILED if failed or frames_failed else EXIT_OK


def _render_report(clf, model, auto: bool, info, warn) -> None:
    """What loading decided (engines/loader.py's ``LoadReport``), as stderr lines."""
    m, r, report = clf.contract.model, clf.runner, clf.report
    info(f"model {model} ({m.arch} {m.precision}) on {r.engine} ({r.device}), computing in {r.precision}")
    if auto:
        info(f"engine: {report.engine_choice.engine} ({report.engine_choice.reason})")
    if report.cache_status == "stored":
        info("saved the optimised graph for this CPU; later runs start faster")
    for line in (report.cache_warning, report.provider_warning):
        if line:
            warn(line)
    for line in report.notes:
        info(line)
    if clf.decode_options.decode == "fast" or "fast_decode" in (clf.contract.parity or {}):
        info(f"decode: {clf.decode_options.decode} ({clf.decode_reason})")


def _is_stream(arg: str) -> bool:
    from .streams import is_video_path, parse_source

    src = parse_source(arg)
    if src.kind == "camera":
        return arg.startswith("camera:")  # bare digits stay file names; cameras come from --camera
    if src.kind == "gstreamer" and " ! " not in arg:  # a mistyped "a!b.jpg" is a missing file, not a pipeline
        return False
    return src.live or (os.path.isfile(arg) and is_video_path(arg))


def _run_streams(clf, sources, recorder, args, info, warn) -> int:
    """Videos and streams, all at once (apps/multistream.py); returns the frames and sources
    that failed or were lost. Ctrl-C ends a live run normally (the way to stop a camera), with
    each source's summary; with a video not read to its end it is still an interruption (130)."""
    from .multistream import MultiStream

    def event(st, kind, message):
        (warn if kind in ("lost", "failed") else info)(f"{st.name}: {message}")
        recorder.refresh([s.state for s in run.stats])

    run = MultiStream(clf, sources, every=args.every, top_k=args.top_k, reconnect_s=args.reconnect,
                      stop_on_loss=args.stop_on_loss, on_event=event)
    several = len(sources) > 1
    last_report = time.perf_counter()
    try:
        for r in run:
            res = r.classification
            if time.perf_counter() - last_report >= FPS_REPORT_EVERY_S:
                last_report = time.perf_counter()
                info(_rate_line(run, r))
            if res.error:
                print(f"edge-classify: {r.source} frame {r.frame}: {res.error}", file=sys.stderr)
            if args.json:
                print(json.dumps(r.row()), flush=True)
            elif not res.error:
                print(f"{r.source} frame {r.frame} @ {r.timestamp_ms / 1000:.2f}s")
                print("\n".join(format_result(res)), flush=True)
            recorder.write(r, [st.state for st in run.stats])
    except KeyboardInterrupt:
        info("interrupted" if several else f"{sources[0].name}: interrupted")
        if any(not st.live and st.active for st in run.stats):
            raise
    finally:
        run.close()
        saved = recorder.close([st.state for st in run.stats])
        for st in run.stats:
            info(st.summary())
        if several:
            took = max(time.perf_counter() - min(st.started for st in run.stats), 1e-9)
            total = sum(st.frames for st in run.stats)
            info(f"{len(sources)} sources: {total} frame(s) in {took:.1f} s ({total / took:.1f} frames/s), "
                 f"{run.rounds} batch(es)")
        if saved:
            info("saved " + ", ".join(str(p) for p in saved))
    # A source lost or failed while others went on: some input was not (wholly) classified, 1.
    return sum(st.failed for st in run.stats) + sum(st.state in ("failed", "lost") for st in run.stats)


def _rate_line(run, r) -> str:
    """The rolling-FPS line: one source's, or the total and each source's."""
    if len(run.stats) == 1:
        st = run.stats[0]
        return (f"{st.name}: frame {r.frame}, {st.rate.rate():.1f} frames/s (last {st.rate.window:.0f} s)"
                + (f", {st.dropped} dropped so far" if st.dropped else ""))
    parts = []
    for st in run.stats:
        part = f"{st.name} {st.rate.rate():.1f}/s"
        if st.dropped:
            part += f" ({st.dropped} dropped)"
        if st.state not in ("live", "playing"):
            part += f" [{st.state}]"
        parts.append(part)
    return f"{run.rate.rate():.1f} frames/s (last {run.rate.window:.0f} s): " + ", ".join(parts)


def _check_default_model(path: Path) -> None:
    """The default model lives in a folder that may be shared (EDGE_CLASSIFY_HOME): load it
    only if no other user could have put it there. A model named with --model is the
    user's own choice."""
    from ..cache.store import untrusted_reason

    try:
        why = untrusted_reason(os.stat(path))
    except OSError:
        return  # missing: Classifier says how to make one
    if why:
        raise EdgeClassifyError(f"the default model {path} is {why}; not loading it",
                                hint="re-export it with `export-model`, or pass --model PATH to use it anyway")


if __name__ == "__main__":
    sys.exit(main())
