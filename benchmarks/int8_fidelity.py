"""INT8 fidelity on a classifier trained here: our quantizer against NNCF's, on both engines.

    python -m edge_classify.benchmarks.int8_fidelity --out DIR [--cache DIR] [--rounds N] [--no-speed]

A 5-class MobileNetV2 (alpha 0.35, 96x96, Rescaling inside) is trained from scratch on
crops of scikit-image's bundled photos (which photo a crop comes from is its class), then
exported to FP32 ONNX with ``export-model``'s pipeline. The FP32 file is quantized by:

- ours, as ``export-model --int8`` does it (export/quantize.py), in int8 (``s8``,
  TensorRT's) and uint8 (``u8``, the x86 default) activations; and "before": the same
  without ``quantize.prepare`` (BatchNorm folding, float head), as it was before;
- NNCF (``nncf.quantize``, ONNX backend, default settings: its fast bias correction on);
- NNCF's OpenVINO backend on the same file ("nncf IR"), as edge-bench's INT8 peer runs it,

all calibrated on the same 120 crops. Every INT8 file is compared with FP32 (ONNX Runtime
CPU) on 140 held-out crops, on ONNX Runtime CPU and on OpenVINO CPU (the IR on OpenVINO
only): top-1 agreement, mean and max |dp|, accuracy. Then the ONNX files are timed at
batch 8 on both engines, each in its own worker process (worker.py), alternating round
by round; the ratio to NNCF's file is the median of per-round ratios with its spread.
``--no-speed`` (edge-bench's use) stops after the fidelity.

The trained model and the crops are kept in ``--cache`` (default ``DIR/cache``): a
second run reuses them. The runtime's caches go to ``DIR/home`` (``EDGE_CLASSIFY_HOME``). TensorFlow is imported only to train and export.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Which photo a crop comes from is its class: two textures, two scenes with much in common
# (dark backgrounds, skin and metal tones) and a cat, so that some crops are ambiguous and
# the classifier's held-out predictions are not all certainties.
CLASSES = {"brick": "brick.png", "cat": "chelsea.png", "coffee": "coffee.png", "gravel": "gravel.png",
           "rocket": "rocket.jpg"}
SIZE = (96, 96)
SPLITS = {"train": 100, "calib": 24, "heldout": 28}  # crops per class: 500 / 120 / 140
SEED = 2112
EPOCHS = 12  # held-out accuracy 0.936, median top probability 0.9997 (seed 2112)


def _crop(rng: np.random.Generator, img, out: Path, jpeg: bool) -> None:
    from PIL import Image, ImageEnhance

    w, h = img.size
    side = int(rng.uniform(0.2, 0.55) * min(w, h))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    c = img.crop((x, y, x + side, y + side))
    if rng.random() < 0.5:
        c = c.transpose(Image.FLIP_LEFT_RIGHT)
    c = ImageEnhance.Brightness(c).enhance(rng.uniform(0.7, 1.3))
    c = ImageEnhance.Contrast(c).enhance(rng.uniform(0.7, 1.3))
    c = ImageEnhance.Color(c).enhance(rng.uniform(0.6, 1.4))
    n = int(rng.integers(64, 161))  # not the input size: the runtime's resize matters
    a = np.asarray(c.resize((n, n), Image.BICUBIC), np.float32) + rng.normal(0, 4, (n, n, 3))
    c = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if jpeg:
        c.save(out.with_suffix(".jpg"), quality=int(rng.integers(85, 96)))
    else:
        c.save(out.with_suffix(".png"))


def make_crops(root: Path, seed: int = SEED) -> dict[str, list[Path]]:
    """``root/<split>/<class>/*.png|jpg`` (made once; a later call lists what is there)."""
    import skimage
    from PIL import Image

    done = root / "crops.json"
    if not done.is_file():
        data = Path(skimage.__file__).parent / "data"
        rng = np.random.default_rng(seed)
        for cls, name in CLASSES.items():
            img = Image.open(data / name).convert("RGB")
            for split, n in SPLITS.items():
                folder = root / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    _crop(rng, img, folder / f"{cls}-{i:03d}", jpeg=i % 3 == 2)
        done.write_text(json.dumps({"classes": CLASSES, "splits": SPLITS, "seed": seed, "size": SIZE}))
    return {split: sorted((root / split).glob("*/*.*")) for split in SPLITS}


