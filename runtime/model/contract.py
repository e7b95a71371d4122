"""The model contract: everything needed to use an exported model, stored inside the model.

One typed spec (``ModelContract``) is written into the ONNX file's ``metadata_props`` at
export and read back by the runtime; there is no side config and nothing is guessed
from file names. It is not specific to ImageNet ResNet50: any class count, any labels,
and the preprocessing modes Keras applications use (``caffe``, ``tf``, ``torch``) plus
explicit ``meanstd`` and ``raw`` (normalisation inside the model).

Metadata keys (all values are JSON text):

========================  ===========================================================
``edge_classify.schema``      contract schema version (an integer)
``edge_classify.preprocess``  :class:`PreprocessSpec`
``edge_classify.labels``      :class:`LabelSet` (``classes``: ``[[wnid|null, name], ...]``)
``edge_classify.model``       :class:`ModelInfo` (arch, precision, tensor names, batch)
``edge_classify.provenance``  weights origin and sha256, tool versions, creation time
``edge_classify.parity``      the export-time comparison against Keras (optional)
========================  ===========================================================
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ..errors import EdgeClassifyError

# 2: multi-label / binary heads, the raw mode and bilinear resize. A model that uses none of
# them is still written as schema 1, so runtimes from before them read it; one that does
# is refused by them ("upgrade") instead of being misread (an older runtime would rank a
# sigmoid head's logits through softmax, or reject "raw" with a vaguer message).
SCHEMA_VERSION = 2
PREFIX = "edge_classify."

# Keras' caffe-mode constants (keras/src/applications/imagenet_utils.py), in BGR order.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# Keras' torch-mode constants, in RGB order, applied after scaling to [0, 1].
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)

MODES = ("caffe", "tf", "torch", "meanstd", "raw")
# nearest: PIL NEAREST, what keras.utils.load_img uses by default (uint8, bit-exact).
# bilinear: tf.image.resize(method="bilinear", antialias=False), what image_dataset_from_directory
# and keras.layers.Resizing use by default (float32; see preprocess.resize).
RESIZE_METHODS = ("nearest", "bilinear")


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes the model's input tensor.

    Pipeline: decode 8-bit -> convert to 3 channels (alpha dropped, gray replicated)
    -> resize to ``input_size`` with ``resize`` -> arrange channels in ``color_order``
    -> normalise by ``mode`` in float32 -> lay out as ``layout``.

    ``mode`` reproduces ``keras.applications.imagenet_utils.preprocess_input``:
      caffe:   x[c] - mean[c]                          (BGR, mean in BGR order)
      tf:      x / 127.5 - 1                           (RGB)
      torch:   (x / 255 - mean[c]) / std[c]            (RGB)
      meanstd: (x - mean[c]) / std[c], x in [0, 255]   (either order; explicit constants)
      raw:     x, float32 in [0, 255]                  (the model normalises: a Rescaling or
               Normalization layer, or include_preprocessing=True in EfficientNet/ConvNeXt/
               MobileNetV3)
    mean/std are in ``color_order`` order; ``meanstd`` constants are on the 0..255 scale.
    """

    mode: str = "caffe"
    color_order: str = "BGR"
    mean: tuple[float, ...] | None = CAFFE_MEAN_BGR
    std: tuple[float, ...] | None = None
    input_size: tuple[int, int] = (224, 224)  # (height, width)
    resize: str = "nearest"
    keep_aspect_ratio: bool = False
    layout: str = "NHWC"
    dtype: str = "float32"

    def __post_init__(self):
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} is not one of {MODES}")
        if self.color_order not in ("RGB", "BGR"):
            problems.append(f"color_order {self.color_order!r} is not RGB or BGR")
        if self.resize not in RESIZE_METHODS:
            problems.append(f"resize {self.resize!r} is not supported (supported: {RESIZE_METHODS})")
        if self.layout not in ("NHWC", "NCHW"):
            problems.append(f"layout {self.layout!r} is not NHWC or NCHW")
        if self.dtype != "float32":
            problems.append(f"dtype {self.dtype!r} is not float32")
        if self.keep_aspect_ratio:
            problems.append("keep_aspect_ratio=True is not supported yet")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            problems.append(f"input_size {self.input_size!r} is not (height, width)")
        if self.mode in ("caffe", "torch", "meanstd") and (self.mean is None or len(self.mean) != 3):
            problems.append(f"mode {self.mode} needs 3 mean values")
        if self.mode in ("torch", "meanstd") and (self.std is None or len(self.std) != 3):
            problems.append(f"mode {self.mode} needs 3 std values")
        if self.mode == "raw" and (self.mean is not None or self.std is not None):
            problems.append("mode raw takes no mean/std (they would be ignored; use meanstd)")
        if not all(math.isfinite(v) for v in (self.mean or ()) + (self.std or ())):
            problems.append("mean/std values must be finite")
        elif self.std is not None and min(self.std) <= 0:
            problems.append("std values must be positive")
        if problems:
            raise EdgeClassifyError("invalid preprocessing spec: " + "; ".join(problems))

    def input_shape(self, batch: int | None = None) -> tuple:
        """The model input's shape: one image's (``batch`` None) or a batch's. The one place the
        layout's axis order is spelled."""
        h, w = self.input_size
        one = (h, w, 3) if self.layout == "NHWC" else (3, h, w)
        return one if batch is None else (batch,) + one

    @classmethod
    def keras(cls, mode: str, input_size=(224, 224), resize: str = "nearest") -> "PreprocessSpec":
        """The spec matching ``keras.applications.imagenet_utils.preprocess_input(mode=...)``,
        or ``raw`` (no normalisation, RGB) for models that normalise inside the graph."""
        size = tuple(input_size)
        if mode == "caffe":
            return cls("caffe", "BGR", CAFFE_MEAN_BGR, None, size, resize)
        if mode == "tf":
            return cls("tf", "RGB", None, None, size, resize)
        if mode == "torch":
            return cls("torch", "RGB", TORCH_MEAN_RGB, TORCH_STD_RGB, size, resize)
        if mode == "raw":
            return cls("raw", "RGB", None, None, size, resize)
        raise EdgeClassifyError(f"no Keras preprocessing mode {mode!r} (use caffe, tf, torch or raw)")

    @classmethod
    def meanstd(cls, mean, std, input_size=(224, 224), resize: str = "nearest") -> "PreprocessSpec":
        """``(x - mean) / std`` with RGB constants on the 0..255 pixel scale; one number
        applies to all three channels. (torchvision's 0..1 constants must be multiplied by
        255 first, or use mode ``torch``: see ``preprocess_modes.meanstd_scale_warning``.)"""
        return cls("meanstd", "RGB", _three(mean), _three(std), tuple(input_size), resize)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PreprocessSpec":
        d = dict(d)
        for key in ("mean", "std", "input_size"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**_known_fields(cls, d))


