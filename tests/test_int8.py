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
