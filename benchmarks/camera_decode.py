"""Camera-size JPEGs, whole folder: exact vs fast decode in edge-classify's pipeline, and
the Keras loop, with where the wall time goes.

    python -m edge_classify.benchmarks.camera_decode --model M.onnx --out DIR [--rounds 3]

On the camera-size folder (camera_photos.py: 8-20 MP JPEGs), in alternating rounds (the
order rotates each round, so drift hits every system):

* ``exact`` / ``fast``: ``Classifier.iter_classify`` over the folder's paths, warm, with
  ``DecodeOptions(decode="exact" | "fast")`` on the same loaded runner: images/s.
* ``decode_exact`` / ``decode_fast``: the Classifier's own decode pool alone (decode +
  resize on its threads); ``infer``: ``clf.run`` on a preprocessed batch, as many batches as
  the folder makes. Pipeline bound per mode = 1 / (1/infer + 1/decode) images/s (what the
  stages give back to back on all cores; benchmarks/warm_bulk.py).
* ``process_exact`` / ``process_fast``: the whole ``edge-classify --json`` process on the
  folder (start-up included), wall seconds.
* ``keras``: ``load_img(target_size)`` + ``img_to_array`` + ``preprocess_input`` + ``predict``
  in batches of 32, the model's keras.applications architecture with random weights (the
  speed, not the answers), when TensorFlow imports.

Stage shares, from the rows of the ``exact`` / ``fast`` runs: the engine thread's wall time
in normalize and inference, the rest waiting for decoded images (the model idle); decode
threads' busy time (sum of the rows' ``decode`` ms) split into decode and resize by timing
both apart on a sample, single-threaded. Ratios are taken within each round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import camera_photos
from .env import environment
from .stats import spread


def _keras(contract, paths: list[Path]):
    """A callable running the Keras loop over ``paths``, or (None, why)."""
    try:
        import keras
        import numpy as np
    except ImportError as exc:
        return None, f"TensorFlow/Keras do not import: {exc}"
    apps = {"resnet50": ("ResNet50", "resnet50"), "resnet101": ("ResNet101", "resnet"),
            "resnet152": ("ResNet152", "resnet"), "mobilenetv2": ("MobileNetV2", "mobilenet_v2")}
    arch = contract.model.arch
    if arch not in apps:
        return None, f"no keras.applications twin for arch {arch!r}"
    cls, module = apps[arch]
    h, w = contract.preprocess.input_size
    model = getattr(keras.applications, cls)(weights=None, input_shape=(h, w, 3))
    pre = getattr(keras.applications, module).preprocess_input

    def loop():
        for i in range(0, len(paths), 32):
            x = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(h, w)))
                          for p in paths[i:i + 32]])
            model.predict(pre(x), batch_size=32, verbose=0)

    return loop, f"keras.applications.{cls}(weights=None), batches of 32"


def _shares(results, wall_s: float, threads: int, resize_fraction: float) -> dict:
    """Where the wall time went, from one run's rows."""
    by_batch = {}
    decode_ms = 0.0
    for i, r in enumerate(results):
        t = r.timings_ms
        decode_ms += t["decode"]
        by_batch.setdefault((t["normalize"], t["inference"], t["batch"]), 0)
    # rows of one batch carry the same normalize/inference: count each batch once
    norm = sum(k[0] for k in by_batch) / 1e3
    inf = sum(k[1] for k in by_batch) / 1e3
    busy = decode_ms / 1e3 / threads
    return {"wall_s": wall_s, "engine_thread": {"inference": inf / wall_s, "normalize": norm / wall_s,
                                                "idle_waiting_for_images": max(0.0, wall_s - inf - norm) / wall_s},
            "decode_threads": {"threads": threads, "decode": busy * (1 - resize_fraction) / wall_s,
                               "resize": busy * resize_fraction / wall_s, "idle": max(0.0, 1 - busy / wall_s)}}


def _resize_fraction(paths, spec, options, sample: int = 4) -> float:
    from edge_classify.runtime.images import preprocess

    dec = res = 0.0
    for p in paths[:sample]:
        t0 = time.perf_counter()
        d = preprocess.load_decoded(p, options, spec.input_size)
        t1 = time.perf_counter()
        preprocess.resize(d.image, spec)
        dec, res = dec + t1 - t0, res + time.perf_counter() - t1
    return res / (dec + res)


