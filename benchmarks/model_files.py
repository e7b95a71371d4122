"""The model files a benchmark run times, and the photos it uses.

Without ``--model``, a ResNet50 with random weights (seed 0; speed does not depend on the
weights) is exported with ``export-model``'s own pipeline, FP32 + FP16 + INT8 (calibrated
on the sample photos; not in --quick). The export runs in a child process
(``python -m edge_classify.benchmarks.model_files OUT [--quick]``) so that TensorFlow is
never loaded in the process that conducts the measurements.

With ``--model``, what the rows need comes from the file's contract (input size, class
count, preprocessing, the model's name), and the Keras rows load the model it was exported
from: ``--keras-model`` (the user's own .keras / .h5 / SavedModel) or ``--weights`` (a
keras.applications export: the contract's arch, built by its constructor).
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


def read_contract(model: Path):
    """The model's contract, read from its metadata (no TensorFlow, no engine)."""
    from edge_classify.runtime.errors import EdgeClassifyError
    from edge_classify.runtime.model.contract import ModelContract
    from edge_classify.runtime.model.onnx_meta import NotOnnx, metadata

    try:
        return ModelContract.from_metadata(metadata(model), str(model))
    except (NotOnnx, OSError) as exc:
        raise SystemExit(f"edge-bench: cannot read --model {model}: not a readable ONNX model ({exc})") from None
    except EdgeClassifyError as exc:
        raise SystemExit(f"edge-bench: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else "")) from None


def keras_source(contract, weights: Path | None, keras_model: Path | None) -> dict:
    """What the Keras rows load: ``{"keras_model": path}`` (the user's model) or
    ``{"arch", "application", "weights"}`` (a keras.applications export)."""
    from edge_classify.export.keras_model import ARCHS

    user = contract.provenance.get("keras_model")
    if weights is not None and keras_model is not None:
        raise SystemExit("edge-bench: give --weights (a keras.applications export) or --keras-model "
                         "(your own model), not both")
    if weights is None and keras_model is None:
        raise SystemExit(f"edge-bench: --model needs --keras-model (the Keras model it was exported from, "
                         f"{user.get('file')})" if user else "edge-bench: --model needs --weights (the Keras "
                         "weights it was exported from) or --keras-model (your own Keras model it was exported from)")
    if keras_model is not None:
        if not keras_model.exists():
            raise SystemExit(f"edge-bench: --keras-model {keras_model}: not found")
        return {"keras_model": str(keras_model)}
    arch = contract.model.arch
    if user or arch not in ARCHS:
        raise SystemExit(f"edge-bench: {arch!r} is not a keras.applications model that --weights can rebuild: "
                         f"pass the model file it was exported from with --keras-model")
    return {"arch": arch, "application": ARCHS[arch][0], "weights": str(weights)}


def describe(contract) -> dict:
    """The model as the report names it, from its contract."""
    from edge_classify.export.keras_model import ARCHS

    m, pre = contract.model, contract.preprocess
    user = contract.provenance.get("keras_model")
    h, w = pre.input_size
    name = m.arch if user or m.arch not in ARCHS else ARCHS[m.arch][0]
    source = (f"your model {user.get('file')}" if user else f"keras.applications.{name}" if m.arch in ARCHS
              else f"{m.arch} (no Keras source recorded in the file)")
    return {"name": name, "arch": m.arch, "source": source, "input_size": [h, w], "num_classes": m.num_classes,
            "head": m.head, "output": m.output, "preprocess": pre.mode, "resize": pre.resize,
            "label": f"{name} ({h}x{w}, {m.num_classes} classes)"}


def sha_note(contract, keras_model: Path | None) -> str | None:
    """A note when --keras-model is not the file the export recorded (by sha256)."""
    recorded = (contract.provenance.get("keras_model") or {}).get("sha256")
    if keras_model is None or not recorded or not keras_model.is_file():
        return None
    from edge_classify.export.weights import sha256_file

    if sha256_file(keras_model) == recorded:
        return None
    return (f"--keras-model {keras_model.name} is not the file {contract.model.arch} was exported from (sha256 "
            "differs): the Keras rows' outputs may not match the exported files'")


def prepare(out: Path, model: Path | None, weights: Path | None, say, quick: bool = False,
            keras_model: Path | None = None, keras: bool = True) -> dict:
    """{"fp32": path, "fp16": path | None, "int8": path | None, "tf2onnx": path | None,
    "contract": the FP32 file's contract, "keras": keras_source() (None with ``keras=False``:
    no Keras rows), "origin": str}."""
    if model is not None:
        contract = read_contract(model)
        sib = {pr: model.with_name(model.name.replace(".onnx", f".{pr}.onnx")) for pr in ("fp16", "int8", "tf2onnx")}
        files = {"fp32": model, **{pr: (p if p.is_file() else None) for pr, p in sib.items()}, "contract": contract}
        if not keras:
            return {**files, "keras": None, "origin": f"those in {model.name}"}
        return {**files, "keras": keras_source(contract, weights, keras_model),
                "origin": f"given ({(keras_model or weights).name})", "sha_note": sha_note(contract, keras_model)}
    say(f"exporting FP32 + FP16{'' if quick else ' + INT8'} from random weights (seed 0) with export-model's "
        "pipeline, in a child process")
    cmd = [sys.executable, "-m", "edge_classify.benchmarks.model_files", str(out)] + (["--quick"] if quick else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"edge-bench: model export failed:\n{p.stderr[-2000:]}")
    files = json.loads(p.stdout.strip().splitlines()[-1])
    m = {pr: (Path(files[pr]) if files.get(pr) else None) for pr in ("fp32", "fp16", "int8", "tf2onnx")}
    contract = read_contract(m["fp32"])
    return {**m, "contract": contract, "keras": keras_source(contract, Path(files["weights"]), None),
            "origin": "random (seed 0)"}


def _export(out: Path, quick: bool) -> dict:
    from edge_classify.export.keras_model import import_tensorflow
    from edge_classify.export.pipeline import export_model
    from edge_classify.export.request import ExportRequest

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
    result = export_model(ExportRequest(mdir / "resnet50.onnx", weights=str(weights), fp16=True, int8=int8,
                                        calib=str(calib) if int8 else None, converted_out=converted))
    files = {f.precision: str(f.path) for f in result.files}
    return {"fp32": files["fp32"], "fp16": files.get("fp16"), "int8": files.get("int8"), "weights": str(weights),
            "tf2onnx": str(converted)}


if __name__ == "__main__":
    files = _export(Path(sys.argv[1]), "--quick" in sys.argv[2:])
    print(json.dumps(files))
