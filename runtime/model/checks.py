"""The contract in a model's metadata, checked against the graph it describes.

The contract is written by ``export-model``, but a model file can be edited, hand-made or
mixed up with another one. Each disagreement used to surface later as a traceback from
deep inside ONNX Runtime, or not at all (1001 labels on a 1000-wide output ran silently,
every label after the first shifted). Here each one is a single error naming both sides.
"""

from __future__ import annotations

from ..errors import EXIT_MODEL, EdgeClassifyError
from .contract import ModelContract


def _dims(shape) -> list:
    """ONNX Runtime shapes hold ints for fixed dims and str/None for symbolic ones."""
    return [d if isinstance(d, int) and d >= 0 else None for d in (shape or [])]


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in _dims(shape)) + "]"


def check(contract: ModelContract, inputs, outputs, source: str) -> None:
    """``inputs``/``outputs``: ``session.get_inputs()`` / ``get_outputs()`` (name, shape, type)."""
    m, pre = contract.model, contract.preprocess

    def fail(what: str) -> None:
        raise EdgeClassifyError(f"{source}: its contract does not match its graph: {what}",
                                hint="re-export the model with `export-model`; the file may have been edited "
                                     "or its metadata copied from another model",
                                exit_code=EXIT_MODEL)

    feeds = {i.name: i for i in inputs}
    if m.input_name not in feeds:
        fail(f"the contract's input {m.input_name!r} is not a graph input (graph inputs: {sorted(feeds)})")
    if len(feeds) != 1:
        fail(f"the graph needs {len(feeds)} inputs ({sorted(feeds)}); an image classifier takes one")
    x = feeds[m.input_name]
    if x.type != "tensor(float)":
        fail(f"input {x.name!r} is {x.type}; the contract feeds float32")
    dims = _dims(x.shape)
    if len(dims) != 4:
        fail(f"input {x.name!r} has shape {_fmt(x.shape)}; a {pre.layout} image batch has 4 dimensions")
    h, w = pre.input_size
    want = [m.batch, *pre.input_shape()]
    names = ["batch", "height", "width", "channels"] if pre.layout == "NHWC" else ["batch", "channels", "height", "width"]
    for name, have, expect in zip(names, dims, want):
        if have is not None and expect is not None and have != expect:
            fail(f"input {x.name!r} has shape {_fmt(x.shape)} but the contract says {pre.layout} "
                 f"{name} {expect} (input size {h}x{w}, batch {m.batch or 'dynamic'})")
    if m.batch is None and dims[0] is not None:
        fail(f"input {x.name!r} has a fixed batch of {dims[0]} but the contract says the batch is dynamic")

    outs = {o.name: o for o in outputs}
    if m.output_name not in outs:
        fail(f"the contract's output {m.output_name!r} is not a graph output (graph outputs: {sorted(outs)})")
    y = outs[m.output_name]
    odims = _dims(y.shape)
    if y.type not in ("tensor(float)", "tensor(float16)", "tensor(double)"):
        fail(f"output {y.name!r} is {y.type}; class scores are floating point")
    if len(odims) != 2:
        fail(f"output {y.name!r} has shape {_fmt(y.shape)}; class scores are (batch, classes)")
    if odims[1] is not None and odims[1] != m.width:
        fail(f"output {y.name!r} has {odims[1]} classes but the contract carries {len(contract.labels)} labels"
             + (" (a binary head outputs one column)" if m.head == "binary" else ""))


def check_output_width(contract: ModelContract, width: int, source: str) -> None:
    """For graphs whose class dimension is symbolic: checked on the first run."""
    if width != contract.model.width:
        raise EdgeClassifyError(
            f"{source}: the model produced {width} class scores but its contract expects {contract.model.width} "
            f"({len(contract.labels)} labels, {contract.model.head} head)",
            hint="re-export the model with `export-model`", exit_code=EXIT_MODEL)