def run(model: Path, photos: Path, rounds: int, batch: int, engine: str, say=print, keras_loop: bool = True) -> dict:
    import numpy as np

    from edge_classify.runtime import Classifier, EngineOptions
    from edge_classify.runtime.images import decode_pool, preprocess
    from edge_classify.runtime.images.preprocess import DecodeOptions

    paths = sorted(photos.glob("*.jpg"))
    n = len(paths)
    exact = Classifier(model, EngineOptions(engine=engine), batch_size=batch, decode=DecodeOptions(decode="exact"))
    fast = Classifier.from_runner(exact.runner, exact.contract, batch_size=batch, decode=DecodeOptions(decode="fast"))
    spec = exact.contract.preprocess
    tensor = preprocess.preprocess(paths[:batch], spec)
    kloop, kwhy = _keras(exact.contract, paths) if keras_loop else (None, "not asked for")
    rows: dict[str, list] = {}

    def classify(clf, name):
        def go():
            out = list(clf.iter_classify(paths, top_k=3))
            assert all(r.ok for r in out), [r.error for r in out if not r.ok]
            rows[name] = out
        return go

    def decode_only(clf):
        def go():
            for _ in decode_pool.batches(iter(paths), spec, clf.decode_options, batch, clf.decode_threads):
                pass
        return go

    def infer():
        for _ in range(0, n, batch):
            exact.run(tensor)

    def process(mode):
        cmd = [str(Path(sys.executable).parent / "edge-classify"), "--model", str(model), "--engine",
               exact.runner.engine, "--decode", mode, "--batch-size", str(batch), "-q", "--json", str(photos)]
        return lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)

    systems = {"exact": classify(exact, "exact"), "fast": classify(fast, "fast"),
               "decode_exact": decode_only(exact), "decode_fast": decode_only(fast), "infer": infer,
               "process_exact": process("exact"), "process_fast": process("fast")}
    if kloop is not None:
        systems["keras"] = kloop
    say(f"warm-up: {', '.join(systems)} ...")
    for fn in systems.values():
        fn()
    times = {k: [] for k in systems}
    shares = {"exact": [], "fast": []}
    names = list(systems)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(0.05)
            t0 = time.perf_counter()
            systems[name]()
            times[name].append(time.perf_counter() - t0)
            if name in shares:
                shares[name].append(times[name][-1])
        say(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    out = {"images": n, "batch_size": batch, "rounds": rounds, "model": str(model), "engine": exact.runner.engine,
           "provider": exact.runner.provider, "precision": exact.runner.precision,
           "decode_threads": exact.decode_threads, "keras": kwhy,
           "decodes_used": {m: sorted({r.decode for r in rows[m]}) for m in ("exact", "fast")},
           "wall_s": {k: spread(v) for k, v in times.items()}, "images_per_s": rate}
    per_round = {}
    for m in ("exact", "fast"):
        bound = [n / (i + d) for i, d in zip(times["infer"], times[f"decode_{m}"])]
        per_round[f"{m}_vs_pipeline_bound"] = spread([n / t / b for t, b in zip(times[m], bound)])
        out[f"pipeline_bound_{m}_images_per_s"] = statistics.median(bound)
    per_round["fast_vs_exact_images_per_s"] = spread([e / f for e, f in zip(times["exact"], times["fast"])])
    per_round["process_fast_vs_exact_images_per_s"] = spread(
        [e / f for e, f in zip(times["process_exact"], times["process_fast"])])
    if "keras" in times:
        for m in ("fast", "exact"):
            per_round[f"{m}_wall_vs_keras"] = spread([f / k for f, k in zip(times[m], times["keras"])])
            per_round[f"process_{m}_wall_vs_keras"] = spread(
                [f / k for f, k in zip(times[f"process_{m}"], times["keras"])])
    out["ratios_per_round"] = per_round
    out["stage_shares"] = {m: _shares(rows[m], statistics.median(shares[m]), exact.decode_threads,
                                      _resize_fraction(paths, spec, getattr(exact if m == "exact" else fast,
                                                                            "decode_options")))
                           for m in ("exact", "fast")}
    say(json.dumps({"images_per_s": {k: round(v, 2) for k, v in rate.items()},
                    "ratios": {k: round(v["median"], 3) for k, v in per_round.items()}}, indent=1))
    return out


def agreement(model: Path, folder: Path, max_photos: int, say=print) -> dict:
    from edge_classify.export.fast_decode import describe, measure
    from edge_classify.runtime import Classifier, EngineOptions
    from edge_classify.runtime.images.files import images_in

    clf = Classifier(model, EngineOptions(engine="onnxruntime", providers="cpu"))
    photos = sorted(images_in(folder))
    photos = [photos[i] for i in np.random.default_rng(0).permutation(len(photos))[:max_photos]]
    figure = measure(clf.run, clf.contract.preprocess, photos, max_photos=max_photos)
    say(describe(figure))
    return {k: v for k, v in figure.items() if k != "photos"} | {"model": str(model), "folder": str(folder)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for camera_decode.json")
    p.add_argument("--photos", type=Path, default=None, help="camera-size JPEGs (default: camera_photos.build)")
    p.add_argument("-n", type=int, default=32, help="photos to build when --photos is not given (default 32)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--engine", default="onnxruntime", choices=["auto", "onnxruntime", "openvino"])
    p.add_argument("--no-keras", action="store_true", help="leave the Keras loop out")
    p.add_argument("--agreement-photos", type=Path, default=None,
                   help="also measure fast decode's top-1 agreement with exact decode for --model on camera-size "
                        "versions of these photos (export.fast_decode.measure: one per DCT scale each)")
    p.add_argument("--agreement-max", type=int, default=200, help="photos for the agreement (default 200)")
    args = p.parse_args(argv)
    result = {}
    if args.rounds > 0:
        photos = args.photos or camera_photos.build(n=args.n)
        result = run(args.model, photos, args.rounds, args.batch_size, args.engine, keras_loop=not args.no_keras)
    if args.agreement_photos is not None:
        result["fast_decode_agreement"] = agreement(args.model, args.agreement_photos, args.agreement_max)
    result["environment"] = environment({"decode": result.get("decode_threads")})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "camera_decode.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {args.out / 'camera_decode.json'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    raise SystemExit(main())
