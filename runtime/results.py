"""What classifying returns (``Classification``), and the one row every output writes.

``row()`` is the only function that turns a result into a row: ``edge-classify --json``,
``-o`` results files, video and stream frames, and ``edge-classify-bulk``'s part files all
write it, so a field means the same thing everywhere (README: Output rows). Fields:

- ``path`` (``path_base64`` beside it when the name is not UTF-8: its exact bytes);
  a frame's ``path`` is its source's name
- ``model_sha256``; ``model_precision``, what the file holds (fp32 | fp16 | int8);
  ``compute_precision``, the arithmetic that ran (fp32 | fp16 | int8 | bf16 | bf16 (emulated))
- ``engine`` (onnxruntime | openvino) and ``provider`` (ONNX Runtime's execution provider, or
  "OpenVINO <device>")
- ``predictions``: the top-k as ``{rank, index, wnid, label, probability}``; multi-label
  models add ``threshold``, ``labels_above_threshold`` and every label's ``scores``
- ``timings_ms`` (decode, normalize, inference, batch), ``decode`` (which decode ran:
  ``exact``, or ``fast 1/2`` / ``1/4`` / ``1/8`` for a big JPEG decoded at reduced scale;
  absent for decoded arrays and frames), ``notes`` (what the decoder said of an image it
  still classified), or ``error`` (why this input has no predictions)
- frames add ``source``, ``frame``, ``timestamp_ms`` and ``dropped`` (``frame_fields``)
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prediction:
    index: int
    wnid: str | None
    label: str
    probability: float


@dataclass
class Classification:
    source: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    timings_ms: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the decoder said about an image it still classified
    # Multi-label models only: every label's score (label order), and those above the threshold.
    scores: dict[str, float] | None = None
    positive: list[Prediction] | None = None
    threshold: float | None = None
    decode: str | None = None  # which decode ran (images/fast_decode.py: label); None for arrays

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Producer:
    """Which model and engine made a result: the same on every row of one run."""

    model_sha256: str
    model_precision: str
    compute_precision: str
    engine: str
    provider: str


def row(result: Classification, producer: Producer, **extra) -> dict:
    """The row for one result. ``path`` is always valid UTF-8 (undecodable bytes of a file
    name become U+FFFD); when the name is not UTF-8, ``path_base64`` holds its exact bytes."""
    out = {"path": display_name(result.source, escape_controls=False)}
    raw = path_bytes(result.source)
    if raw is not None:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            out["path_base64"] = base64.b64encode(raw).decode("ascii")
    out.update(model_sha256=producer.model_sha256, model_precision=producer.model_precision,
               compute_precision=producer.compute_precision, engine=producer.engine, provider=producer.provider)
    if result.error is not None:
        out["error"] = result.error
    else:
        out["predictions"] = [
            {"rank": r, "index": p.index, "wnid": p.wnid, "label": p.label, "probability": p.probability}
            for r, p in enumerate(result.predictions, 1)
        ]
        if result.scores is not None:
            out["threshold"] = result.threshold
            out["labels_above_threshold"] = [
                {"index": p.index, "label": p.label, "probability": p.probability} for p in result.positive]
            out["scores"] = result.scores
        out["timings_ms"] = result.timings_ms
        if result.decode is not None:
            out["decode"] = result.decode
    if result.notes:
        out["notes"] = result.notes
    out.update(extra)
    return out


def frame_fields(source: str, frame: int, timestamp_ms: float, dropped: int) -> dict:
    """What a video or stream frame's row adds: where in its source the frame was."""
    return {"source": source, "frame": frame, "timestamp_ms": round(timestamp_ms, 3), "dropped": dropped}


def path_bytes(source: str) -> bytes | None:
    """A path's bytes as the OS has them (``os.fsdecode`` kept undecodable ones as surrogates)."""
    try:
        return os.fsencode(source)
    except UnicodeEncodeError:
        return None


def display_name(source: str, escape_controls: bool = True) -> str:
    """A file name made safe to print: undecodable bytes as U+FFFD and, for terminals,
    control characters escaped (a newline in a name must not forge an output line)."""
    raw = path_bytes(source)
    text = raw.decode("utf-8", "replace") if raw is not None else source.encode("utf-8", "replace").decode("utf-8")
    if escape_controls:
        text = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
    return text
