"""The model contract: everything needed to use an exported model, stored inside the model.

One typed spec (``ModelContract``) is written into the ONNX file's ``metadata_props`` at
export and read back by the runtime; there is no side config and nothing is guessed
from file names. It is not specific to ImageNet ResNet50: any class count, any labels,
and the preprocessing modes Keras applications use (``caffe``, ``tf``, ``torch``) plus
explicit ``meanstd``.

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
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .errors import EdgeClassifyError

SCHEMA_VERSION = 1
PREFIX = "edge_classify."

# Keras' caffe-mode constants (keras/src/applications/imagenet_utils.py), in BGR order.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# Keras' torch-mode constants, in RGB order, applied after scaling to [0, 1].
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)

MODES = ("caffe", "tf", "torch", "meanstd")
RESIZE_METHODS = ("nearest",)  # PIL NEAREST semantics, what keras.utils.load_img uses by default


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
        if problems:
            raise EdgeClassifyError("invalid preprocessing spec: " + "; ".join(problems))

    @classmethod
    def keras(cls, mode: str, input_size=(224, 224)) -> "PreprocessSpec":
        """The spec matching ``keras.applications.imagenet_utils.preprocess_input(mode=...)``."""
        if mode == "caffe":
            return cls("caffe", "BGR", CAFFE_MEAN_BGR, None, tuple(input_size))
        if mode == "tf":
            return cls("tf", "RGB", None, None, tuple(input_size))
        if mode == "torch":
            return cls("torch", "RGB", TORCH_MEAN_RGB, TORCH_STD_RGB, tuple(input_size))
        raise EdgeClassifyError(f"no Keras preprocessing mode {mode!r} (use caffe, tf or torch)")

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
        from importlib import resources

        data = json.loads(resources.files(__package__).joinpath("labels/imagenet1k.json").read_text("utf-8"))
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
    output: str = "probabilities"  # what the output holds: probabilities (softmax applied) or logits
    num_classes: int = 1000
    batch: int | None = None  # None: dynamic batch dimension

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
    def weights_origin(self) -> str | None:
        return (self.provenance.get("weights") or {}).get("origin")

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries (string -> string) that carry this contract."""
        meta = {
            "schema": str(SCHEMA_VERSION),
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


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _known_fields(cls, d: Mapping[str, Any]) -> dict:
    # Ignore keys a newer exporter may add within the same schema version.
    names = cls.__dataclass_fields__.keys()
    return {k: v for k, v in d.items() if k in names}