def train(root: Path, crops: dict[str, list[Path]], seed: int = SEED) -> Path:
    """MobileNetV2(alpha 0.35) from scratch on the train crops -> ``root/model.keras`` (cached)."""
    path = root / "model.keras"
    if path.is_file():
        return path
    from edge_classify.export.keras_model import import_tensorflow

    import_tensorflow()
    import keras
    from keras import layers

    from edge_classify.runtime.images.preprocess import preprocess
    from edge_classify.runtime.model.contract import PreprocessSpec

    keras.utils.set_random_seed(seed)
    spec = PreprocessSpec(mode="raw", color_order="RGB", mean=None, input_size=SIZE, resize="bilinear")
    x = preprocess(crops["train"], spec)  # the runtime's own pixels: what the model will be fed
    labels = sorted(CLASSES)
    y = np.array([labels.index(p.parent.name) for p in crops["train"]])
    backbone = keras.applications.MobileNetV2(alpha=0.35, weights=None, include_top=False, input_shape=(*SIZE, 3))
    inp = keras.Input((*SIZE, 3))
    h = layers.GlobalAveragePooling2D()(backbone(layers.Rescaling(1 / 127.5, offset=-1)(inp)))
    model = keras.Model(inp, layers.Dense(len(labels), activation="softmax")(h))
    # As tests/trained_models.py: BatchNorm momentum 0.8 while training (a short training
    # leaves 0.99's moving statistics far from the data), XLA off (its compile costs more
    # than the epochs on 2 cores), a batch size that divides the data.
    bns = [lay for lay in model._flatten_layers() if isinstance(lay, layers.BatchNormalization)]
    for lay in bns:
        lay.momentum = 0.8
    model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9), loss="sparse_categorical_crossentropy",
                  jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    flip = x[:, :, ::-1]
    model.fit(np.concatenate([x, flip]), np.concatenate([y, y]), epochs=EPOCHS, batch_size=50, shuffle=True,
              verbose=0)
    for lay in bns:
        lay.momentum = 0.99
    model.save(path)
    return path


def export_fp32(keras_path: Path, crops: dict[str, list[Path]], out: Path) -> Path:
    """FP32 ONNX with export-model's own pipeline (cached beside the Keras model)."""
    path = out / "model.onnx"
    if path.is_file():
        return path
    from edge_classify.export.pipeline import export_model
    from edge_classify.export.request import ExportRequest

    export_model(ExportRequest(path, keras_model=keras_path, labels_from_dir=keras_path.parent / "train",
                               preprocess="raw", resize="bilinear", verify_images=crops["heldout"][::14]))
    return path


def as_int8_file(data: bytes, contract) -> bytes:
    """``data`` carrying ``contract`` with precision int8 (NNCF's output keeps the FP32 file's)."""
    from dataclasses import replace

    from edge_classify.export import convert
    from edge_classify.export.pipeline import onnx_load

    proto = onnx_load(data)
    convert.attach_contract(proto, replace(contract, model=replace(contract.model, precision="int8")))
    return proto.SerializeToString()


def quantize_ours(fp32: bytes, calib: list[Path], contract, activations: str, before: bool = False,
                  method: str = "minmax") -> bytes:
    """What ``export-model --int8`` writes: the graph's exact INT8 rewrites, quantize.prepare
    (BatchNorm folded, float head), then quantize.onnx_to_int8, as pipeline._int8 does, with
    the contract re-attached. ``before``: without quantize.prepare, as before it existed."""
    from edge_classify.export import convert, graph_passes, quantize
    from edge_classify.export.pipeline import onnx_load

    source = onnx_load(fp32)
    graph_passes.optimize(source, graph_passes.INT8_EXTRA)
    exclude = [] if before else quantize.prepare(source)["exclude"]
    q = quantize.onnx_to_int8(source.SerializeToString(), calib, contract.preprocess, convert.INPUT_NAME, method,
                              activations, exclude=exclude)
    return as_int8_file(q, contract)


