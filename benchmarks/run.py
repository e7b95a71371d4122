"""``edge-bench``: the whole comparison in one command -> report.md, report.json, PNG plots.

    edge-bench                      # default run, 7-9 minutes on 2 cores (2 of them INT8 fidelity)
    edge-bench --quick              # smoke run, under 2 minutes (what CI runs)
    edge-bench --model m.onnx --weights w.weights.h5 -o bench-out    # a keras.applications export
    edge-bench --model m.onnx --keras-model my.keras -o bench-out    # an export of your own model
    edge-bench --model m.onnx --no-keras --provider tensorrt -o bench-out   # a Jetson: no TensorFlow, on TensorRT

Without ``--model``, it builds ResNet50 with random weights (seed 0; speed does not
depend on the weights, and the report says so), saves those weights for the Keras rows,
and exports FP32 + FP16 + INT8 (calibrated on the sample photos; not in --quick) with
``export-model``'s own pipeline. Random weights say nothing about INT8's fidelity, so a run
with INT8 rows and TensorFlow also trains a small classifier and measures INT8 against FP32
on it, ours and NNCF's (int8_fidelity.py, about 2 minutes, cached in ``OUT/int8-fidelity``):
the INT8 rows' fidelity column. ``--quick`` has no INT8 rows and skips it.

With ``--model``, the input size, class count and preprocessing come from the file's
contract, and the Keras rows load the model it was exported from: your model file
(``--keras-model``), or the contract's keras.applications arch with ``--weights``. Every
timed system runs in its own worker process (worker.py); this process only conducts, and
never imports TensorFlow.

``--no-keras`` leaves out everything that needs TensorFlow (the Keras rows, Keras'
preprocessing, the Keras cold-start script): what a Jetson can run. ``--provider`` is ONNX
Runtime's provider for edge-classify's timed rows (default cpu); auto, cuda or tensorrt
also apply to its cold-start and warm-bulk sections, which otherwise run with the CLI's
default (auto). A TensorRT engine is built when a row's worker loads the model, before
anything is timed. The peers stay on the CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

from .model_files import calibration_photos, read_contract, sample_photos

SECTIONS = ["model", "latency", "throughput", "isolation", "preprocessing", "cold start", "warm bulk", "report"]


class Progress:
    def __init__(self, quiet: bool = False):
        self.quiet, self.t0 = quiet, time.perf_counter()

    def section(self, name: str, detail: str = "") -> None:
        self.say(f"[{SECTIONS.index(name) + 1}/{len(SECTIONS)}] {name}" + (f": {detail}" if detail else ""))

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"  {time.perf_counter() - self.t0:6.1f}s {msg}", file=sys.stderr, flush=True)


PLANS = {
    # latency: (rounds, calls per round); throughput: batch -> (rounds, calls per round)
    # A batch size a worker has not run yet gets one untimed call first (worker.py: "ready"),
    # so throughput needs no further warm-up. --quick, a smoke run, saves that call, settles
    # engine="auto"'s choice for the FP32 file only (the cold-start and warm-bulk file), skips
    # the per-precision cold runs, and builds the workers in parallel.
    "default": {"latency": (20, 5), "throughput": {1: (10, 3), 8: (8, 1), 32: (3, 1)}, "throughput_warmup": 0,
                "ready_run": True, "gap_s": 0.05, "cold_runs": 3, "cold_by_precision": True, "bulk_images": 64,
                "bulk_rounds": 7, "bulk_file": "best edge mode", "preprocess_rounds": 20, "parallel_build": False,
                "settle_engine_choice": ("fp32", "fp16", "int8"), "camera_photos": 16, "camera_rounds": 3},
    "quick": {"latency": (4, 2), "throughput": {1: (2, 2), 8: (2, 1), 32: (1, 1)}, "throughput_warmup": 0,
              "ready_run": False, "gap_s": 0.02, "cold_runs": 1, "cold_by_precision": False, "bulk_images": 16,
              "bulk_rounds": 1, "bulk_file": "fp32", "preprocess_rounds": 3, "parallel_build": True,
              "settle_engine_choice": ("fp32",), "camera_photos": 0, "camera_rounds": 0},
}


def peer_source(m: dict) -> Path:
    """The FP32 file peers start from: tf2onnx's output as converted (no edge-classify
    rewrites) when the export kept it, else our FP32 file."""
    return m.get("tf2onnx") or m["fp32"]


def quantize_for_peer(m: dict, out: Path, prog: Progress, name: str) -> tuple[Path | None, str | None]:
    """NNCF INT8 of the FP32 file on the same calibration photos, in a throwaway worker;
    ``name``: the model's, for the file name."""
    from dataclasses import asdict

    from .pool import WorkerError, slug, task

    photos = calibration_photos(m["fp32"])
    try:
        res = task("nncf_quantize", {"model": str(peer_source(m)), "calib": [str(p) for p in photos],
                                     "preprocess": asdict(m["contract"].preprocess),
                                     "save": str(out / "model-nncf" / f"{slug(name)}.nncf-int8.xml")},
                   out / "workers")
    except WorkerError as exc:
        return None, f"NNCF quantization failed, its peer row skipped: {exc}"
    prog.say(f"NNCF int8 for the peer: {res['calibration_images']} calibration photos, {res['quantize_s']:.1f} s")
    return Path(res["path"]), (f"OpenVINO NNCF int8: nncf {res['nncf']} quantize() of {peer_source(m).name} on the "
                               f"{res['calibration_images']} photos our INT8 file was calibrated on "
                               f"({res['quantize_s']:.1f} s), saved as OpenVINO IR")


