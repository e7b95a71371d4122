"""What an export is asked to do: one immutable ``ExportRequest``, from the command line or Python.

Its fields are ``export-model``'s flags, under the same names (``--labels-from-dir`` is
``labels_from_dir``), so the CLI hands over its parsed arguments in one step
(``from_args``) and the pipeline (pipeline.py) reads one object instead of 29 parameters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from .formats import FORMATS, TargetFormat


@dataclass(frozen=True)
class ExportRequest:
    output: Path  # the FP32 file; the others beside it (paths.variant_path); with precision auto, the one kept
    # the model: a keras.applications architecture with its weights, or the user's own file
    arch: str = "resnet50"
    weights: str = "imagenet"  # imagenet | random | a local Keras weights file
    seed: int | None = None  # for random weights
    keras_model: str | os.PathLike | None = None
    custom_objects: list[str] | None = None  # Python files defining its custom layers
    allow_lambda: bool = False
    # the contract, where the model does not show it (settle.py)
    labels: str | os.PathLike | None = None
    labels_from_dir: str | os.PathLike | None = None
    preprocess: str | None = None
    resize: str | None = None
    input_size: tuple[int, int] | None = None
    head: str | None = None
    multi_label: bool = False
    threshold: float | None = None
    # the target formats (formats.py) and their gates
    fp16: bool = False
    int8: bool = False
    bf16: bool = False
    precision: str = "fixed"  # auto: build the candidates, keep the fastest that clears the bar
    calib: str | None = None  # INT8 calibration photos (a folder or a glob)
    calib_method: str = "minmax"
    calib_max: int = 200
    int8_activations: str = "auto"
    min_agreement: float | None = None
    verify_images: list[Path] | None = None  # the photos of the Keras gate
    # the ONNX graph
    opset: int = 17
    static_batch: int | None = None
    converted_out: str | os.PathLike | None = None  # also save tf2onnx's output before any rewrite (edge-bench)

    @classmethod
    def from_args(cls, args, output: Path) -> "ExportRequest":
        """From ``export-model``'s parsed arguments: every flag named like a field."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "output" and hasattr(args, f.name)}
        return cls(output=Path(output), **given)

    @property
    def auto(self) -> bool:
        return self.precision == "auto"

    def wants(self, fmt: TargetFormat) -> bool:
        """Whether ``fmt`` is built (or, for BF16, measured): asked for, or a candidate of ``auto``."""
        return fmt.name == "fp32" or self.auto or bool(getattr(self, fmt.name))

    def targets(self, reference: str) -> list[TargetFormat]:
        """The formats to build whose gate compares with ``reference`` ("keras" or "fp32"), in
        the table's order."""
        return [f for f in FORMATS.values() if f.reference == reference and self.wants(f)]
