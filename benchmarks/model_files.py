"""The model files a benchmark run times, and the photos it uses.

Without ``--model``, a ResNet50 with random weights (seed 0; speed does not depend on the
weights) is exported with ``export-model``'s own pipeline, FP32 + FP16 + INT8 (calibrated
on the sample photos; not in --quick). The export runs in a child process
(``python -m edge_classify.benchmarks.model_files OUT [--quick]``) so that TensorFlow is
never loaded in the process that conducts the measurements.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


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


def calibration_photos(model: Path) -> list[Path]:
    """The photos the INT8 file was calibrated on (``calib/`` beside it), else the samples:
    the NNCF peer calibrates on the same ones."""
    calib = model.parent / "calib"
    if calib.is_dir():
        found = sorted(p for p in calib.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if found:
            return found
    return sample_photos()


def prepare(out: Path, model: Path | None, weights: Path | None, say, quick: bool = False) -> dict:
    """{"fp32": path, "fp16": path | None, "int8": path | None, "weights": path, "origin": str}."""
    if model is not None:
        if weights is None:
            raise SystemExit("edge-bench: --model needs --weights (the Keras weights it was exported from)")
        sib = {pr: model.with_name(model.name.replace(".onnx", f".{pr}.onnx")) for pr in ("fp16", "int8", "tf2onnx")}
        return {"fp32": model, **{pr: (p if p.is_file() else None) for pr, p in sib.items()},
                "weights": weights, "origin": "given"}
    say(f"exporting FP32 + FP16{'' if quick else ' + INT8'} from random weights (seed 0) with export-model's "
        "pipeline, in a child process")
    cmd = [sys.executable, "-m", "edge_classify.benchmarks.model_files", str(out)] + (["--quick"] if quick else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"edge-bench: model export failed:\n{p.stderr[-2000:]}")
    files = json.loads(p.stdout.strip().splitlines()[-1])
    return {pr: (Path(files[pr]) if files.get(pr) else None)
            for pr in ("fp32", "fp16", "int8", "weights", "tf2onnx")} | {"origin": "random (seed 0)"}


def _export(out: Path, quick: bool) -> dict:
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
    converted = mdir / "resnet50.tf2onnx.onnx"  # the peers' starting point: tf2onnx's output, no rewrites
    result = export_model(mdir / "resnet50.onnx", weights=str(weights), fp16=True, int8=int8,
                          calib=str(calib) if int8 else None, progress=False, converted_out=converted)
    files = {f.precision: str(f.path) for f in result.files}
    return {"fp32": files["fp32"], "fp16": files.get("fp16"), "int8": files.get("int8"), "weights": str(weights),
            "tf2onnx": str(converted)}


if __name__ == "__main__":
    files = _export(Path(sys.argv[1]), "--quick" in sys.argv[2:])
    print(json.dumps(files))
