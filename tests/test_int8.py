"""INT8: calibration on real photos, fidelity report, agreement gate, precision auto."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edge_classify.export import cli as export_cli
from edge_classify.export import keras_model, quantize
from edge_classify.runtime import Classifier, EngineOptions

FIDELITY_FIELDS = ("images", "top1_agreement", "top5_overlap", "max_abs_diff", "mean_abs_diff")


def test_calibration_split_is_seeded_capped_and_disjoint(calib_dir):
    a, b = quantize.split(str(calib_dir), max_images=15), quantize.split(str(calib_dir), max_images=15)
    assert a == b  # seeded sampling: the same images every time
    assert len(a.calibrate) + len(a.holdout) == 15 and a.found == len(list(calib_dir.iterdir()))
    assert not set(a.calibrate) & set(a.holdout)
    glob_split = quantize.split(str(calib_dir / "*.png"), max_images=100)
    assert all(p.suffix == ".png" for p in glob_split.calibrate + glob_split.holdout)


def test_too_few_calibration_images(tmp_path, photos):
    import shutil

    for p in photos[:3]:
        shutil.copy(p, tmp_path / p.name)
    with pytest.raises(Exception, match="need at least"):
        quantize.split(str(tmp_path))


def test_int8_export_is_qdq_and_smaller(exported):
    import onnx

    m = onnx.load(str(exported["int8"]))
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "QLinearConv" not in ops  # QDQ, TensorRT-readable
    int8_weights = [t for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) >= 50  # every ResNet50 convolution's weights
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O kept
    assert exported["int8"].stat().st_size < 0.35 * exported["fp32"].stat().st_size


def test_int8_fidelity_report_is_stored_and_consistent(exported, calib_dir):
    """The stored figures are what running both models on the held-out images gives."""
    c = Classifier(exported["int8"], EngineOptions(providers="cpu")).contract
    assert c.model.precision == "int8"
    f = c.parity
    assert all(k in f for k in FIDELITY_FIELDS)
    q = f["quantization"]
    assert q["format"] == "QDQ" and q["method"] == "minmax" and q["activations"] in ("s8", "u8")
    # ResNet50 comes with its BatchNorms folded by tf2onnx; its head (Dense bias, softmax) stays float
    assert q["batchnorm_folded"] == 0 and q["float_ops"] == ["Add", "Softmax"]
    heldout = [calib_dir / name for name in q["heldout_images"]]
    assert len(heldout) == f["images"] >= 2 and q["calibration_images"] >= 8
    ref = Classifier(exported["fp32"], EngineOptions(providers="cpu")).predict(heldout)
    got = Classifier(exported["int8"], EngineOptions(providers="cpu")).predict(heldout)
    again = quantize.fidelity(ref, got)
    for k in FIDELITY_FIELDS:
        assert again[k] == pytest.approx(f[k], abs=1e-6), k
    assert 0.0 <= f["top1_agreement"] <= 1.0 and 0.0 <= f["top5_overlap"] <= 1.0
    assert 0 < f["mean_abs_diff"] <= f["max_abs_diff"] <= 1.0
    # INT8 really is a different model: it must not be bit-identical to FP32.
    assert not np.array_equal(ref, got)


def test_int8_fidelity_on_openvino_is_measured_and_gates_auto(exported, calib_dir):
    """Engines quantize differently: the export measures OpenVINO's own INT8 agreement, and
    the runtime's auto runs the file on OpenVINO only if that figure holds up."""
    from edge_classify.runtime.engines import policy

    f = Classifier(exported["int8"], EngineOptions(providers="cpu")).contract.parity
    assert f["engine"] == "onnxruntime" and set(f["engines"]) == {"openvino"}
    heldout = [calib_dir / name for name in f["quantization"]["heldout_images"]]
    ref = Classifier(exported["fp32"], EngineOptions(providers="cpu")).predict(heldout)
    again = quantize.fidelity(ref, Classifier(exported["int8"], EngineOptions(engine="openvino")).predict(heldout))
    for k in FIDELITY_FIELDS:
        assert again[k] == pytest.approx(f["engines"]["openvino"][k], abs=1e-6), k
    why = policy.unverified("openvino", "int8", f)
    ok = f["engines"]["openvino"]["top1_agreement"] >= f["top1_agreement"] - 0.01
    assert (why is None) == ok


