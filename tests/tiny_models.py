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
         parity: dict | None = None) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge_classify.export.convert import attach_contract
    from edge_classify.runtime.contract import LabelSet, ModelContract, ModelInfo, PreprocessSpec

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
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", h, wd, 3])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    n_labels = classes if labels is None else labels
    label_set = LabelSet(tuple(f"class_{i}" for i in range(n_labels)), (None,) * n_labels, "tiny")
    info = ModelInfo("tiny", "fp32", contract_input_name or input_name, output_name, "probabilities", n_labels, None)
    contract = ModelContract(PreprocessSpec.keras("caffe", contract_input_size), label_set, info,
                             {"weights": {"origin": "file"}}, parity)
    attach_contract(model, contract)
    onnx.save(model, str(path))
    return path