@dataclass(frozen=True)
class LabelSet:
    """Class names in output-index order; ``wnids`` entries may be None for custom labels."""

    names: tuple[str, ...]
    wnids: tuple[str | None, ...]
    source: str = ""

    def __post_init__(self):
        if len(self.names) != len(self.wnids):
            raise EdgeClassifyError("label set: names and wnids differ in length")
        if not self.names:
            raise EdgeClassifyError("label set is empty")

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def imagenet1k(cls) -> "LabelSet":
        """Keras' ImageNet class index, shipped with the package (tools/make_imagenet_labels.py)."""
        from pathlib import Path

        # Beside this module, as package data (importlib.resources.files needs Python 3.9).
        data = json.loads((Path(__file__).parent / "labels" / "imagenet1k.json").read_text("utf-8"))
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        return {"source": self.source, "classes": [[w, n] for w, n in zip(self.wnids, self.names)]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabelSet":
        classes = d["classes"]
        return cls(tuple(c[1] for c in classes), tuple(c[0] for c in classes), d.get("source", ""))


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    precision: str  # fp32 | fp16 | int8
    input_name: str = "input"
    output_name: str = "probabilities"
    output: str = "probabilities"  # probabilities (activation inside the graph) or logits (heads.py)
    num_classes: int = 1000  # labels; the graph outputs heads.output_width(head, num_classes) columns
    batch: int | None = None  # None: dynamic batch dimension
    head: str = "softmax"  # softmax | sigmoid (multi-label) | binary (one sigmoid unit, two labels)
    threshold: float | None = None  # multi-label: the score above which a label is reported

    def __post_init__(self):
        from .heads import HEADS, OUTPUTS

        if self.head not in HEADS:
            raise EdgeClassifyError(f"model head {self.head!r} is not one of {HEADS}")
        if self.output not in OUTPUTS:
            raise EdgeClassifyError(f"model output {self.output!r} is not one of {OUTPUTS}")
        if self.head == "binary" and self.num_classes != 2:
            raise EdgeClassifyError(f"a binary head has 2 labels, not {self.num_classes}")

    @property
    def multi_label(self) -> bool:
        return self.head == "sigmoid"

    @property
    def width(self) -> int:
        from .heads import output_width

        return output_width(self.head, self.num_classes)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelInfo":
        return cls(**_known_fields(cls, d))


@dataclass(frozen=True)
class ModelContract:
    preprocess: PreprocessSpec
    labels: LabelSet
    model: ModelInfo
    provenance: dict = field(default_factory=dict)
    parity: dict | None = None

    def __post_init__(self):
        if len(self.labels) != self.model.num_classes:
            raise EdgeClassifyError(
                f"contract: {len(self.labels)} labels for a model with {self.model.num_classes} classes"
            )

    @property
    def schema(self) -> int:
        m, pre = self.model, self.preprocess
        newer = m.head != "softmax" or m.threshold is not None or pre.mode == "raw" or pre.resize != "nearest"
        return 2 if newer else 1

    @property
    def weights_origin(self) -> str | None:
        return (self.provenance.get("weights") or {}).get("origin")

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries (string -> string) that carry this contract."""
        meta = {
            "schema": str(self.schema),
            "preprocess": _dumps(asdict(self.preprocess)),
            "labels": _dumps(self.labels.to_dict()),
            "model": _dumps(asdict(self.model)),
            "provenance": _dumps(self.provenance),
        }
        if self.parity is not None:
            meta["parity"] = _dumps(self.parity)
        return {PREFIX + k: v for k, v in meta.items()}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str = "model") -> "ModelContract":
        if PREFIX + "schema" not in meta:
            raise EdgeClassifyError(
                f"{source} carries no edge-classify contract in its metadata",
                hint="export it with `export-model` (which writes preprocessing, labels and "
                "provenance into the file)",
            )
        try:
            version = int(meta[PREFIX + "schema"])
            if version > SCHEMA_VERSION:
                raise EdgeClassifyError(
                    f"{source} uses contract schema {version}; this runtime reads up to {SCHEMA_VERSION}",
                    hint="upgrade edge-classify",
                )
            parity = meta.get(PREFIX + "parity")
            return cls(
                preprocess=PreprocessSpec.from_dict(json.loads(meta[PREFIX + "preprocess"])),
                labels=LabelSet.from_dict(json.loads(meta[PREFIX + "labels"])),
                model=ModelInfo.from_dict(json.loads(meta[PREFIX + "model"])),
                provenance=json.loads(meta.get(PREFIX + "provenance", "{}")),
                parity=json.loads(parity) if parity else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise EdgeClassifyError(f"{source} has a malformed edge-classify contract: {exc!r}") from None


def _three(v) -> tuple[float, ...]:
    """One number or three -> three floats (per channel)."""
    vals = (v,) if isinstance(v, (int, float)) else tuple(v)
    return tuple(float(x) for x in (vals * 3 if len(vals) == 1 else vals))


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _known_fields(cls, d: Mapping[str, Any]) -> dict:
    # Ignore keys a newer exporter may add within the same schema version.
    names = cls.__dataclass_fields__.keys()
    return {k: v for k, v in d.items() if k in names}
