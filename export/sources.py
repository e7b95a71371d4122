"""Where the model to export comes from: a keras.applications arch, or the user's own file.

Each source yields a ``Source``: the float32 Keras model to convert, plus what it implies
for the contract when the user says nothing (preprocessing, input size, labels). The
pipeline then settles the contract from these defaults and the user's flags (``settle``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from edge_classify.runtime.errors import EXIT_MODEL, EXIT_USAGE, EdgeClassifyError
from edge_classify.runtime.model.contract import LabelSet

from . import keras_model, user_model
from .weights import WeightsSpec, sha256_file


@dataclass
class Source:
    model: object  # float32 Keras model, ready to convert
    name: str  # ModelInfo.arch
    mode: str | None  # default preprocessing mode, None: the user must say
    mode_reason: str
    input_shape: tuple  # (height, width, channels), None where dynamic
    labels: LabelSet | None  # default labels, None: decided from the output width
    provenance: dict
    original: object = None  # the model as given, when inference_copy changed it
    changes: list[str] = field(default_factory=list)
    normalizing: list[str] = field(default_factory=list)  # in-model Rescaling/Normalization layers
    from_application: bool = False


def from_application(arch: str, weights: WeightsSpec) -> Source:
    ctor, mode, size = keras_model.ARCHS[arch]
    given = keras_model.build(arch, weights)
    model, changes = user_model.inference_copy(given)  # ConvNeXt: grouped convolutions, exact GELU
    return Source(model, arch, mode, f"keras.applications.{ctor} preprocess_input", size + (3,),
                  LabelSet.imagenet1k(),
                  {"weights": weights.provenance(), "keras_application": f"keras.applications.{ctor}",
                   **({"changes": changes} if changes else {})},
                  original=given if changes else None, changes=changes,
                  normalizing=user_model.normalizing_layers(model)[0], from_application=True)


def from_file(path: Path, custom_objects: list[str] | None = None, allow_lambda: bool = False) -> Source:
    custom = user_model.load_custom_objects(custom_objects or [])
    given = user_model.load(path, custom, allow_lambda)
    model, changes = user_model.inference_copy(given)
    normalizing, opaque = user_model.normalizing_layers(model)
    arch = user_model.backbone(model)
    if normalizing:
        mode, reason = "raw", f"the model normalizes inside ({', '.join(normalizing)})"
    elif opaque:  # a Lambda(preprocess_input) would make the backbone's mode a double normalization
        mode, reason = None, f"{', '.join(opaque)} runs before the network and may normalize"
    elif arch is not None:
        mode = keras_model.ARCHS[arch][1]
        reason = f"its {keras_model.ARCHS[arch][0]} backbone's preprocess_input"
    else:
        mode, reason = None, ""
    shape = user_model.input_shape(model)
    if shape[-1] != 3:
        raise EdgeClassifyError(f"{path.name} takes {shape[-1]}-channel images; edge-classify feeds 3-channel "
                                "(RGB/BGR) images", hint="a grayscale model can be re-saved with a 3-channel input "
                                "(e.g. average the channels in a first layer)", exit_code=EXIT_MODEL)
    digest = sha256_file(path) if path.is_file() else _sha256_dir(path)
    provenance = {"weights": {"origin": "file", "file": path.name, "sha256": digest},
                  "keras_model": {"file": path.name, "sha256": digest, "name": given.name,
                                  **({"backbone": arch} if arch else {}),
                                  **({"changes": changes} if changes else {})}}
    name = path.stem if path.is_file() else path.name  # "digits" for digits.keras; Keras' own name is in provenance
    return Source(model, name, mode, reason, shape, None, provenance,
                  original=given if changes else None, changes=changes, normalizing=normalizing)


def _sha256_dir(folder: Path) -> str:
    """A SavedModel folder's content hash: its files' relative paths and bytes, in order."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode() + b"\0" + bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


def input_size(source: Source, flag: tuple[int, int] | None) -> tuple[int, int]:
    h, w = source.input_shape[:2]
    if flag is not None:
        if (h is not None and h != flag[0]) or (w is not None and w != flag[1]):
            raise EdgeClassifyError(f"--input-size {flag[0]}x{flag[1]}, but the model's input is {h}x{w}",
                                    exit_code=EXIT_USAGE)
        return tuple(flag)
    if h is None or w is None:
        raise EdgeClassifyError(f"the model's input size is not fixed ({h or '?'}x{w or '?'})",
                                hint="pass --input-size HxW, the size it was trained at (e.g. 224x224)",
                                exit_code=EXIT_USAGE)
    return (int(h), int(w))
