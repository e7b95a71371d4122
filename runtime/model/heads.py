"""What a model's output holds, and how it becomes the class probabilities we rank.

The one place the runtime and the export gate turn raw model outputs into probabilities,
so both judge the same numbers. ``ModelInfo`` (contract.py) says two things:

* ``head`` — how the classes relate:
    ``softmax``  one class per image; scores over all classes sum to 1.
    ``sigmoid``  multi-label: every class scored on its own in 0..1; an image may have
                 several (or no) labels above ``threshold``.
    ``binary``   one sigmoid unit for two classes (Keras' ``label_mode="binary"``): the
                 unit is P(class 1); class 0 gets 1 - p. Two labels, one output column.
* ``output`` — ``probabilities`` (the activation is inside the graph) or ``logits`` (a
  final layer without activation, as trained with ``from_logits=True``): the runtime
  applies the head's activation.
"""

from __future__ import annotations

import numpy as np

HEADS = ("softmax", "sigmoid", "binary")
OUTPUTS = ("probabilities", "logits")
DEFAULT_THRESHOLD = 0.5


def output_width(head: str, num_classes: int) -> int:
    """How many columns the graph outputs for ``num_classes`` labels."""
    return 1 if head == "binary" else num_classes


def probabilities(raw: np.ndarray, head: str = "softmax", output: str = "probabilities") -> np.ndarray:
    """Raw model output (N, width) -> probabilities (N, classes), float32."""
    x = np.asarray(raw, dtype=np.float32)
    if output == "logits":
        x = softmax(x) if head == "softmax" else sigmoid(x)
    if head == "binary":
        x = np.concatenate([1.0 - x, x], axis=-1, dtype=np.float32)
    return x


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a negative argument only: no overflow warnings for large |logits|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)
