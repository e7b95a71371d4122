"""The contract an export writes: the source's defaults, overridden by the user's flags,
checked against what the model really outputs.

Order matters: the input size comes from the model; the preprocessing from ``--preprocess``
or the source (a model that normalizes inside defaults to ``raw``); the head is read from
the graph, or from the model's outputs on the verification photos under that
preprocessing; the labels must then fit the head's class count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_classify.runtime.errors import EXIT_USAGE, EdgeClassifyError
from edge_classify.runtime.model import heads as runtime_heads
from edge_classify.runtime.model.contract import LabelSet, PreprocessSpec
from edge_classify.runtime.model.preprocess_modes import meanstd_scale_warning, parse_preprocess

from . import keras_head, sources, verify
from . import labels as label_files
from .sources import Source

RESIZE_NOTE = {
    "nearest": "keras.utils.load_img's default; pass --resize bilinear if the model was trained with "
               "image_dataset_from_directory",
    "bilinear": "tf.image.resize bilinear, as image_dataset_from_directory and keras.layers.Resizing",
}


@dataclass
class Settled:
    preprocess: PreprocessSpec
    labels: LabelSet
    head: str
    output: str
    threshold: float | None
    raw_reference: np.ndarray  # the converted model's raw outputs on the verification photos
    reference: np.ndarray  # ... as probabilities (the parity gate's reference)
    lines: list[str]  # what was decided and why, for progress
    warnings: list[str]


def preprocessing(source: Source, flag: str | None, resize: str | None, size) -> tuple[PreprocessSpec, list, list]:
    lines, warnings = [], []
    resize = resize or "nearest"
    if flag is None:
        if source.mode is None:
            raise EdgeClassifyError(
                "cannot tell how this model's inputs were normalized in training"
                + (f": {source.mode_reason}" if source.mode_reason else ""),
                hint="pass --preprocess caffe|tf|torch|raw|mean=R,G,B:std=R,G,B (raw: pixels 0..255, e.g. when "
                     "the model normalizes inside); see the README's preprocessing table", exit_code=EXIT_USAGE)
        spec = PreprocessSpec.keras(source.mode, size, resize)
        lines.append(f"preprocessing: {source.mode} ({source.mode_reason})")
    else:
        spec = parse_preprocess(flag, size, resize)
        lines.append(f"preprocessing: {flag} (--preprocess)")
        scale = meanstd_scale_warning(spec)
        if scale:
            warnings.append(scale)
        if spec.mode != "raw" and source.normalizing:
            warnings.append(f"--preprocess {flag} normalizes the pixels, and the model normalizes them again "
                            f"inside ({', '.join(source.normalizing)}): double normalization silently costs "
                            "accuracy; the default for this model is raw")
    lines.append(f"resize: {resize} to {size[0]}x{size[1]} ({RESIZE_NOTE[resize]})")
    return spec, lines, warnings


def settle(source: Source, images, *, preprocess: str | None = None, resize: str | None = None,
           input_size=None, head: str | None = None, multi_label: bool = False, threshold: float | None = None,
           labels: LabelSet | None = None, labels_flag: str = "--labels") -> Settled:
    size = sources.input_size(source, input_size)
    spec, lines, warnings = preprocessing(source, preprocess, resize, size)
    raw = verify.keras_reference(source.model, images, spec)
    if raw.ndim != 2:
        raise EdgeClassifyError(f"the model outputs shape {raw.shape[1:]} per image; a classifier outputs one "
                                "score per class", exit_code=EXIT_USAGE)
    width = raw.shape[1]
    activation, where = keras_head.final_activation(source.model)
    head_kind, output, how = keras_head.decide(activation, where, width, head, multi_label, raw)
    lines.append(f"head: {head_kind}, {output} ({how})")
    classes = 2 if head_kind == "binary" else width
    if labels is None:
        if source.labels is not None and len(source.labels) == classes:
            labels = source.labels
        elif classes == 1000:
            labels = LabelSet.imagenet1k()
            lines.append("labels: ImageNet's 1000 (the model outputs 1000 scores and no --labels was given)")
        else:
            labels = label_files.generic(classes)
            warnings.append(f"no --labels or --labels-from-dir: the {classes} classes are named class_0.. "
                            f"class_{classes - 1}")
    else:
        label_files.check_count(labels, classes, head_kind, labels_flag)
        lines.append(f"labels: {len(labels)} from {labels.source}")
    if threshold is not None and head_kind != "sigmoid":
        warnings.append(f"--threshold applies to multi-label (sigmoid) heads; this one is {head_kind}: ignored")
        threshold = None
    if head_kind == "sigmoid":
        threshold = runtime_heads.DEFAULT_THRESHOLD if threshold is None else threshold
    reference = runtime_heads.probabilities(raw, head_kind, output)
    return Settled(spec, labels, head_kind, output, threshold, raw, reference, lines, warnings)
