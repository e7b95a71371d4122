"""The target formats an export can produce, one row each: what converts to it, what gates
it, where its file goes and whether it needs calibration images.

``pipeline.export_model`` runs one stage per row the request wants (``ExportRequest.targets``),
in the table's order: the Keras-gated rows are converted, then verified against Keras
together; each FP32-gated row is then built and gated on its own. A new format is a new row
and its stage in the pipeline (``pipeline._STAGES``). Gates compare probabilities with
``runtime.model.compare.compare``:

* against **Keras** (``reference="keras"``): the exported file, run end to end by the
  runtime, must match Keras' own prediction within ``atol`` and keep ``require``
  (``topk``: every top-5 identical up to ties within atol; ``top1``).
* against **FP32** (``reference="fp32"``): top-1 agreement on held-out photos must reach
  the agreement bar (``--min-agreement``; BF16 never below ``policy.BF16_BAR``).

FP32: ONNX Runtime and TensorFlow differ only in float rounding (measured ~5e-7 on
ResNet50), so 1e-4 leaves room for other CPUs' kernels. FP16: half-precision weights move
probabilities by ~1e-3; only top-1 must agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetFormat:
    name: str
    what: str
    stage: str  # its progress stage
    converter: str  # what makes it (for progress lines and --help)
    reference: str  # "keras" or "fp32": what its gate compares with
    suffix: str | None  # file name suffix beside the FP32 file ("" = the output path); None = no file
    needs_calibration: bool = False
    atol: float | None = None  # Keras-referenced gates
    require: str = "none"

    @property
    def writes_file(self) -> bool:
        return self.suffix is not None


FORMATS = {
    "fp32": TargetFormat("fp32", "float32 weights and compute", "convert to ONNX",
                         "tf2onnx (tf.function, input signature)", "keras", "", atol=1e-4, require="topk"),
    "fp16": TargetFormat("fp16", "float16 weights and compute, float32 I/O", "convert to FP16",
                         "onnxconverter-common float16 (keep_io_types)", "keras", ".fp16", atol=5e-2, require="top1"),
    "int8": TargetFormat("int8", "static INT8, QDQ, per-channel weights", "quantize to INT8",
                         "onnxruntime quantize_static", "fp32", ".int8", needs_calibration=True),
    "bf16": TargetFormat("bf16", "the FP32 file computed in bfloat16 by OpenVINO (no file of its own)",
                         "measure BF16", "OpenVINO INFERENCE_PRECISION_HINT=bf16", "fp32", None),
}


def gate(name: str) -> TargetFormat:
    """The row of a format, for its gate; an unknown name is a bug, never another row's gate."""
    if name not in FORMATS:
        raise KeyError(f"no target format {name!r} (formats: {', '.join(FORMATS)})")
    return FORMATS[name]