def quantize_nncf(fp32: bytes, x_calib: np.ndarray, contract) -> bytes:
    """``nncf.quantize`` on the FP32 ONNX file (ONNX backend, default settings: fast bias
    correction on), one calibration image per item, all of them used."""
    import logging

    import nncf

    from edge_classify.export import convert
    from edge_classify.export.pipeline import onnx_load

    logging.getLogger("nncf").setLevel(logging.ERROR)
    data = nncf.Dataset([{convert.INPUT_NAME: x_calib[i:i + 1]} for i in range(len(x_calib))])
    q = nncf.quantize(onnx_load(fp32), data, subset_size=len(x_calib))
    return as_int8_file(q.SerializeToString(), contract)


ENGINES = ("onnxruntime", "openvino")
NNCF_IR = "nncf IR"  # edge-bench's peer: NNCF's OpenVINO backend, run by OpenVINO with its default config
QUANTIZERS = {
    "ours u8": "export-model --int8 (u8 activations: auto's choice on x86-64), minmax; BatchNorm folded, float head",
    "ours s8": "export-model --int8 --int8-activations s8 (TensorRT's form), minmax; BatchNorm folded, float head",
    "ours u8 before": "as ours u8, without quantize.prepare (BatchNorm left as Mul/Add, the head quantized)",
    "ours s8 before": "as ours s8, without quantize.prepare (BatchNorm left as Mul/Add, the head quantized)",
    "nncf": "nncf.quantize, ONNX backend, default settings (fast bias correction on)",
}


def nncf_ir_probabilities(fp32_path: Path, x_calib: np.ndarray, x: np.ndarray) -> np.ndarray:
    """edge-bench's INT8 peer (systems.nncf_quantize): ``nncf.quantize`` of the FP32 file read
    by OpenVINO (its OpenVINO backend), compiled with OpenVINO's default config, one image at
    a time; the model's softmax output."""
    import logging

    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.ERROR)
    core = ov.Core()
    model = nncf.quantize(core.read_model(str(fp32_path)), nncf.Dataset([x_calib[i:i + 1] for i in range(len(x_calib))]),
                          subset_size=len(x_calib))
    compiled = core.compile_model(model, "CPU")
    return np.concatenate([compiled(x[i:i + 1])[0] for i in range(len(x))])


def fidelity(files: dict[str, bytes], x: np.ndarray, reference: np.ndarray, truth: np.ndarray) -> dict:
    """name -> engine -> top-1 agreement, top-5 overlap, max and mean |dp| against
    ``reference`` (FP32 on ONNX Runtime CPU), and accuracy against ``truth``."""
    from edge_classify.runtime import Classifier, EngineOptions
    from edge_classify.runtime.model.compare import compare

    out = {}
    for name, data in files.items():
        for engine in ENGINES:
            clf = Classifier(data, EngineOptions(engine=engine, providers="cpu"))
            p = clf.run(x)
            clf.runner.close()
            out.setdefault(name, {})[engine] = {**compare(reference, p).fidelity(),
                                                "accuracy": float(np.mean(p.argmax(1) == truth))}
    return out


def speed(paths: dict[str, Path], x8: Path, rounds: int, calls: int, log_dir: Path, say) -> dict:
    """Batch-8 images/s of each file on each engine, every system in its own worker, in
    alternating rounds (the first system rotating)."""
    from .inference import timed_rounds
    from .pool import Pool

    specs = [{"type": "edge", "name": f"{name} on {engine}", "model": str(path), "file_precision": "int8",
              "providers": "cpu", "engine": engine} for name, path in paths.items() for engine in ENGINES]
    with Pool(log_dir) as pool:
        failed = pool.build(specs)
        if failed:
            raise SystemExit(f"int8_fidelity: a system failed to build: {failed[0][1]}")
        res = timed_rounds(list(pool), x8, rounds, calls, warmup=2, gap_s=0.05, say=say)
    batch = int(np.load(x8, mmap_mode="r").shape[0])
    return {n: {"images_per_s": batch / (r["p50_ms"] / 1e3), **r} for n, r in res.items()}


