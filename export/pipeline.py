"""``export_model``: the export stages in order, with progress, timings and no partial files.

build model -> convert -> fp16 -> verify -> write. Nothing is written to the target
paths until every model has passed its parity gate; writes are atomic.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_classify.runtime import __version__
from edge_classify.runtime.contract import LabelSet, ModelContract, ModelInfo, PreprocessSpec
from edge_classify.runtime.errors import EXIT_PARITY, EdgeClassifyError
from edge_classify.runtime.paths import variant_path

from . import convert, keras_model, verify
from .weights import resolve


class Progress:
    """Stage lines on stderr: ``[2/5] convert to ONNX ... 31.2 s``."""

    def __init__(self, stages: list[str], stream=None, enabled: bool = True):
        self.stages, self.stream, self.enabled = stages, stream or sys.stderr, enabled
        self.timings: dict[str, float] = {}

    def stage(self, name: str, detail: str = ""):
        progress = self

        class _Stage:
            def __enter__(self):
                self.t0 = time.perf_counter()
                if progress.enabled:
                    i = progress.stages.index(name) + 1
                    msg = f"[{i}/{len(progress.stages)}] {name}" + (f": {detail}" if detail else "")
                    print(msg + " ...", file=progress.stream, flush=True)
                return self

            def __exit__(self, exc_type, *_):
                dt = time.perf_counter() - self.t0
                progress.timings[name] = round(dt, 2)
                if progress.enabled and exc_type is None:
                    print(f"      done in {dt:.1f} s", file=progress.stream, flush=True)

        return _Stage()


@dataclass
class ExportedFile:
    path: Path
    precision: str
    size_bytes: int
    parity: dict


@dataclass
class ExportResult:
    files: list[ExportedFile] = field(default_factory=list)
    timings_s: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)


def tool_versions() -> dict:
    import importlib.metadata as md

    out = {"edge_classify": __version__, "python": platform.python_version()}
    for dist in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxconverter-common", "onnxruntime",
                 "onnxruntime-gpu", "numpy", "opencv-python-headless", "opencv-python"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def export_model(
    out: Path,
    arch: str = "resnet50",
    weights: str = "imagenet",
    seed: int | None = None,
    fp16: bool = False,
    opset: int = convert.DEFAULT_OPSET,
    static_batch: int | None = None,
    verify_images: list[Path] | None = None,
    progress: bool = True,
) -> ExportResult:
    if arch not in keras_model.ARCHS:
        raise EdgeClassifyError(f"unknown architecture {arch!r}", hint=f"choose from {', '.join(keras_model.ARCHS)}", exit_code=2)
    # Fail fast (before importing TensorFlow) on weights that cannot be had.
    wspec = resolve(weights, arch, seed)
    _, mode, input_size = keras_model.ARCHS[arch]
    precisions = ["fp32"] + (["fp16"] if fp16 else [])
    stages = ["build model", "convert to ONNX"] + (["convert to FP16"] if fp16 else []) + ["verify against Keras", "write"]
    prog = Progress(stages, enabled=progress)
    images = [Path(p) for p in (verify_images or verify.sample_images())]
    unreadable = [str(p) for p in images if not p.is_file()]
    if unreadable:
        raise EdgeClassifyError(f"verification image(s) not found: {', '.join(unreadable)}", exit_code=2)

    with prog.stage("build model", f"{arch}, weights {weights}"):
        model = keras_model.build(arch, wspec)
        provenance = {
            "weights": wspec.provenance(),
            "keras_application": f"keras.applications.{keras_model.ARCHS[arch][0]}",
            "opset": opset,
            "tools": tool_versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        reference = verify.keras_reference(model, images, mode, input_size)

    protos = {}
    with prog.stage("convert to ONNX", f"tf2onnx, opset {opset}, batch {static_batch or 'dynamic'}"):
        try:
            protos["fp32"] = convert.keras_to_onnx(model, input_size, static_batch, opset)
        except Exception as exc:  # tf2onnx raises assorted types (unsupported opset, ops)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EdgeClassifyError(f"ONNX conversion failed: {first}",
                                    hint="try the default --opset 17") from None
    if fp16:
        with prog.stage("convert to FP16", "float16 weights, float32 I/O"):
            protos["fp16"] = convert.onnx_to_fp16(protos["fp32"])

    preprocess = PreprocessSpec.keras(mode, input_size)
    labels = LabelSet.imagenet1k()
    blobs, reports = {}, {}
    with prog.stage("verify against Keras", f"{len(images)} real photos, {'/'.join(precisions)}"):
        from edge_classify.runtime.classifier import Classifier

        for precision in precisions:
            info = ModelInfo(arch, precision, convert.INPUT_NAME, convert.OUTPUT_NAME, "probabilities",
                             len(labels), static_batch)
            contract = ModelContract(preprocess, labels, info, provenance)
            convert.attach_contract(protos[precision], contract, doc=f"{arch} {precision} exported by edge-classify")
            candidate = Classifier(protos[precision].SerializeToString(), providers="cpu").predict(images)
            report = verify.check(reference, candidate, precision)
            reports[precision] = report
            if progress:
                status = "ok" if report.passed else "FAILED"
                print(f"      {precision}: {report.summary()} [{status}]", file=sys.stderr, flush=True)
            parity = {
                "reference": "keras load_img + img_to_array + preprocess_input + predict",
                "image_files": [p.name for p in images],
                **report.to_dict(),
            }
            convert.attach_contract(protos[precision], ModelContract(preprocess, labels, info, provenance, parity))
            blobs[precision] = (protos[precision].SerializeToString(), parity)
    failed = {p: r for p, r in reports.items() if not r.passed}
    if failed:
        detail = "; ".join(f"{p}: {', '.join(r.failures)}" for p, r in failed.items())
        raise EdgeClassifyError(
            f"exported model disagrees with Keras ({detail}); nothing was written",
            hint="this is a conversion problem; try another --opset, and report it with the numbers above",
            exit_code=EXIT_PARITY,
        )

    result = ExportResult(weights=provenance["weights"])
    with prog.stage("write", str(out)):
        for precision in precisions:
            path = out if precision == "fp32" else variant_path(out, precision)
            data, parity = blobs[precision]
            convert.atomic_write(path, data)
            result.files.append(ExportedFile(path, precision, len(data), parity))
        # Warm the runtime's optimised-graph cache so the first edge-classify is a fast one.
        for f in result.files:
            Classifier(f.path, providers="cpu")
    result.timings_s = prog.timings
    return result
