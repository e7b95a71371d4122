"""Warm bulk: ``Classifier.classify(paths)`` on a folder of JPEGs, against its pipeline bound.

Classifying files is two stages that share the CPU: decoding + resizing (a thread pool)
and inference (the engine's threads). Each stage's rate is measured alone with all cores:

    decode_rate = images/s of the Classifier's own decode path (``_prepared_batches``)
    infer_rate  = images/s of ``clf.run`` on preprocessed tensors at the bulk batch size
    bound       = 1 / (1/infer_rate + 1/decode_rate)

The bound is what running the stages back to back on all cores gives; overlapping them
can only beat it by filling cycles one stage leaves idle. bulk/bound >= 0.9 says the
pipeline wastes little. The three are timed in alternating rounds, rotating the order.
The normalisation step (a vectorised subtract, in bulk only) is counted in neither stage.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from .stats import spread


def _jpegs(photos: list[Path], n: int, folder: Path) -> list[Path]:
    import cv2

    from edge_classify.runtime.images import preprocess

    paths = []
    for i in range(n):  # distinct files: real photos re-encoded at varying quality
        img = preprocess.load(photos[i % len(photos)])
        p = folder / f"img{i:04d}.jpg"
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 70 + i % 25])
        paths.append(p)
    return paths


def _decode_all(clf, paths: list[Path]) -> None:
    """Decode and resize every image as the classifier's own decode pool does, nothing else."""
    from edge_classify.runtime.images import decode_pool

    for _ in decode_pool.batches(iter(paths), clf.contract.preprocess, clf.decode_options, clf.batch_size,
                                 clf.decode_threads):
        pass


def run(model: Path, photos: list[Path], n: int, rounds: int, say, batch: int = 8,
        gap_s: float = 0.05, providers: str = "auto") -> dict:
    from edge_classify.runtime import Classifier, EngineOptions
    from edge_classify.runtime.images import preprocess

    folder = Path(tempfile.mkdtemp(prefix="edge-bench-bulk-"))
    try:
        paths = _jpegs(photos, n, folder)
        clf = Classifier(model, EngineOptions(providers=providers), batch_size=batch)
        runner = clf.runner
        engine = runner.engine
        tensor = preprocess.preprocess(paths[:batch], clf.contract.preprocess)

        def bulk():
            results = clf.classify(paths, top_k=3)
            if not all(r.ok for r in results):
                raise SystemExit("edge-bench: warm bulk: some images failed to classify")

        def infer():
            for _ in range(0, n, batch):
                clf.run(tensor)

        stages = {"bulk": bulk, "decode": lambda: _decode_all(clf, paths), "infer": infer}
        for fn in stages.values():  # warm-up: engine compiled for this batch, files in the page cache
            fn()
        times: dict[str, list[float]] = {k: [] for k in stages}
        names = list(stages)
        for r in range(rounds):
            for name in names[r % 3:] + names[:r % 3]:
                time.sleep(gap_s)
                t0 = time.perf_counter()
                stages[name]()
                times[name].append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    bound = 1 / (1 / rate["infer"] + 1 / rate["decode"])
    # bound = n / (t_infer + t_decode), so bulk/bound = (t_infer + t_decode) / t_bulk
    per_round = [(i + d) / b for b, i, d in zip(times["bulk"], times["infer"], times["decode"])]
    say(f"bulk {rate['bulk']:.1f} img/s; decode {rate['decode']:.1f}, inference {rate['infer']:.1f} -> "
        f"bound {bound:.1f} img/s ({rate['bulk'] / bound:.2f} of it)")
    return {"images": n, "batch_size": batch, "rounds": rounds, "model": str(model), "engine": engine,
            "engine_request": "auto",
            "engine_reason": clf.report.engine_choice.reason,
            "provider": runner.provider, "provider_request": providers,
            "precision": runner.precision,
            "decode_threads": clf.decode_threads,
            "wall_s_median": statistics.median(times["bulk"]),
            "images_per_s": rate["bulk"], "decode_images_per_s": rate["decode"],
            "inference_images_per_s": rate["infer"], "pipeline_bound_images_per_s": bound,
            "ratio_vs_pipeline_bound": rate["bulk"] / bound, "ratio_vs_pipeline_bound_per_round": spread(per_round),
            "pure_inference_images_per_s": rate["infer"], "ratio_vs_pure_inference": rate["bulk"] / rate["infer"]}
