"""Graph rewrites at export must be exact: same outputs, bit for bit, or no rewrite."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_classify.export.graph_passes import fold_zero_pad_into_maxpool


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


def test_exported_resnet_stem_has_no_pad(exported):
    """The real export runs the pass: ResNet's pool1 padding lives in MaxPool."""
    proto = onnx.load(str(exported["fp32"]), load_external_data=False)
    ops = [n.op_type for n in proto.graph.node]
    assert "Pad" not in ops
    pool = next(n for n in proto.graph.node if n.op_type == "MaxPool")
    assert list(helper.get_attribute_value(next(a for a in pool.attribute if a.name == "pads"))) == [1, 1, 1, 1]
