"""What a Keras classifier's output holds: found in the graph where it shows, else asked for.

``--head`` values and what they become in the contract (runtime/model/heads.py):

==================  ===================================  =========================
``--head``          final layer                          contract (head, output)
==================  ===================================  =========================
``softmax``         softmax                              softmax, probabilities
``logits``          linear, one class per image          softmax, logits
``sigmoid``         sigmoid, multi-label                 sigmoid, probabilities
``sigmoid-logits``  linear, multi-label                  sigmoid, logits
==================  ===================================  =========================

A single output unit is a binary head (two labels): sigmoid -> probabilities, linear ->
logits; with ``--multi-label`` it is one label scored on its own instead.
"""

from __future__ import annotations

import numpy as np

from edge_classify.runtime.errors import EXIT_USAGE, EdgeClassifyError

HEAD_CHOICES = ("softmax", "logits", "sigmoid", "sigmoid-logits")
_PASS_THROUGH = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianDropout", "GaussianNoise",
                 "AlphaDropout", "ActivityRegularization", "Identity"}


def final_activation(model) -> tuple[str | None, str]:
    """(``softmax`` | ``sigmoid`` | ``linear`` | None, the layer that says so)."""
    tensor = model.outputs[0] if len(model.outputs) == 1 else None
    for _ in range(100):  # nested models and pass-through layers, never a cycle
        layer = getattr(getattr(tensor, "_keras_history", None), "operation", None)
        if layer is None:
            return None, "unknown"
        kind = type(layer).__name__
        if hasattr(layer, "outputs") and hasattr(layer, "layers"):  # a nested model: its own output
            tensor = layer.outputs[0] if len(layer.outputs) == 1 else None
            continue
        if kind == "Softmax":
            return "softmax", f"{layer.name} (Softmax)"
        act = getattr(layer, "activation", None)
        name = getattr(act, "__name__", None)
        if kind in _PASS_THROUGH or (kind == "Activation" and name == "linear"):
            tensor = layer.input
            continue
        if name in ("softmax", "sigmoid", "linear"):
            return name, f"{layer.name} ({kind}, activation {name})"
        return None, f"{layer.name} ({kind})"
    return None, "unknown"


def decide(activation: str | None, where: str, width: int, head_flag: str | None, multi_label: bool,
           raw: np.ndarray) -> tuple[str, str, str]:
    """(contract head, contract output, how it was decided). ``raw``: the model's outputs
    on the verification photos, to check a declared head and read one the graph hides."""
    if head_flag is None:
        if activation is None:
            activation = _from_outputs(raw, width, multi_label, where)
            how = f"from its outputs (the last layer, {where}, does not show its activation)"
        else:
            how = f"from the last layer, {where}"
        if multi_label:
            head_flag = "sigmoid" if activation == "sigmoid" else "sigmoid-logits"
            if activation == "softmax":
                raise EdgeClassifyError(f"--multi-label, but the model ends in softmax ({where}): its classes exclude "
                                        "each other", hint="drop --multi-label, or pass --head to override",
                                        exit_code=EXIT_USAGE)
        else:
            head_flag = {"softmax": "softmax", "sigmoid": "sigmoid", "linear": "logits"}[activation]
    else:
        how = "as --head says"
        _check_declared(head_flag, raw)
    head, output = {"softmax": ("softmax", "probabilities"), "logits": ("softmax", "logits"),
                    "sigmoid": ("sigmoid", "probabilities"), "sigmoid-logits": ("sigmoid", "logits")}[head_flag]
    if width == 1 and not multi_label:
        if head == "softmax" and output == "probabilities":
            raise EdgeClassifyError("the model outputs one score through softmax, which is always 1",
                                    hint="a binary classifier ends in one sigmoid unit (or a linear one with "
                                         "--head sigmoid-logits)", exit_code=EXIT_USAGE)
        head = "binary"
    return head, output, how


def _from_outputs(raw: np.ndarray, width: int, multi_label: bool, where: str) -> str:
    in_unit = bool(np.all((raw >= 0) & (raw <= 1)))
    if in_unit and width > 1 and not multi_label and np.allclose(raw.sum(axis=-1), 1.0, atol=1e-3):
        return "softmax"
    if in_unit and (multi_label or width == 1):
        return "sigmoid"
    raise EdgeClassifyError(f"cannot tell what the model's output holds: its last layer, {where}, does not show "
                            "its activation", hint="pass --head softmax|logits|sigmoid|sigmoid-logits "
                            "(logits: a final layer without activation)", exit_code=EXIT_USAGE)


def _check_declared(head_flag: str, raw: np.ndarray) -> None:
    if head_flag in ("softmax", "sigmoid") and not np.all((raw >= -1e-6) & (raw <= 1 + 1e-6)):
        raise EdgeClassifyError(f"--head {head_flag}, but the model outputs values outside 0..1 "
                                f"(from {raw.min():.3g} to {raw.max():.3g}) on the verification photos",
                                hint="those are logits: pass --head logits or --head sigmoid-logits",
                                exit_code=EXIT_USAGE)
    if head_flag == "softmax" and raw.shape[-1] > 1 and not np.allclose(raw.sum(axis=-1), 1.0, atol=1e-3):
        raise EdgeClassifyError("--head softmax, but the model's scores do not sum to 1 per image",
                                hint="independent per-label scores are --head sigmoid", exit_code=EXIT_USAGE)
