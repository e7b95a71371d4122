"""Graph rewrites at export must be exact: same outputs, bit for bit, or no rewrite."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_classify.export.graph_passes import (
    ALL,
    fold_zero_pad_into_maxpool,
    optimize,
    subsample_strided_pointwise_conv,
)
from edge_classify.runtime import Classifier, EngineOptions


def _stem(first_op="Relu", pad_value=0.0, pads=(0, 0, 1, 1, 0, 0, 1, 1), kernel=3):
    """x -> [first_op] -> Pad(pads, pad_value) -> MaxPool(kernel, stride 2) -> y, NCHW."""
    nodes, src = [], "x"
    if first_op:
        nodes.append(helper.make_node(first_op, ["x"], ["a"]))
        src = "a"
    nodes += [
        helper.make_node("Pad", [src, "pads", "value"], ["p"], mode="constant"),
        helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[kernel, kernel], strides=[2, 2]),
    ]
    inits = [numpy_helper.from_array(np.array(pads, np.int64), "pads"),
             numpy_helper.from_array(np.array(pad_value, np.float32), "value")]
    graph = helper.make_graph(nodes, "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 11, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, None, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(proto, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _inputs():
    rng = np.random.default_rng(0)
    yield rng.standard_normal((2, 4, 11, 12)).astype(np.float32)
    yield -np.abs(rng.standard_normal((2, 4, 11, 12))).astype(np.float32)  # all <= 0: every max is 0
    yield rng.uniform(0, 255, (2, 4, 11, 12)).astype(np.float32)


def test_relu_pad_maxpool_folds_and_is_bit_exact():
    before = _stem()
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert fold_zero_pad_into_maxpool(after) == 1
    onnx.checker.check_model(after)
    assert [n.op_type for n in after.graph.node] == ["Relu", "MaxPool"]
    assert [i.name for i in after.graph.initializer] == []  # the Pad's constants went with it
    for x in _inputs():
        want, got = _run(before, x), _run(after, x)
        assert got.shape == want.shape == (2, 4, 6, 6)
        assert np.array_equal(got, want)


def test_asymmetric_pads_fold_exactly():
    before = _stem(pads=(0, 0, 1, 0, 0, 0, 0, 2))
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert fold_zero_pad_into_maxpool(after) == 1
    for x in _inputs():
        assert np.array_equal(_run(after, x), _run(before, x))


@pytest.mark.parametrize("case", ["no relu", "non-zero value", "batch/channel pad", "pad >= kernel"])
def test_unsafe_patterns_are_left_alone(case):
    proto = {
        "no relu": lambda: _stem(first_op=None),  # negative inputs: zero pad != -inf pad
        "non-zero value": lambda: _stem(pad_value=1.0),
        "batch/channel pad": lambda: _stem(pads=(0, 1, 1, 1, 0, 0, 1, 1)),
        "pad >= kernel": lambda: _stem(pads=(0, 0, 2, 2, 0, 0, 2, 2), kernel=2),
    }[case]()
    ops = [n.op_type for n in proto.graph.node]
    assert fold_zero_pad_into_maxpool(proto) == 0
    assert [n.op_type for n in proto.graph.node] == ops


def test_the_guard_matters():
    """Folding without the ReLU would change results: the test above is not vacuous."""
    before = _stem(first_op=None)
    naive = _stem(first_op="Relu")
    assert fold_zero_pad_into_maxpool(naive) == 1
    del naive.graph.node[0]  # drop the ReLU, keep the folded MaxPool reading x directly
    naive.graph.node[0].input[0] = "x"
    x = -np.abs(np.random.default_rng(1).standard_normal((2, 4, 11, 12))).astype(np.float32)
    assert not np.array_equal(_run(naive, x), _run(before, x))


def _downsample_block(h=11, w=12, kernel=1, pads=(0, 0, 0, 0)):
    """ResNet's downsampling pattern: two stride-2 convs (main path, shortcut) on one input."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 4, kernel, kernel)).astype(np.float32), "wa"),
             numpy_helper.from_array(rng.standard_normal((5, 4, kernel, kernel)).astype(np.float32), "wb"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "bb")]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["ya"], kernel_shape=[kernel, kernel], strides=[2, 2], pads=list(pads)),
             helper.make_node("Conv", ["x", "wb", "bb"], ["yb"], kernel_shape=[kernel, kernel], strides=[2, 2],
                              pads=list(pads))]
    graph = helper.make_graph(nodes, "down", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, h, w])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, None, None, None])
                               for n in ("ya", "yb")], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run_all(proto, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})


@pytest.mark.parametrize(("h", "w"), [(11, 12), (14, 14), (7, 7)])
def test_strided_pointwise_conv_becomes_shared_subsample(h, w):
    before = _downsample_block(h, w)
    after = onnx.ModelProto.FromString(before.SerializeToString())
    assert subsample_strided_pointwise_conv(after) == 2
    onnx.checker.check_model(after)
    assert [n.op_type for n in after.graph.node] == ["MaxPool", "Conv", "Conv"]  # one subsample, shared
    for n in after.graph.node[1:]:
        assert list(helper.get_attribute_value(next(a for a in n.attribute if a.name == "strides"))) == [1, 1]
    x = np.random.default_rng(h).standard_normal((2, 4, h, w)).astype(np.float32) * 50
    for want, got in zip(_run_all(before, x), _run_all(after, x)):
        assert got.shape == want.shape == (2, want.shape[1], (h + 1) // 2, (w + 1) // 2)
        assert np.array_equal(got, want)


@pytest.mark.parametrize(("kernel", "pads"), [(3, (1, 1, 1, 1)), (1, (1, 1, 1, 1))])
def test_other_strided_convs_are_left_alone(kernel, pads):
    proto = _downsample_block(kernel=kernel, pads=pads)
    assert subsample_strided_pointwise_conv(proto) == 0
    assert [n.op_type for n in proto.graph.node] == ["Conv", "Conv"]


def test_exported_resnet_carries_the_default_rewrites(exported):
    """The real export runs the rewrite that helps both engines: pool1's padding lives in
    MaxPool; the strided 1x1 convolutions stay (that rewrite slows OpenVINO, graph_passes.py)."""
    proto = onnx.load(str(exported["fp32"]), load_external_data=False)
    ops = [n.op_type for n in proto.graph.node]
    assert "Pad" not in ops
    pool = next(n for n in proto.graph.node if n.op_type == "MaxPool")
    assert list(helper.get_attribute_value(next(a for a in pool.attribute if a.name == "pads"))) == [1, 1, 1, 1]
    inits = {t.name: t for t in proto.graph.initializer}
    pointwise = [n for n in proto.graph.node if n.op_type == "Conv" and list(inits[n.input[1]].dims[2:]) == [1, 1]]
    strides = [tuple(helper.get_attribute_value(a)) for n in pointwise for a in n.attribute if a.name == "strides"]
    # ResNet50 has one stem Pad and two strided 1x1 convs in each of 3 downsampling blocks.
    assert sorted(strides).count((2, 2)) == 6 and ops.count("MaxPool") == 1
    rewrites = Classifier(exported["fp32"], EngineOptions(providers="cpu")).contract.provenance["graph_rewrites"]
    assert rewrites == {"zero_pad_into_maxpool": 1}
    # All of them still apply to the real graph, and exactly (the parity check judges that).
    assert optimize(proto, ALL) == {"zero_pad_into_maxpool": 0, "strided_pointwise_conv": 6}