def speed_ratios(timing: dict, ours: str, peer: str) -> dict:
    """Per engine: ours / peer images/s, the median of per-round ratios with its spread."""
    from .stats import round_ratios

    return {e: round_ratios(timing[f"{peer} on {e}"]["round_p50_ms"], timing[f"{ours} on {e}"]["round_p50_ms"])
            for e in ENGINES}


def judge(fid: dict, ours: str, peer: str) -> dict:
    """The targets: top-1 agreement >= the peer's and mean |dp| <= the peer's, per engine."""
    out = {}
    for e in ENGINES:
        a, b = fid[ours][e], fid[peer][e]
        out[e] = {"top1_agreement": a["top1_agreement"] >= b["top1_agreement"],
                  "mean_abs_diff": a["mean_abs_diff"] <= b["mean_abs_diff"]}
    return out


def lscpu_summary() -> dict:
    from .env import INTERESTING_FLAGS, lscpu

    ls = lscpu()
    flags = set(ls.get("Flags", "").split())
    return {"model_name": ls.get("Model name"), "cpus": ls.get("CPU(s)"),
            "flags": {f: f in flags for f in INTERESTING_FLAGS}}


def run(out: Path, cache: Path, rounds: int, calls: int, seed: int, say, timed: bool = True) -> dict:
    from edge_classify.runtime import Classifier, EngineOptions
    from edge_classify.runtime.images.preprocess import preprocess

    from .env import environment

    t0 = time.perf_counter()
    crops = make_crops(cache, seed)
    keras_path = train(cache, crops, seed)
    fp32_path = export_fp32(keras_path, crops, cache)
    say(f"model: {fp32_path} ({time.perf_counter() - t0:.0f} s with training and export, cached after)")
    fp32 = fp32_path.read_bytes()
    ref_clf = Classifier(fp32, EngineOptions(engine="onnxruntime", providers="cpu"))
    contract = ref_clf.contract
    x_cal, x_held = (preprocess(crops[s], contract.preprocess) for s in ("calib", "heldout"))
    truth = np.array([list(contract.labels.names).index(p.parent.name) for p in crops["heldout"]])
    reference = ref_clf.run(x_held)

    files, seconds = {}, {}
    for name in QUANTIZERS:
        t = time.perf_counter()
        if name == "nncf":
            files[name] = quantize_nncf(fp32, x_cal, contract)
        else:  # "ours <activations>[ before]"
            acts = name.split()[1]
            files[name] = quantize_ours(fp32, crops["calib"], contract, acts, before="before" in name)
        seconds[name] = time.perf_counter() - t
        say(f"{name}: quantized in {seconds[name]:.1f} s")
    fid = fidelity(files, x_held, reference, truth)
    t = time.perf_counter()
    p = nncf_ir_probabilities(fp32_path, x_cal, x_held)
    from edge_classify.runtime.model.compare import compare

    fid[NNCF_IR] = {"openvino": {**compare(reference, p).fidelity(), "accuracy": float(np.mean(p.argmax(1) == truth))}}
    seconds[NNCF_IR] = time.perf_counter() - t
    for name, per in fid.items():
        say(f"{name}: " + "; ".join(f"{e} top-1 {v['top1_agreement']:.3f} mean|dp| {v['mean_abs_diff']:.4f} "
                                    f"max|dp| {v['max_abs_diff']:.3f}" for e, v in per.items()))
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in files.items():
        paths[name] = out / f"{name.replace(' ', '-')}.int8.onnx"
        paths[name].write_bytes(data)
    timing = None
    if timed:
        x8 = out / "x_batch8.npy"
        np.save(x8, x_held[:8])
        timing = speed(paths, x8, rounds, calls, out / "workers", say)
    return {
        "what": "INT8 fidelity against FP32 and batch-8 speed: our quantizer (export-model --int8) vs NNCF's, "
                "on a classifier trained here",
        "model": {"arch": "MobileNetV2 alpha 0.35 + GAP + Dense softmax, trained from scratch", "seed": seed,
                  "classes": {c: CLASSES[c] for c in contract.labels.names}, "input_size": list(SIZE),
                  "epochs": EPOCHS, "fp32_heldout_accuracy": float(np.mean(reference.argmax(1) == truth)),
                  "fp32_heldout_median_top_probability": float(np.median(reference.max(1))),
                  "fp32_file": str(fp32_path)},
        "calibration_images": len(crops["calib"]), "heldout_images": len(crops["heldout"]),
        "reference": "the FP32 file on ONNX Runtime CPU, on the held-out crops",
        "quantizers": {**QUANTIZERS, NNCF_IR: "nncf.quantize of the FP32 file read by OpenVINO (its OpenVINO "
                                              "backend), OpenVINO's default config: edge-bench's INT8 peer"},
        "quantize_s": seconds,
        "fidelity": fid,
        "targets_vs_nncf": {o: judge(fid, o, "nncf") for o in QUANTIZERS if o != "nncf"},
        "speed_batch8": timing,
        "speed_ratio_vs_nncf": ({o: speed_ratios(timing, o, "nncf") for o in QUANTIZERS if o != "nncf"}
                                if timing else None),
        "speed_method": f"batch 8 of held-out crops, each system in its own worker process, {rounds} rounds x "
                        f"{calls} calls after 2 warm-up calls, the first system rotating; ratio: ours / nncf "
                        "images/s per round, median [p25-p75] (min-max)",
        "lscpu": lscpu_summary(),
        "environment": environment(),
        "wall_s": time.perf_counter() - t0,
    }


