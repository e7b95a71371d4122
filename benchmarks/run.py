"""``edge-bench``: the whole comparison in one command -> report.md, report.json, PNG plots.

    edge-bench                      # default run, ~5 minutes on 2 cores
    edge-bench --quick              # smoke run, under 2 minutes (what CI runs)
    edge-bench --model m.onnx --weights w.weights.h5 -o bench-out

Without ``--model``, it builds ResNet50 with random weights (seed 0; speed does not
depend on the weights, and the report says so), saves those weights for the Keras rows,
and exports FP32 + FP16 + INT8 (calibrated on the sample photos; not in --quick) with
``export-model``'s own pipeline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECTIONS = ["model", "latency", "throughput", "preprocessing", "cold start", "warm bulk", "report"]


class Progress:
    def __init__(self, quiet: bool = False):
        self.quiet, self.t0 = quiet, time.perf_counter()

    def section(self, name: str, detail: str = "") -> None:
        self.say(f"[{SECTIONS.index(name) + 1}/{len(SECTIONS)}] {name}" + (f": {detail}" if detail else ""))

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"  {time.perf_counter() - self.t0:6.1f}s {msg}", file=sys.stderr, flush=True)


PLANS = {
    # iterations per measurement
    "default": {"latency": 100, "throughput": {1: 30, 8: 6, 32: 3}, "cold_runs": 3, "bulk_images": 64, "bulk_rounds": 7,
                "preprocess_rounds": 5},
    "quick": {"latency": 8, "throughput": {1: 3, 8: 1, 32: 1}, "cold_runs": 1, "bulk_images": 16, "bulk_rounds": 1,
              "preprocess_rounds": 1, "throughput_warmup": 0},
}


def sample_photos() -> list[Path]:
    """The package's sample photos, plus scikit-image's full-size ones when installed."""
    from edge_classify.export.verify import sample_images

    photos = sample_images()
    try:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        photos += [data / f for f in ("astronaut.png", "coffee.png", "motorcycle_left.png", "rocket.jpg",
                                      "hubble_deep_field.jpg") if (data / f).is_file()]
    except ImportError:
        pass
    return photos


def prepare_model(out: Path, model: Path | None, weights: Path | None, prog: Progress, quick: bool = False) -> dict:
    """Exported FP32 (+FP16/INT8 if present) and the Keras weights they came from."""
    if model is not None:
        if weights is None:
            raise SystemExit("edge-bench: --model needs --weights (the Keras weights it was exported from)")
        sib = {pr: model.with_name(model.name.replace(".onnx", f".{pr}.onnx")) for pr in ("fp16", "int8")}
        return {"fp32": model, **{pr: (p if p.is_file() else None) for pr, p in sib.items()},
                "weights": weights, "origin": "given"}
    from edge_classify.export.keras_model import import_tensorflow
    from edge_classify.export.pipeline import export_model

    import_tensorflow()
    import keras

    mdir = out / "model"
    mdir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    weights = mdir / "resnet50-random.weights.h5"
    keras.applications.ResNet50(weights=None).save_weights(str(weights))
    calib = mdir / "calib"
    calib.mkdir(exist_ok=True)
    for p in sample_photos():
        shutil.copy(p, calib / p.name)
    int8 = len(list(calib.iterdir())) >= 8 and not quick
    prog.say(f"exporting FP32 + FP16{' + INT8' if int8 else ''} from random weights (seed 0) with export-model's pipeline")
    result = export_model(mdir / "resnet50.onnx", weights=str(weights), fp16=True, int8=int8,
                          calib=str(calib) if int8 else None, progress=False)
    files = {f.precision: f.path for f in result.files}
    return {"fp32": files["fp32"], "fp16": files.get("fp16"), "int8": files.get("int8"), "weights": weights,
            "origin": "random (seed 0)"}


def build_keras(weights: Path):
    from edge_classify.export.keras_model import import_tensorflow

    import_tensorflow()
    import keras

    m = keras.applications.ResNet50(weights=None)
    m.load_weights(str(weights))
    return m


def bench_latency(systems, x, plan, prog) -> dict:
    from .stats import alternate, summarize

    prog.section("latency", f"batch 1, {plan['latency']} alternating iterations of {len(systems)} systems")
    samples = alternate({s.name: (lambda s=s: s.run(x)) for s in systems}, plan["latency"], warmup=3,
                        progress=lambda m: prog.say(f"latency {m}"))
    return {name: summarize(v) for name, v in samples.items()}


def bench_throughput(make_systems, plan, prog) -> dict:
    from .stats import alternate, summarize

    prog.section("throughput", "batch 1, 8, 32")
    out: dict[str, dict] = {}
    rng = np.random.default_rng(1)
    for batch, iters in plan["throughput"].items():
        x = rng.uniform(-120, 150, (batch, 224, 224, 3)).astype(np.float32)
        systems = make_systems(batch)
        samples = alternate({s.name: (lambda s=s, x=x: s.run(x)) for s in systems}, iters,
                            warmup=plan.get("throughput_warmup", 1))
        for name, v in samples.items():
            st = summarize(v)
            out.setdefault(name, {})[str(batch)] = {"images_per_s": batch / (st["p50_ms"] / 1e3), **st}
        prog.say(f"batch {batch}: " + ", ".join(f"{n} {out[n][str(batch)]['images_per_s']:.1f} img/s" for n in samples))
    return out


def bench_preprocessing(photos, plan, prog) -> dict:
    import keras
    from keras.applications.resnet50 import preprocess_input

    from edge_classify.runtime import preprocess
    from edge_classify.runtime.contract import PreprocessSpec

    from .stats import alternate, summarize

    prog.section("preprocessing", f"{len(photos)} real photos, OpenCV path vs Keras load_img + preprocess_input")
    spec = PreprocessSpec.keras("caffe")

    def ours():
        return preprocess.preprocess(photos, spec)

    def theirs():
        arrays = [keras.utils.img_to_array(keras.utils.load_img(str(p), target_size=(224, 224))) for p in photos]
        return preprocess_input(np.stack(arrays))

    identical = float(np.abs(ours() - theirs()).max()) == 0.0
    samples = alternate({"edge-classify (OpenCV)": ours, "keras (PIL)": theirs}, 10 * plan["preprocess_rounds"], warmup=2)
    res = {}
    for name, v in samples.items():
        st = summarize([t / len(photos) for t in v])
        res[name] = {"ms_per_image_p50": st["p50_ms"], **st}
    res["identical_outputs"] = identical
    res["speedup"] = res["keras (PIL)"]["p50_ms"] / res["edge-classify (OpenCV)"]["p50_ms"]
    return res


def bench_cold_start(model, weights, image, plan, prog) -> dict:
    from .cold_start import run as cold_run

    prog.section("cold start", f"{plan['cold_runs']} alternating fresh processes each")
    return cold_run(str(model), str(weights), str(image), plan["cold_runs"], log=prog.say)


def bench_cold_by_precision(m: dict, precisions: list[str], image, runs: int, prog) -> dict:
    """Cold edge-classify per exported precision: wall and peak RSS (medians)."""
    import statistics

    from .cold_start import edge_command, measure

    out = {}
    for pr in precisions:
        rows = [measure(edge_command(str(m[pr]), str(image))) for _ in range(runs)]
        out[pr] = {"wall_s_median": statistics.median(r[0] for r in rows),
                   "peak_rss_mib_median": statistics.median(r[1] for r in rows), "runs": len(rows),
                   "size_mib": m[pr].stat().st_size / 2**20}
        prog.say(f"cold {pr}: {out[pr]['wall_s_median']:.2f} s, {out[pr]['peak_rss_mib_median']:.0f} MiB")
    return out


def bench_warm_bulk(model, photos, n, rounds, prog, batch=8) -> dict:
    """Classify a folder of JPEGs (decode + preprocess + inference, overlapped) vs pure
    inference on the same number of already-preprocessed images at the same batch size.

    Both are timed in alternating rounds within this section, so the ratio is not at the
    mercy of machine drift between sections.
    """
    import statistics

    import cv2

    from edge_classify.runtime import Classifier, preprocess

    prog.section("warm bulk", f"{n} images, batch {batch}, {rounds} alternating rounds")
    folder = Path(tempfile.mkdtemp(prefix="edge-bench-bulk-"))
    try:
        paths = []
        for i in range(n):  # distinct files: real photos re-encoded at varying quality
            img = preprocess.load(photos[i % len(photos)])
            p = folder / f"img{i:04d}.jpg"
            cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 70 + i % 25])
            paths.append(p)
        clf = Classifier(model, providers="cpu", batch_size=batch)
        tensor = preprocess.preprocess(paths[:batch], clf.contract.preprocess)
        clf.classify(paths[:batch])  # warm-up both paths
        clf.run(tensor)
        bulk, pure = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            results = clf.classify(paths, top_k=3)
            bulk.append(time.perf_counter() - t0)
            time.sleep(0.05)
            t0 = time.perf_counter()
            for _ in range(0, n, batch):
                clf.run(tensor)
            pure.append(time.perf_counter() - t0)
            time.sleep(0.05)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not all(r.ok for r in results):
        raise SystemExit("edge-bench: warm bulk: some images failed to classify")
    ips, pure_ips = n / statistics.median(bulk), n / statistics.median(pure)
    prog.say(f"bulk {ips:.1f} img/s vs pure inference {pure_ips:.1f} img/s")
    return {"images": n, "batch_size": batch, "rounds": rounds, "wall_s_median": statistics.median(bulk),
            "images_per_s": ips, "pure_inference_images_per_s": pure_ips, "ratio_vs_pure_inference": ips / pure_ips}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="edge-bench", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", type=Path, default=Path("bench-out"), help="output folder (default: bench-out)")
    p.add_argument("--quick", action="store_true", help="smoke run: few iterations, under 2 minutes")
    p.add_argument("--model", type=Path, default=None, help="exported FP32 .onnx (its .fp16.onnx sibling is used too)")
    p.add_argument("--weights", type=Path, default=None, help="Keras weights --model was exported from")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every runtime (default: each's own)")
    p.add_argument("--no-openvino", action="store_true", help="leave OpenVINO out even if installed")
    p.add_argument("--quiet", "-q", action="store_true")
    args = p.parse_args(argv)

    from . import report, systems
    from .env import environment

    plan = PLANS["quick" if args.quick else "default"]
    # Keep the runtime's optimised-graph cache with the report, not in ~/.cache.
    os.environ.setdefault("EDGE_CLASSIFY_HOME", str((args.out / "home").resolve()))
    prog = Progress(args.quiet)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    prog.section("model")
    m = prepare_model(args.out, args.model, args.weights, prog, quick=args.quick)
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras_model = build_keras(m["weights"])
    precisions = [pr for pr in ("fp32", "fp16", "int8") if m.get(pr)]
    have_ov = systems.openvino_available() and not args.no_openvino
    have_ovep = systems.ort_openvino_ep_available()
    notes = [f"weights: {m['origin']}; latency does not depend on weight values"]
    if not have_ov:
        notes.append("OpenVINO not installed (pip install openvino): peer rows skipped")
    if not have_ovep:
        notes.append("ONNX Runtime's OpenVINO execution provider not installed "
                     "(the onnxruntime-openvino distribution, extra [openvino]): its rows skipped")
    if not m.get("int8"):
        notes.append("no INT8 rows: --quick skips the INT8 export; otherwise export with --int8 --calib "
                     "(edge-bench calibrates on scikit-image's photos when it is installed)")

    x1 = np.random.default_rng(0).uniform(-120, 150, (1, 224, 224, 3)).astype(np.float32)
    lat_systems = [systems.keras_predict(keras_model), systems.keras_tf_function(keras_model)]
    lat_systems += [systems.edge(m[pr], pr, args.threads) for pr in precisions]
    if have_ovep:  # our runtime with --provider openvino, on the FP32 and INT8 files
        lat_systems += [systems.edge(m[pr], pr, args.threads, provider="openvino")
                        for pr in ("fp32", "int8") if m.get(pr)]
    if have_ov:
        lat_systems.append(systems.openvino(m["fp32"], 1, args.threads))
        if m.get("int8"):
            lat_systems.append(systems.openvino(m["int8"], 1, args.threads, label="int8"))
    reference = lat_systems[0].warm(x1)
    agreement = {}
    for s in lat_systems:
        agreement[s.name] = float(np.abs(s.warm(x1) - reference).max())
    latency = bench_latency(lat_systems, x1, plan, prog)

    edge_sessions = {s.name: s for s in lat_systems if s.kind == "edge"}

    def make_throughput(batch):
        rows = list(edge_sessions.values())
        if have_ov:
            rows.append(systems.openvino(m["fp32"], batch, args.threads))
            if m.get("int8"):
                rows.append(systems.openvino(m["int8"], batch, args.threads, label="int8"))
        return rows

    throughput = bench_throughput(make_throughput, plan, prog)
    photos = sample_photos()
    prep = bench_preprocessing(photos, plan, prog)
    cold = bench_cold_start(m["fp32"], m["weights"], photos[0], plan, prog)
    cold["by_precision"] = bench_cold_by_precision(m, precisions, photos[0], plan["cold_runs"], prog)
    bulk = bench_warm_bulk(m["fp32"], photos, plan["bulk_images"], plan["bulk_rounds"], prog)

    prog.section("report", str(args.out))
    data = report.assemble(
        mode="quick" if args.quick else "default",
        environment=environment({"requested": args.threads}),
        model={"arch": "resnet50", "weights": m["origin"],
               "files": {pr: {"path": str(m[pr]), "size_mib": m[pr].stat().st_size / 2**20} for pr in precisions}},
        systems=lat_systems, agreement=agreement, latency=latency, throughput=throughput,
        preprocessing=prep, cold_start=cold, warm_bulk=bulk, notes=notes,
        wall_s=time.perf_counter() - t_start,
    )
    report.write(args.out, data)
    print(report.headline(data))
    print(f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
