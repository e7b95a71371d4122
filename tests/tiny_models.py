"""Small hand-built ONNX classifiers with an edge-classify contract, for runtime tests that
need a model's plumbing (contracts, caches, outputs), not ResNet's arithmetic.

The graph averages each colour channel of the preprocessed image and maps the three means
to class scores (MatMul + bias + Softmax), so its top-1 depends on the picture. Variants
break one thing at a time: a contract that disagrees with the graph, or scores that turn
to NaN for dark images (``nan_for_dark``: a Sqrt of the caffe-centred channel means,
which are negative for dark pictures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make(path: Path, *, classes: int = 5, seed: int = 0, nan_for_dark: bool = False, input_name: str = "input",
         graph_input_size=(224, 224), contract_input_size=(224, 224), labels: int | None = None,
         contract_input_name: str | None = None, output_name: str = "probabilities",
         parity: dict | None = None, batch: int | None = None) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge_classify.export.convert import attach_contract
    from edge_classify.runtime.model.contract import LabelSet, ModelContract, ModelInfo, PreprocessSpec

    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.05, (3, classes)).astype(np.float32)
    b = rng.normal(0, 0.1, (classes,)).astype(np.float32)
    h, wd = graph_input_size
    nodes = [helper.make_node("ReduceMean", [input_name], ["means"], axes=[1, 2], keepdims=0)]
    feat = "means"
    if nan_for_dark:
        nodes.append(helper.make_node("Sqrt", ["means"], ["roots"]))
        feat = "roots"
    nodes += [
        helper.make_node("MatMul", [feat, "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [output_name], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch or "batch", h, wd, 3])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch or "batch", classes])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    n_labels = classes if labels is None else labels
    label_set = LabelSet(tuple(f"class_{i}" for i in range(n_labels)), (None,) * n_labels, "tiny")
    info = ModelInfo("tiny", "fp32", contract_input_name or input_name, output_name, "probabilities", n_labels, batch)
    contract = ModelContract(PreprocessSpec.keras("caffe", contract_input_size), label_set, info,
                             {"weights": {"origin": "file"}}, parity)
    attach_contract(model, contract)
    onnx.save(model, str(path))
    return path


def make_conv(path: Path, precision: str = "fp32", *, calibration: list | None = None, activations: str = "s8",
              classes: int = 5, seed: int = 0, size: int = 64) -> Path:
    """A small convolutional classifier with biased Conv and Gemm layers, in FP32, FP16 or INT8
    (QDQ, quantized by the product's own ``onnx_to_int8`` on ``calibration`` images), built
    with ``onnx`` helpers only: no TensorFlow, so it can be made on a Jetson (GPU tests).

    NHWC float32 input (caffe preprocessing) -> Transpose -> Conv 3x3 (+bias) -> Relu ->
    Conv 3x3 stride 2 (+bias) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (+bias) ->
    Softmax. An FP16 file computes in float16 with float32 inputs and outputs, as exported
    FP16 files do. Weights are seeded; the head is scaled so that top-1 varies with the picture.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge_classify.export.convert import attach_contract
    from edge_classify.runtime.model.contract import LabelSet, ModelContract, ModelInfo, PreprocessSpec

    if precision == "int8":
        fp32 = make_conv(path.with_name(path.stem + ".fp32.onnx"), "fp32", classes=classes, seed=seed, size=size)
        return _quantized(fp32, path, calibration, activations)
    rng = np.random.default_rng(seed)
    dtype = np.float16 if precision == "fp16" else np.float32
    weights = {
        "w1": rng.normal(0, 0.02, (8, 3, 3, 3)), "b1": rng.normal(0, 0.5, (8,)),
        "w2": rng.normal(0, 0.15, (16, 8, 3, 3)), "b2": rng.normal(0, 0.5, (16,)),
        "w3": rng.normal(0, 0.5, (16, classes)), "b3": rng.normal(0, 0.5, (classes,)),
    }
    nodes = [helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2])]
    x = "nchw"
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", [x], ["nchw16"], to=TensorProto.FLOAT16))
        x = "nchw16"
    nodes += [
        helper.make_node("Conv", [x, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["feat"]),
        helper.make_node("Gemm", ["feat", "w3", "b3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs" if precision == "fp16" else "probabilities"], axis=1),
    ]
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", ["probs"], ["probabilities"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes, "tiny_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(v.astype(dtype), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    labels = LabelSet(tuple(f"class_{i}" for i in range(classes)), (None,) * classes, "tiny")
    info = ModelInfo("tiny_conv", precision, "input", "probabilities", "probabilities", classes, None)
    contract = ModelContract(PreprocessSpec.keras("caffe", (size, size)), labels, info, {"weights": {"origin": "file"}})
    attach_contract(model, contract)
    onnx.save(model, str(path))
    return path


def _quantized(fp32: Path, path: Path, calibration: list | None, activations: str) -> Path:
    """``fp32`` quantized to INT8 the way ``export-model`` does it, with the contract's
    quantization record (activations, bias storage) that the runtime's TensorRT policy reads."""
    import dataclasses

    import onnx

    from edge_classify.export import quantize
    from edge_classify.export.convert import attach_contract
    from edge_classify.runtime.model.contract import ModelContract

    assert calibration, "INT8 needs calibration images"
    src = onnx.load(str(fp32))
    contract = ModelContract.from_metadata({p.key: p.value for p in src.metadata_props}, str(fp32))
    q = onnx.load_from_string(quantize.onnx_to_int8(src.SerializeToString(), list(calibration),
                                                    contract.preprocess, activations=activations))
    parity = {"quantization": {"format": "QDQ", "activations": activations, "bias": quantize.bias_kind(activations)}}
    attach_contract(q, dataclasses.replace(contract, model=dataclasses.replace(contract.model, precision="int8"),
                                           parity=parity))
    onnx.save(q, str(path))
    return path