def int8_fidelity(out: Path, prog: Progress) -> dict:
    """INT8 fidelity against FP32 on a classifier trained here (int8_fidelity.py, without its
    timing), in a child process: the ResNet50 these rows time has random weights, on which
    agreement with FP32 says nothing about a real model. The trained model is cached in
    ``out/int8-fidelity/cache``."""
    import json
    import subprocess

    prog.say("INT8 fidelity on a trained classifier: training (cached after), export, quantizing "
             "(python -m edge_classify.benchmarks.int8_fidelity --no-speed)")
    folder = out / "int8-fidelity"
    p = subprocess.run([sys.executable, "-m", "edge_classify.benchmarks.int8_fidelity", "--out", str(folder),
                        "--no-speed", "--quiet"], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        return {"skipped": f"int8_fidelity failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}"}
    d = json.loads((folder / "report.json").read_text())
    prog.say(f"INT8 fidelity on a trained classifier: done ({d['wall_s']:.0f} s)")
    return {k: d[k] for k in ("what", "model", "calibration_images", "heldout_images", "reference", "quantizers",
                              "fidelity", "targets_vs_nncf", "wall_s")}


def engine_auto(files: dict, threads, out: Path, prog: Progress, settle: tuple[str, ...], max_runs: int = 4) -> dict:
    """What ``Classifier(engine="auto")`` picks per file, in fresh processes before anything
    else runs: on first sight of a model, auto times both engines, over its first few runs.
    Those runs happen here, until the choice is settled, so that the cold-start and warm-bulk
    sections time the steady state (as they do for the optimised-graph cache) instead of a
    run that is also measuring engines."""
    from .pool import WorkerError, task

    picks = {}
    for pr, path in files.items():
        try:
            for run in range(1, (max_runs if pr in settle else 1) + 1):
                pick = task("engine_choice", {"model": str(path), "threads": threads}, out / "workers",
                            label=f"engine-auto-{pr}")
                pick["runs_measuring"] = run if pick["measured_now"] else run - 1
                if pick["settled"] or not pick["measured_now"]:
                    break
            picks[pr] = pick
            prog.say(f"engine auto, {pr} file: {pick['engine']} ({pick['reason']})")
        except WorkerError as exc:
            picks[pr] = {"error": str(exc).splitlines()[0]}
    return picks


GPU_PROVIDERS = ("cuda", "tensorrt")


def check_provider(requested: str) -> None:
    """Fail before anything is measured when this ONNX Runtime lacks the provider: the
    Classifier's own error (exit 3, with the providers there are), not a CPU run in disguise."""
    from edge_classify.runtime.engines.providers import plan_providers
    from edge_classify.runtime.host import deps

    plan_providers(requested, deps.onnxruntime().get_available_providers())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-bench", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", type=Path, default=Path("bench-out"), help="output folder (default: bench-out)")
    p.add_argument("--quick", action="store_true", help="smoke run: few iterations, under 2 minutes")
    p.add_argument("--model", type=Path, default=None,
                   help="exported FP32 .onnx (its .fp16.onnx / .int8.onnx siblings are used too)")
    p.add_argument("--weights", type=Path, default=None,
                   help="Keras weights --model was exported from (a keras.applications export)")
    p.add_argument("--keras-model", type=Path, default=None,
                   help="your Keras model (.keras, .h5 or SavedModel folder) --model was exported from")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every runtime (default: each's own)")
    p.add_argument("--no-openvino", action="store_true", help="leave OpenVINO out even if installed")
    p.add_argument("--no-keras", action="store_true",
                   help="no Keras rows, no Keras preprocessing or cold-start script: nothing imports TensorFlow "
                        "(for a Jetson; needs --model)")
    p.add_argument("--provider", default="cpu", choices=["auto", "cpu", "cuda", "tensorrt"],
                   help="ONNX Runtime provider for edge-classify's timed rows (default: cpu); auto, cuda and "
                        "tensorrt also apply to its cold-start and warm-bulk sections")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.model is None and (args.weights or args.keras_model):
        p.error("--weights and --keras-model name what --model was exported from: give --model too")
    if args.no_keras and args.model is None:
        p.error("--no-keras needs --model: without it, edge-bench exports a model, which needs TensorFlow")
    if args.no_keras and (args.weights or args.keras_model):
        p.error("--no-keras leaves the Keras model out: drop --weights / --keras-model")
    from edge_classify.runtime.errors import EdgeClassifyError

    try:
        return _run(args)
    except EdgeClassifyError as exc:
        print(f"edge-bench: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return exc.exit_code


def _run(args) -> int:
    from edge_classify.runtime.engines.providers import SHORT
    from edge_classify.runtime.errors import EdgeClassifyError

    from . import (
        cold_start,
        inference,
        lineup,
        model_files,
        peak,
        preprocessing,
        report,
        systems,
        warm_bulk,
    )
    from .env import cpu_flag_set, environment
    from .pool import Pool

    check_provider(args.provider)
    if importlib.util.find_spec("matplotlib") is None:  # the plots come last: say so before minutes of timing
        raise EdgeClassifyError("matplotlib is not installed (the report's plots)",
                                hint="pip install matplotlib, or the [bench] extra", exit_code=2)
    plan = PLANS["quick" if args.quick else "default"]
    # --provider cpu times the rows on the CPU and leaves the other sections on the CLI's
    # default (auto), as before; a GPU provider or auto is what every edge-classify section runs.
    sections_provider = None if args.provider == "cpu" else args.provider
    gpu = args.provider in GPU_PROVIDERS
    # Keep the runtime's caches (optimised graphs, engine choices) with the report, not in ~/.cache.
    os.environ.setdefault("EDGE_CLASSIFY_HOME", str((args.out / "home").resolve()))
    prog = Progress(args.quiet)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    env = environment({"requested": args.threads})

    prog.section("model")
    m = model_files.prepare(args.out, args.model, args.weights, prog.say, quick=args.quick,
                            keras_model=args.keras_model, keras=not args.no_keras)
    files = {pr: m[pr] for pr in ("fp32", "fp16", "int8") if m.get(pr)}
    described = model_files.describe(m["contract"])
    pre = m["contract"].preprocess
    prog.say(f"model: {described['label']}, {described['source']}; preprocessing {pre.mode}, resize {pre.resize}")
    have_ov = systems.openvino_available() and not args.no_openvino
    engines = ["onnxruntime"] + (["openvino"] if have_ov else [])
    notes = [f"weights: {m['origin']}; latency does not depend on weight values"]
    skipped_rows = {}
    if m["keras"] is None:
        skipped_rows = {lineup.KERAS_PREDICT: "--no-keras", lineup.TF_FUNCTION: "--no-keras"}
        notes.append("Keras skipped (--no-keras): no Keras rows, the preprocessing section times the OpenCV path "
                     "alone and the cold start edge-classify alone; nothing in this run needs TensorFlow. Ratios "
                     "against Keras are n/a")
    if args.provider != "cpu":
        notes.append(f"edge-classify's onnxruntime rows asked for --provider {args.provider} (each row's provider "
                     "says what ran), and so did its cold-start and warm-bulk sections; the peers and the openvino "
                     "engine's rows run on the CPU" + (", so the ratios to the strongest peer compare the GPU with "
                                                       "the CPU" if gpu else ""))
    if m.get("sha_note"):
        notes.append(m["sha_note"])
        prog.say(f"note: {m['sha_note']}")
    if not have_ov:
        notes.append("OpenVINO not installed (pip install openvino, the [bench] extra) or --no-openvino: the "
                     "OpenVINO peers and edge-classify's openvino rows skipped")
    if not systems.ort_openvino_ep_available():
        notes.append("ONNX Runtime's OpenVINO execution provider not installed (onnxruntime-openvino, "
                     "extra [ort-openvino]): its rows skipped")
    notes.append(f"peers start from {peer_source(m).name}"
                 + (": tf2onnx's output as converted, without edge-classify's exact graph rewrite"
                    if m.get("tf2onnx") else ": the same FP32 file as edge-classify (no tf2onnx output beside it)"))
    if not m.get("int8"):
        notes.append("no INT8 rows: " + (f"no {args.model.name.replace('.onnx', '.int8.onnx')} beside --model"
                                         if args.model else "--quick skips the INT8 export")
                     + "; export with --int8 --calib to time one")

    # The INT8 peer exists exactly when INT8 edge rows do: without it, an INT8 edge mode
    # would be compared with FP32 peers.
    nncf_ir = None
    if have_ov and m.get("int8") and systems.nncf_available():
        nncf_ir, note = quantize_for_peer(m, args.out, prog, described["name"])
        notes.append(note)
    elif have_ov:
        notes.append("OpenVINO NNCF int8 peer skipped: " + ("no INT8 file to match (--quick skips the INT8 export)"
                                                           if not m.get("int8") else "nncf not installed"))
    if m.get("int8") and nncf_ir is None:
        notes.append("no INT8 peer: the headline compares the best edge mode, possibly INT8, with FP32 peers")
    if not m.get("int8"):
        fidelity8 = {"skipped": "no INT8 rows in this run"}
    elif m["keras"] is None:
        fidelity8 = {"skipped": "--no-keras: training the classifier needs TensorFlow"}
    else:
        fidelity8 = int8_fidelity(args.out, prog)
        fidelity8["activations"] = ((read_contract(m["int8"]).parity or {}).get("quantization") or {}).get("activations")
    if "skipped" in fidelity8:
        notes.append(f"INT8 fidelity on a trained model not measured: {fidelity8['skipped']}")
    if gpu:  # a named ONNX Runtime provider decides the engine: nothing to measure
        picks = {}
        notes.append(f"engine=\"auto\" not measured: with --provider {args.provider} the engine is onnxruntime")
    else:
        picks = engine_auto(files, args.threads, args.out, prog, plan["settle_engine_choice"])
    unsettled = [pr for pr, p in picks.items() if not p.get("settled", True)]
    if unsettled:
        notes.append(f"engine=\"auto\" has not settled its choice for the {', '.join(unsettled)} file(s)"
                     + (" (--quick settles only the FP32 file's)" if args.quick else "")
                     + ": runs of those may still time both engines")
    if not plan["cold_by_precision"]:
        notes.append("--quick: no per-precision cold runs")
    if not plan["ready_run"]:
        notes.append("--quick: the first call at each throughput batch size is timed (no untimed first call)"
                     + ("; rows on a GPU provider still run clf.warmup at each batch size before it is timed"
                        if args.provider != "cpu" else ""))

    specs = ((lineup.keras_specs(m["keras"], inference.input_shape(pre), args.threads) if m["keras"] else [])
             + lineup.edge_specs(files, engines, args.threads, systems.ort_openvino_ep_available(), args.provider)
             + lineup.peer_specs(peer_source(m), m.get("int8"), nncf_ir, have_ov, args.threads))
    inputs = inference.write_inputs(args.out / "inputs", [1, *plan["throughput"]], pre)
    # On a GPU, one build at a time: TensorRT engine builds take the GPU (and a Jetson's shared memory).
    parallel = plan["parallel_build"] and args.provider == "cpu"
    with Pool(args.out / "workers") as pool:
        prog.say(f"building {len(specs)} systems, one worker process each" + (" (in parallel)" if parallel else ""))
        for spec, err in pool.build(specs, parallel=parallel):
            first = err.splitlines()[0]
            if spec.get("kind", "").startswith("peer") or spec.get("engine", "onnxruntime") != "onnxruntime":
                notes.append(f"{spec['name']} skipped: {first}")
                skipped_rows[spec["name"]] = first
            elif spec["type"] == "keras":
                raise SystemExit(f"edge-bench: {err}\nhint: --no-keras times edge-classify and its peers without "
                                 "the Keras rows (no TensorFlow needed)")
            elif gpu and spec.get("file_precision") != "fp32":  # e.g. an INT8 file TensorRT refuses
                notes.append(f"{spec['name']} skipped on {args.provider}: {first}")
                skipped_rows[spec["name"]] = first
            else:
                print(f"edge-bench: {err}", file=sys.stderr)
                return 3  # as edge-classify: the model or the provider cannot run
        if parallel:
            notes.append("--quick builds the systems in parallel: their create_s include waiting for the CPU")
        agreement = inference.outputs(list(pool), inputs[1], args.out / "outputs", lineup.KERAS_PREDICT,
                                      m["contract"].model)

        rounds, iters = plan["latency"]
        prog.section("latency", f"batch 1, {rounds} rounds x {iters} calls of {len(pool.workers)} workers")
        lat = inference.latency(list(pool), inputs[1], plan, prog.say)
        rows = {w.name: {"kind": w.meta["kind"], "precision": w.meta["precision"],
                         "engine": w.meta["info"].get("engine"), "device": w.meta["info"].get("device"),
                         "provider": w.meta["info"].get("provider"),
                         **lat[w.name], "create_s": w.meta["create_s"], **agreement[w.name],
                         "notes": w.meta["notes"], "info": w.meta["info"]} for w in pool}

        prog.section("throughput", "batch " + ", ".join(map(str, plan["throughput"])))
        tp_workers = [w for w in pool if w.meta["kind"] != "keras"]
        throughput = inference.throughput(tp_workers, inputs, plan, prog.say)

        best_edge = min((n for n in rows if rows[n]["kind"] == "edge"), key=lambda n: rows[n]["p50_ms"])
        prog.section("isolation", f"{best_edge} alone, every other worker shut down")
        isolation = inference.isolation(pool, best_edge, inputs[1], plan, rows[best_edge], prog.say)

    sgemm = peak.measured_sgemm()  # every worker is shut down: all cores for the matrix multiply
    prog.say(f"FP32 GEMM reference ({sgemm['blas']}): {sgemm['sgemm_ops_per_s'] / 1e9:.0f} Gflop/s")

    keras = m["keras"] is not None
    prog.section("preprocessing", "OpenCV path vs Keras load_img + preprocess_input, one worker each" if keras
                 else "OpenCV path alone (--no-keras)")
    photos = sample_photos()
    prep = preprocessing.run(photos, plan, args.out, prog.say, pre, keras=keras)

    prog.section("cold start", f"{plan['cold_runs']} alternating fresh processes each" if keras
                 else f"{plan['cold_runs']} fresh edge-classify processes (--no-keras)")
    cold = cold_start.run(str(m["fp32"]), m["keras"], str(photos[0]), plan["cold_runs"], log=prog.say,
                          provider=sections_provider)
    if plan["cold_by_precision"]:
        cold["by_precision"] = cold_start.by_precision(files, str(photos[0]), plan["cold_runs"], log=prog.say,
                                                       provider=sections_provider)

    bulk_file = files["fp32"]
    if plan["bulk_file"] == "best edge mode":
        bulk_file = files[rows[best_edge]["info"].get("file_precision", "fp32")]
    prog.section("warm bulk", f"{plan['bulk_images']} images, batch 8, {plan['bulk_rounds']} rounds, {bulk_file.name}")
    bulk = warm_bulk.run(bulk_file, photos, plan["bulk_images"], plan["bulk_rounds"], prog.say,
                         gap_s=plan["gap_s"], providers=sections_provider or "auto")

    camera = None
    if plan["camera_photos"]:  # camera-size JPEGs (benchmarks/camera_photos.py): exact vs fast decode, whole pipeline
        from . import camera_decode, camera_photos

        prog.section("camera photos", f"{plan['camera_photos']} JPEGs of 8-20 MP, exact vs fast decode, {bulk_file.name}")
        folder = camera_photos.build(n=plan["camera_photos"], say=prog.say)
        camera = camera_decode.run(bulk_file, folder, plan["camera_rounds"], 8, "auto", say=prog.say, keras_loop=keras)
        r = camera["ratios_per_round"]
        notes.append(f"camera-size photos ({camera['images']} JPEGs, 8-20 MP; {camera['engine']}): exact decode "
                     f"{camera['images_per_s']['exact']:.1f} img/s ({r['exact_vs_pipeline_bound']['median']:.2f}x its "
                     f"pipeline bound), fast decode {camera['images_per_s']['fast']:.1f} img/s "
                     f"({r['fast_vs_exact_images_per_s']['median']:.2f}x exact)"
                     + (f"; fast decode's wall {r['fast_wall_vs_keras']['median']:.2f}x the Keras loop's"
                        if "fast_wall_vs_keras" in r else "") + " (report.json: camera_decode)")
    else:
        notes.append("--quick: no camera-size photo section (exact vs fast decode)")

    prog.section("report", str(args.out))
    try:
        env["load_average_at_end"] = os.getloadavg()
    except OSError:
        pass
    best_on = rows[best_edge]["info"].get("device")
    peak_ops = peak.report(throughput[best_edge]["8"]["images_per_s"], rows[best_edge]["precision"], best_edge,
                           m["fp32"], env["cpu_for_peak"], cpu_flag_set(), sgemm,
                           gpu=best_on if SHORT.get(best_on) in GPU_PROVIDERS else None)
    data = report.assemble(
        mode="quick" if args.quick else "default", plan=plan, environment=env,
        model={**described, "weights": m["origin"], "keras": m["keras"],
               "files": {pr: {"path": str(f), "size_mib": f.stat().st_size / 2**20} for pr, f in files.items()}},
        rows=rows, throughput=throughput, isolation=isolation, engine_auto=picks, preprocessing=prep,
        cold_start=cold, warm_bulk=bulk, peak_ops=peak_ops, notes=notes, wall_s=time.perf_counter() - t_start,
        skipped_rows=skipped_rows, provider={"rows": args.provider, "sections": sections_provider or "auto"},
        int8_fidelity=fidelity8,
    )
    if camera is not None:
        data["camera_decode"] = camera
    report.write(args.out, data)
    print(report.headline(data))
    print(f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
