"""Exact rewrites of the converted ONNX graph: each leaves every output bit-identical (finite inputs).

Each is measured on both engines (ResNet50 FP32, 2-core AMD EPYC, batch 1, 40 alternating
rounds in one process per engine, per-round ratio to the graph as converted):

=========================  ==================  ===============
rewrite                    ONNX Runtime 1.32   OpenVINO 2026.4
=========================  ==================  ===============
zero_pad_into_maxpool      0.984 (45.1->44.4)  0.982 (40.9->40.3)
strided_pointwise_conv     0.985               1.081 (slower)
both                       0.977               1.094
=========================  ==================  ===============

So ``optimize`` applies only the Pad fold by default: it helps both engines. The strided
rewrite gains ONNX Runtime 1.5% and costs OpenVINO 8% on the FP32 graph (its strided 1x1
kernels beat a subsample plus a dense 1x1), and since ``auto`` may run a file on either
engine, the FP32 file is not tuned for one of them at the other's expense.

INT8 is the other way round: the QDQ file quantized from the graph with both rewrites ran
21.9 ms on OpenVINO and 23.8 on ONNX Runtime, quantized from the Pad-fold-only graph
25.0 and 23.8 ms (batch-1 p50 of two default ``edge-bench`` runs, same machine). So the
INT8 file gets ``INT8_EXTRA`` on top.

Keras' ResNet stem is ``conv1 -> ReLU -> ZeroPadding2D(1) -> MaxPool(3, stride 2)``. tf2onnx
keeps the padding as its own ``Pad`` node, and ONNX Runtime may not fold a *zero* pad into
``MaxPool`` (whose own padding acts as -inf), so on the CPU the stem pays for the Pad plus a
layout round trip around it (NCHWc -> NCHW -> Pad -> NCHWc). After a ReLU every value is
>= 0 and each window keeps at least one real value (pad < kernel), so padding with 0 or with
-inf gives the same maxima: the Pad can move into ``MaxPool``'s ``pads``.
"""

from __future__ import annotations

import numpy as np

_NON_NEGATIVE = {"Relu"}  # producers whose outputs are >= 0
ALL = ("zero_pad_into_maxpool", "strided_pointwise_conv")
DEFAULT = ("zero_pad_into_maxpool",)  # helps both engines; see the table above
INT8_EXTRA = ("strided_pointwise_conv",)  # the INT8 file's graph only (above)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _plain(node, op_type: str) -> bool:
    """A default-domain ``op_type`` node without ``auto_pad`` (explicit pads only)."""
    return (node.op_type == op_type and node.domain in ("", "ai.onnx")
            and _attrs(node).get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def optimize(proto, passes: tuple[str, ...] | None = None) -> dict[str, int]:
    """Apply the rewrites named in ``passes`` (default ``DEFAULT``) in place; returns how
    often each one fired."""
    table = {"zero_pad_into_maxpool": fold_zero_pad_into_maxpool,
             "strided_pointwise_conv": subsample_strided_pointwise_conv}
    return {name: table[name](proto) for name in (DEFAULT if passes is None else passes)}


def subsample_strided_pointwise_conv(proto) -> int:
    """Rewrite ``Conv(1x1, stride s)`` as ``MaxPool(1x1, stride s) -> Conv(1x1, stride 1)``.

    A 1x1 convolution with stride s reads only every s-th pixel, and a 1x1 max pool with
    stride s is exactly that subsampling. ResNet's downsampling blocks have two such convs
    on the same input (main path and shortcut), which then share one subsample. ONNX
    Runtime's pointwise kernel runs these convs slower strided than dense. Returns how
    many convs were rewritten.
    """
    from onnx import helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    subsampled: dict[tuple[str, tuple[int, ...]], str] = {}
    nodes = []
    rewritten = 0
    for node in graph.node:
        if _plain(node, "Conv") and node.input[1] in inits:
            attrs = _attrs(node)
            kernel = list(attrs.get("kernel_shape", inits[node.input[1]].dims[2:]))
            strides = tuple(attrs.get("strides", [1] * len(kernel)))
            if (kernel and all(k == 1 for k in kernel) and len(strides) == len(kernel) and any(s > 1 for s in strides)
                    and not any(attrs.get("pads", [0])) and all(d == 1 for d in attrs.get("dilations", [1]))):
                key = (node.input[0], strides)
                if key not in subsampled:
                    out = f"{node.input[0]}__subsample{'x'.join(map(str, strides))}"
                    nodes.append(helper.make_node("MaxPool", [node.input[0]], [out], name=out,
                                                  kernel_shape=[1] * len(kernel), strides=list(strides)))
                    subsampled[key] = out
                node.input[0] = subsampled[key]
                for a in node.attribute:
                    if a.name == "strides":
                        a.ints[:] = [1] * len(strides)
                rewritten += 1
        nodes.append(node)
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten


def fold_zero_pad_into_maxpool(proto) -> int:
    """Fold ``Relu -> Pad(0, spatial only) -> MaxPool`` into ``MaxPool(pads=...)`` in place.

    Returns how many Pads were folded. Anything that does not match exactly is left alone.
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in graph.output}

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    folded = 0
    freed: set[str] = set()
    for pad in [n for n in graph.node if _plain(n, "Pad")]:
        if _attrs(pad).get("mode", b"constant") not in (b"constant", "constant") or len(pad.input) < 2:
            continue
        pads = const(pad.input[1])
        value = const(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
        if pads is None or value is None or np.any(value != 0) or len(pad.input) > 3:
            continue
        if pads.size != 8 or np.any(pads[[0, 1, 4, 5]] != 0) or np.any(pads < 0):
            continue  # only NCHW spatial padding
        src = producer.get(pad.input[0])
        users = consumers.get(pad.output[0], [])
        if src is None or src.op_type not in _NON_NEGATIVE or len(users) != 1 or pad.output[0] in graph_outputs:
            continue
        pool = users[0]
        if not _plain(pool, "MaxPool") or len(pool.output) != 1:
            continue
        p_attrs = _attrs(pool)
        kernel = list(p_attrs.get("kernel_shape", []))
        if (p_attrs.get("ceil_mode", 0) or any(d != 1 for d in p_attrs.get("dilations", [1, 1])) or any(p_attrs.get("pads", [0]))
                or len(kernel) != 2):
            continue
        new_pads = [int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7])]  # begin h, w; end h, w
        if any(p >= k for p, k in zip(new_pads, kernel + kernel)):
            continue  # a window made only of padding would be 0 here but -inf-padded in MaxPool
        kept = [a for a in pool.attribute if a.name != "pads"]
        del pool.attribute[:]
        pool.attribute.extend(kept + [helper.make_attribute("pads", new_pads)])
        pool.input[0] = pad.input[0]
        graph.node.remove(pad)
        freed.update(i for i in pad.input[1:] if i)
        folded += 1
    _drop_initializers(graph, freed)
    return folded


def _drop_initializers(graph, names: set[str]) -> None:
    """Remove the folded Pads' constants, unless something else (a subgraph too) reads them."""
    from onnx import AttributeProto

    if not names or any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in graph.node
                        for a in n.attribute):
        return
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name not in names or t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