def summary(d: dict) -> str:
    lines = [(f"INT8 vs FP32 on {d['heldout_images']} held-out crops, calibrated on {d['calibration_images']} "
              f"(FP32 accuracy {d['model']['fp32_heldout_accuracy']:.3f})"),
             f"{'quantizer':15s} {'engine':12s} {'top-1':>6s} {'mean|dp|':>9s} {'max|dp|':>8s} {'accuracy':>8s}"]
    for name, per in d["fidelity"].items():
        for e, v in per.items():  # nncf IR: on openvino only
            lines.append(f"{name:15s} {e:12s} {v['top1_agreement']:6.3f} {v['mean_abs_diff']:9.4f} "
                         f"{v['max_abs_diff']:8.3f} {v['accuracy']:8.3f}")
    for o, per in (d["speed_ratio_vs_nncf"] or {}).items():
        lines.append(f"{o} / nncf images/s at batch 8: " + "; ".join(
            f"{e} {r['median']:.3f} [{r['p25']:.3f}-{r['p75']:.3f}] ({r['min']:.3f}-{r['max']:.3f})"
            for e, r in per.items()))
    for o, per in d["targets_vs_nncf"].items():
        lines.append(f"{o} at least as faithful as nncf: " + "; ".join(
            f"{e} top-1 {'met' if v['top1_agreement'] else 'NOT met'}, mean|dp| "
            f"{'met' if v['mean_abs_diff'] else 'NOT met'}" for e, v in per.items()))
    ls = d["lscpu"]
    lines.append(f"CPU: {ls['model_name']}, {ls['cpus']} CPUs; "
                 + " ".join(f for f, on in ls["flags"].items() if on and ("vnni" in f or "amx" in f or "512" in f)))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_classify.benchmarks.int8_fidelity",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (report.json, the INT8 files)")
    p.add_argument("--cache", type=Path, default=None, help="crops and trained model (default: OUT/cache)")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds at batch 8 (default 15)")
    p.add_argument("--calls", type=int, default=20, help="timed calls per system per round (default 20)")
    p.add_argument("--seed", type=int, default=SEED, help=f"crops and training seed (default {SEED})")
    p.add_argument("--no-speed", action="store_true", help="fidelity only (what edge-bench runs)")
    p.add_argument("--quiet", "-q", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"  {time.perf_counter() - t0:6.1f}s {msg}", file=sys.stderr, flush=True)

    # The runtime's caches (optimised graphs, compiled blobs, engine choices) of a dozen
    # throwaway files go with the report, not into ~/.cache (edge-bench does the same).
    os.environ.setdefault("EDGE_CLASSIFY_HOME", str((args.out / "home").resolve()))
    cache = args.cache or args.out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    d = run(args.out, cache, args.rounds, args.calls, args.seed, say, timed=not args.no_speed)
    (args.out / "report.json").write_text(json.dumps(d, indent=1, default=str))
    print(summary(d))
    print(f"report: {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