@pytest.fixture
def standin_build(standin, monkeypatch):
    """Export the session's stand-in model without rebuilding it (saves ~25 s per export)."""
    model, _ = standin
    monkeypatch.setattr(keras_model, "build", lambda arch, weights: model)


def test_min_agreement_failure_writes_nothing(standin_build, exported, calib_dir, tmp_path, capsys):
    stored = Classifier(exported["int8"], EngineOptions(providers="cpu")).contract.parity["top1_agreement"]
    assert stored < 1.0, "stand-in INT8 agrees perfectly; this check needs a disagreement to gate on"
    out = tmp_path / "m.onnx"
    rc = export_cli.main(["--weights", "random", "-o", str(out), "--int8", "--calib", str(calib_dir),
                          "--min-agreement", "1.0"])
    err = capsys.readouterr().err
    assert rc == 4 and "below --min-agreement 1.0" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def native_bf16() -> bool:
    if importlib.util.find_spec("openvino") is None:
        return False
    from edge_classify.runtime.host.facts import openvino_native_bf16

    return openvino_native_bf16()


def test_precision_auto_picks_and_records_why(standin_build, calib_dir, tmp_path, capsys):
    out = tmp_path / "auto.onnx"
    rc = export_cli.main(["--weights", "random", "-o", str(out), "--precision", "auto", "--calib", str(calib_dir),
                          "--min-agreement", "0.75"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert [p.name for p in tmp_path.iterdir()] == ["auto.onnx"]  # only the chosen model is written
    c = Classifier(out, EngineOptions(providers="cpu")).contract
    sel = c.provenance["selection"]
    # BF16 is a candidate where OpenVINO says this CPU computes it natively (AMX / AVX512-BF16)
    assert set(sel["candidates"]) == {"fp32", "fp16", "int8"} | ({"bf16"} if native_bf16() else set())
    assert c.model.precision == ("fp32" if sel["chosen"] == "bf16" else sel["chosen"])  # BF16 runs the FP32 file
    assert sel["agreement_bar"] == 0.75
    bars = {"bf16": 0.99}  # BF16's floor: never below the runtime's
    passing = {p: v for p, v in sel["candidates"].items() if v["top1_agreement"] >= bars.get(p, 0.75)}
    assert sel["chosen"] == min(passing, key=lambda p: passing[p]["p50_ms_batch1"])
    for p, v in sel["candidates"].items():
        assert v["p50_ms_batch1"] > 0
        if p not in passing:
            assert f"{p} (agreement" in sel["reason"]
    assert sel["chosen"] in sel["reason"] and "precision auto:" in captured.out


# --- the quantizer's preparation (quantize.prepare): BatchNorm folded, the head in float -----

def _bn_graph():
    """input -> depthwise Conv (no bias) -> Mul -> Add (BatchNorm as tf2onnx leaves it after
    DepthwiseConv2D) -> Relu -> GlobalAveragePool -> Flatten -> MatMul -> Add -> Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = 4
    inits = [numpy_helper.from_array(rng.normal(0, 1, (c, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.uniform(0.5, 2, (1, c, 1, 1)).astype(np.float32), "s"),
             numpy_helper.from_array(rng.normal(0, 1, (1, c, 1, 1)).astype(np.float32), "t"),
             numpy_helper.from_array(rng.normal(0, 1, (c, 3)).astype(np.float32), "dense"),
             numpy_helper.from_array(rng.normal(0, 1, (3,)).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], group=c, pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["c", "s"], ["m"]), helper.make_node("Add", ["m", "t"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("MatMul", ["f", "dense"], ["l"]),
             helper.make_node("Add", ["l", "b"], ["z"]), helper.make_node("Softmax", ["z"], ["probabilities"])]
    g = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, c, 8, 8])],
                          [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _run(model, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # ORT would fold it too
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_prepare_folds_batchnorm_and_keeps_the_head_float():
    m = _bn_graph()
    x = np.random.default_rng(1).normal(0, 1, (2, 4, 8, 8)).astype(np.float32)
    before = _run(m, x)
    got = quantize.prepare(m)
    assert got["batchnorm_folded"] == 1 and [n.op_type for n in m.graph.node][:2] == ["Conv", "Relu"]
    np.testing.assert_allclose(_run(m, x), before, atol=1e-6)  # a fold, not an exact rewrite: float rounding
    assert got["float_ops"] == ["Add", "Softmax"]  # after the last MatMul: the logits stay float
    names = {n.name: n.op_type for n in m.graph.node}
    assert all(names) and [names[n] for n in got["exclude"]] == ["Add", "Softmax"]
    # A Mul whose result has other users is not BatchNorm-shaped: left alone.
    m2 = _bn_graph()
    from onnx import helper

    m2.graph.node.append(helper.make_node("Identity", ["m"], ["m_copy"]))
    assert quantize.fold_batchnorm(m2) == 0
    # Nor is a (C,) scale, which broadcasts along the width, not the channels.
    m3 = _bn_graph()
    from onnx import numpy_helper

    s = next(i for i in m3.graph.initializer if i.name == "s")
    s.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(s).reshape(4), "s"))
    assert quantize.fold_batchnorm(m3) == 0


@pytest.fixture(scope="module")
def trained_mobilenet(trained_workdir, tmp_path_factory):
    """tests/trained_models.py's MobileNetV2 (digits, Rescaling inside), exported to FP32 ONNX."""
    import trained_models as tm
    from edge_classify.export.pipeline import export_model
    from edge_classify.export.request import ExportRequest

    built = tm.BUILDERS["mobilenetv2_rescaling"](trained_workdir)
    out = tmp_path_factory.mktemp("mnv2") / "m.onnx"
    export_model(ExportRequest(out, keras_model=built.path, labels_from_dir=built.data_dir, resize="bilinear",
                               verify_images=built.heldout[::20]))
    train = sorted(built.data_dir.glob("*/*.*"))
    return out, train[::12], built.heldout  # 100 calibration images, 200 held out


def _quantized(fp32: bytes, calib, spec, activations: str, prepared: bool) -> bytes:
    from edge_classify.export import graph_passes
    from edge_classify.export.pipeline import onnx_load

    source = onnx_load(fp32)
    graph_passes.optimize(source, graph_passes.INT8_EXTRA)
    exclude = quantize.prepare(source)["exclude"] if prepared else []
    return quantize.onnx_to_int8(source.SerializeToString(), calib, spec, "input", "minmax", activations,
                                 exclude=exclude)


@pytest.mark.parametrize("activations", ["s8", "u8"])
def test_prepared_int8_is_at_least_as_faithful_on_a_trained_model(trained_mobilenet, activations):
    """BatchNorm folded and a float head (quantize.prepare) against the plain quantization,
    on both engines: mean |dp| no higher, top-1 agreement no lower (200 held-out digits)."""
    path, calib, heldout = trained_mobilenet
    fp32 = path.read_bytes()
    ref_clf = Classifier(fp32, EngineOptions(engine="onnxruntime", providers="cpu"))
    spec = ref_clf.contract.preprocess
    from edge_classify.runtime.images.preprocess import preprocess

    x = preprocess(heldout, spec)
    ref = ref_clf.run(x)
    engines = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    figures = {}
    for prepared in (False, True):
        q = _quantized(fp32, calib, spec, activations, prepared)
        for engine in engines:
            figures[prepared, engine] = quantize.fidelity(ref, Classifier(q, EngineOptions(engine=engine,
                                                                                           providers="cpu")).run(x))
    for engine in engines:
        old, new = figures[False, engine], figures[True, engine]
        assert old["mean_abs_diff"] > 0, "INT8 matches FP32 exactly: nothing to compare"
        assert new["mean_abs_diff"] <= old["mean_abs_diff"], (engine, old, new)
        assert new["top1_agreement"] >= old["top1_agreement"], (engine, old, new)


def test_prepared_s8_int8_stays_tensorrt_shaped(trained_mobilenet):
    """What TensorRT's ONNX parser needs of the prepared s8 file: QDQ (no QLinear* ops), int8
    activations with zero point 0 (symmetric), no DequantizeLinear on int32 (biases float,
    including the ones the BatchNorm fold adds), float32 input and output."""
    import onnx
    from onnx import numpy_helper

    path, calib, _ = trained_mobilenet
    spec = Classifier(path, EngineOptions(providers="cpu")).contract.preprocess
    m = onnx.load_from_string(_quantized(path.read_bytes(), calib[:16], spec, "s8", True))
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    ops = [n.op_type for n in g.node]
    assert "QuantizeLinear" in ops and not any(op.startswith("QLinear") or op.endswith("Integer") for op in ops)
    for n in g.node:
        if n.op_type == "QuantizeLinear":
            zero = inits[n.input[2]]
            assert zero.dtype == np.int8 and not zero.any(), n.name
        if n.op_type == "DequantizeLinear":
            assert inits.get(n.input[0], np.zeros(1, np.int8)).dtype != np.int32, n.name
    convs = [n for n in g.node if n.op_type == "Conv"]
    assert all(len(c.input) == 3 and inits[c.input[2]].dtype == np.float32 for c in convs)
    after_conv = {n.op_type for n in g.node for c in convs if c.output[0] in n.input}
    assert after_conv == {"QuantizeLinear"}  # BatchNorm folded: no float Mul/Add between a Conv and its Q
    assert g.input[0].type.tensor_type.elem_type == g.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_edge_bench_int8_column_comes_from_the_trained_model():
    """edge-bench times a ResNet50 with random weights; its INT8 rows' fidelity column is the
    trained classifier's figure (benchmarks/int8_fidelity.py) for the same quantizer and engine."""
    from edge_classify.benchmarks import lineup, report

    def fig(top1):
        return {"top1_agreement": top1, "mean_abs_diff": 0.001, "max_abs_diff": 0.1, "accuracy": 0.9}

    f8 = {"activations": "u8", "model": {"arch": "MobileNetV2", "classes": {"a": "a.png", "b": "b.png"},
                                          "fp32_heldout_accuracy": 0.95},
          "calibration_images": 120, "heldout_images": 140, "reference": "FP32",
          "quantizers": {"ours u8": "u8", "ours s8": "s8", "nncf IR": "peer"},
          "fidelity": {"ours u8": {"onnxruntime": fig(0.99), "openvino": fig(0.98)},
                       "ours s8": {"onnxruntime": fig(0.5), "openvino": fig(0.5)},
                       "nncf IR": {"openvino": fig(0.97)}}}
    int8_ort = {"kind": "edge", "engine": "onnxruntime", "info": {"file_precision": "int8"}}
    fp32_ov = {"kind": "edge", "engine": "openvino", "info": {"file_precision": "fp32"}}
    cell = report._int8_cell
    assert cell(lineup.edge_name("onnxruntime", "int8"), int8_ort, f8).startswith("0.990")  # u8: this run's file
    assert cell(lineup.OV_OUR_INT8, {"kind": "peer-extra"}, f8).startswith("0.980")
    assert cell(lineup.OV_NNCF, {"kind": "peer"}, f8).startswith("0.970")
    assert cell(lineup.edge_name("openvino", "fp32"), fp32_ov, f8) == ""
    assert "| nncf IR | openvino | 0.970 |" in report._int8_fidelity_md(f8)
    assert "Not measured: no INT8 rows" in report._int8_fidelity_md({"skipped": "no INT8 rows in this run"})
    assert cell(lineup.OV_NNCF, {"kind": "peer"}, {"skipped": "x"}) == ""
