"""BF16 at export (issue 9): a named candidate, its fidelity measured against FP32, gated and
recorded in the FP32 model's contract (``parity["bf16"]``), never a silent substitute.

What BF16 does depends on the CPU (tests/cpu_kinds.py): an AVX2 CPU computes f32 when told
bf16, an AVX-512 CPU without native BF16 emulates it, AMX / AVX512-BF16 computes it. Most
tests inject one kind (``cpu_kinds.inject``) and assert what follows from that kind's facts;
the tests that run this machine's own OpenVINO derive their expectations from what the
engine reports (``runner.precision``), so they hold on every kind.

The exports here use a tiny Keras model in place of ResNet50 (``keras_model.build`` is
patched: ~5 s an export instead of ~45 s); the pipeline, ONNX conversion, Keras parity,
INT8, OpenVINO and the contract are the real ones. One test measures BF16 on the session's
exported ResNet50 stand-in (``exported`` fixture, shared with test_int8.py) without
exporting again. No test asserts wall-clock time: latency is patched where a test needs a
particular winner.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cpu_kinds
from edge_classify.export import cli as export_cli
from edge_classify.export import keras_model, verify
from edge_classify.export import precision as prec
from edge_classify.runtime import Classifier, EngineOptions, MachineFacts
from edge_classify.runtime.engines.runners import BF16_EMULATED
from edge_classify.runtime.errors import EdgeClassifyError

pytest.importorskip("openvino")

FIGURE_KEYS = {"top1_agreement", "top5_overlap", "max_abs_diff", "images", "bar", "passed", "engine", "openvino",
               "cpu"}
LABEL = "bf16 (runs the FP32 file with OpenVINO in BF16)"


def _tiny_keras(arch, weights):
    """A small input-sensitive Keras classifier with ResNet50's interface (224x224x3 -> 1000)."""
    keras_model.import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(8, 8, strides=8, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(1000, activation="softmax")(x))


@pytest.fixture
def tiny_build(monkeypatch):
    monkeypatch.setattr(keras_model, "build", _tiny_keras)


def export(tmp_path, capsys, *args) -> tuple[Path, str]:
    out = tmp_path / "m.onnx"
    rc = export_cli.main(["--weights", "random", "-o", str(out), *args])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return out, cap.out


def figure(path) -> dict | None:
    return (Classifier(path, EngineOptions(providers="cpu")).contract.parity or {}).get("bf16")


def on_openvino(path, hw: bool = True) -> Classifier:
    """The runtime's automatic precision for this model on OpenVINO, with a BF16 CPU injected."""
    return Classifier(path, EngineOptions(engine="openvino"), facts=MachineFacts(native_bf16=hw))


# --- an AVX2 CPU: OpenVINO computes f32 when told bf16, nothing recorded, and it says why ---
def test_no_bf16_cpu_records_nothing_and_says_why(tiny_build, monkeypatch, tmp_path, capsys):
    cpu_kinds.inject(monkeypatch, "avx2")
    out, stdout = export(tmp_path, capsys, "--bf16")
    lines = [ln for ln in stdout.splitlines() if "BF16 not measured" in ln]
    assert len(lines) == 1 and "no native BF16" in lines[0] and "runs it in FP32" in lines[0], stdout
    assert "OpenVINO computes fp32 here when told bf16" in lines[0]
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # never a BF16 file
    assert figure(out) is None
    clf = on_openvino(out)  # even a BF16 CPU would not run BF16 for this model
    assert clf.runner.precision == "fp32" and "no BF16 fidelity figure" in clf.report.precision_reason


# --- an AVX-512 CPU without native BF16: emulated, measured, recorded as such, never run ----
def test_emulating_cpu_records_an_emulated_figure_that_never_counts(tiny_build, monkeypatch, tmp_path, capsys,
                                                                    calib_dir):
    cpu_kinds.inject(monkeypatch, "avx512")
    out, stdout = export(tmp_path, capsys, "--bf16", "--calib", str(calib_dir))
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    f = figure(out)
    assert f["openvino_precision"] == BF16_EMULATED and f["passed"] is False and "emulated" in f["not_bf16"]
    e = f["emulated"]  # what emulation costs here, measured against OpenVINO's own f32
    assert e["engine"] == "openvino" and e["p50_ms_batch1"] > 0 and e["fp32_p50_ms_batch1"] > 0
    assert "bf16 emulated by OpenVINO on this CPU" in stdout and "recorded as emulated, never run" in stdout
    assert f"{e['p50_ms_batch1'] / e['fp32_p50_ms_batch1']:.2f}x" in stdout
    assert "BF16 not measured" not in stdout
    clf = Classifier(out, EngineOptions(engine="openvino"))  # this CPU: no native BF16, so never BF16
    assert clf.runner.precision == "fp32" and "BF16 not applicable" in clf.report.precision_reason
    with pytest.raises(EdgeClassifyError, match="no native BF16"):  # and not when asked for either
        Classifier(out, EngineOptions(engine="openvino", precision="bf16"))
    cpu_kinds.inject(monkeypatch, "amx")  # the same file on a CPU with native BF16: not evidence there
    clf = Classifier(out, EngineOptions(engine="openvino"))
    assert clf.runner.precision == "fp32" and "emulates bf16" in clf.report.precision_reason


def test_auto_on_an_emulating_cpu_never_picks_bf16(tiny_build, monkeypatch, tmp_path, capsys, calib_dir):
    cpu_kinds.inject(monkeypatch, "avx512")
    _latency(monkeypatch, {"fp32": 40.0, "fp16": 41.0, "int8": 42.0, "bf16": 1.0})  # were it a candidate, it would win
    out, stdout = export(tmp_path, capsys, *AUTO, "--bf16", "--calib", str(calib_dir))
    c = Classifier(out, EngineOptions(providers="cpu")).contract
    sel = c.provenance["selection"]
    assert set(sel["candidates"]) == {"fp32", "fp16", "int8"} and sel["chosen"] == "fp32"
    why = sel["not_candidates"]["bf16"]
    assert "no native BF16" in why and "OpenVINO emulates bf16 here" in why and "ms in f32" in why
    assert c.parity["bf16"]["openvino_precision"] == BF16_EMULATED and "recorded as emulated, never run" in stdout
    assert f"BF16 not a --precision auto candidate: {why}" in stdout


def test_bf16_support_reasons(monkeypatch):
    both = ("onnxruntime", "openvino")
    assert prec.bf16_support(MachineFacts(engines=both, native_bf16=True)) == (True, "")
    ok, why = prec.bf16_support(MachineFacts(engines=both, native_bf16=False))
    assert not ok and "no native BF16" in why
    ok, why = prec.bf16_support(MachineFacts(engines=("onnxruntime",), native_bf16=True))
    assert not ok and "OpenVINO is not installed" in why
    from edge_classify.runtime.host.facts import openvino_native_bf16

    assert prec.bf16_support()[0] == openvino_native_bf16()  # undisturbed: the CPU's own answer


# --- BF16 CPU (injected): the figure is written, consistent, and used by the runtime -----
def test_bf16_figure_written_and_used_by_runtime(tiny_build, monkeypatch, tmp_path, capsys, calib_dir):
    import openvino

    cpu_kinds.inject(monkeypatch, "amx")
    out, stdout = export(tmp_path, capsys, "--bf16", "--calib", str(calib_dir))
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # BF16 runs the FP32 file: no file of its own
    c = Classifier(out, EngineOptions(providers="cpu")).contract
    assert c.model.precision == "fp32"
    f = c.parity["bf16"]
    assert FIGURE_KEYS <= set(f)
    assert f["engine"] == "openvino" and openvino.__version__.startswith(f["openvino"]) and f["cpu"]
    assert f["bar"] == 0.99 and f["passed"] == (f["top1_agreement"] >= 0.99)
    # The images are the verification photos plus the held-out calibration photos.
    samples = verify.sample_images()
    heldout = [calib_dir / n for n in f["image_files"][len(samples):]]
    assert f["image_files"][:len(samples)] == [p.name for p in samples] and len(heldout) >= 2
    assert f["images"] == len(samples) + len(heldout) and all(p.is_file() for p in heldout)
    # The stored numbers are what running both on those photos gives.
    paths = samples + heldout
    ref = Classifier(out, EngineOptions(providers="cpu")).predict(paths)
    again = prec.bf16_fidelity(ref, prec.bf16_classifier(out.read_bytes()).predict(paths))
    for k in ("top1_agreement", "top5_overlap", "max_abs_diff"):
        assert again[k] == pytest.approx(f[k], abs=1e-6), k
    assert f["openvino_precision"] == "bf16" and "not_bf16" not in f
    assert LABEL in stdout and ("passed" if f["passed"] else "FAILED") in stdout

    clf = on_openvino(out)
    if f["passed"]:
        assert "agreement" in clf.report.precision_reason and ">=" in clf.report.precision_reason
        assert f"{f['top1_agreement']:.3f}" in clf.report.precision_reason
    assert on_openvino(out, hw=False).runner.precision == "fp32"  # no BF16 CPU: never BF16


def test_model_without_figure_stays_fp32(tmp_path):
    from tiny_models import make

    clf = on_openvino(make(tmp_path / "plain.onnx"))
    assert clf.runner.precision == "fp32" and "no BF16 fidelity figure" in clf.report.precision_reason


# --- a failing figure: recorded, passed False, and the runtime keeps FP32 -----------------
def _agreement(monkeypatch, value: float) -> None:
    real = prec.bf16_fidelity
    monkeypatch.setattr(prec, "bf16_fidelity", lambda ref, cand: {**real(ref, cand), "top1_agreement": value})


def test_failing_figure_is_recorded_and_not_used(tiny_build, monkeypatch, tmp_path, capsys):
    cpu_kinds.inject(monkeypatch, "amx")
    _agreement(monkeypatch, 0.98)
    # A lax --min-agreement never takes BF16's bar below the runtime's floor (0.99).
    out, stdout = export(tmp_path, capsys, "--bf16", "--min-agreement", "0.5")
    f = figure(out)
    assert f["top1_agreement"] == 0.98 and f["bar"] == 0.99 and f["passed"] is False
    assert "FAILED" in stdout and "keeps FP32" in stdout
    clf = on_openvino(out)
    assert clf.runner.precision == "fp32" and "below" in clf.report.precision_reason


# --- --precision auto: BF16 is a candidate where it can be measured ------------------------
def _latency(monkeypatch, ms: dict) -> None:
    monkeypatch.setattr(prec, "latency_p50_ms", lambda classifiers: {p: ms[p] for p in classifiers})


AUTO = ("--precision", "auto", "--min-agreement", "0.5")  # the tiny model's INT8 must not decide


def test_auto_chooses_bf16_and_writes_the_fp32_file(tiny_build, monkeypatch, tmp_path, capsys, calib_dir):
    cpu_kinds.inject(monkeypatch, "amx")
    # Real bf16 (this machine's own arithmetic, whatever kind is injected) may flip the tiny
    # model's near-flat outputs: a passing agreement is injected, as the speed is.
    _agreement(monkeypatch, 1.0)
    _latency(monkeypatch, {"fp32": 40.0, "fp16": 41.0, "int8": 30.0, "bf16": 10.0})
    out, stdout = export(tmp_path, capsys, *AUTO, "--calib", str(calib_dir))
    c = Classifier(out, EngineOptions(providers="cpu")).contract
    sel, f = c.provenance["selection"], c.parity["bf16"]
    assert set(sel["candidates"]) == {"fp32", "fp16", "int8", "bf16"}
    assert sel["candidates"]["bf16"]["fidelity"]["top1_agreement"] == f["top1_agreement"] == 1.0
    assert f["passed"]
    assert sel["chosen"] == "bf16" and c.model.precision == "fp32"  # the FP32 file, with its passing figure
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert f"{LABEL} is the fastest" in sel["reason"] and LABEL in stdout
    assert "agreement" in on_openvino(out).report.precision_reason


def test_auto_lists_a_rejected_bf16_with_its_numbers(tiny_build, monkeypatch, tmp_path, capsys, calib_dir):
    cpu_kinds.inject(monkeypatch, "amx")
    _agreement(monkeypatch, 0.98)
    _latency(monkeypatch, {"fp32": 40.0, "fp16": 41.0, "int8": 42.0, "bf16": 10.0})
    out, stdout = export(tmp_path, capsys, *AUTO, "--calib", str(calib_dir))
    c = Classifier(out, EngineOptions(providers="cpu")).contract
    sel = c.provenance["selection"]
    assert sel["chosen"] == "fp32" == c.model.precision
    bf = sel["candidates"]["bf16"]
    assert bf["p50_ms_batch1"] == 10.0 and bf["top1_agreement"] == 0.98 and "runs" in bf
    assert "bf16 (agreement 0.980 < 0.99)" in sel["reason"] and "candidates:" in stdout and LABEL in stdout
    assert on_openvino(out).runner.precision == "fp32"  # the failing figure is kept, and refuses BF16


@pytest.mark.parametrize("kind", ["avx2", "avx512"])
def test_auto_without_bf16_cpu_says_bf16_was_no_candidate(kind, tiny_build, monkeypatch, tmp_path, capsys,
                                                          calib_dir):
    cpu_kinds.inject(monkeypatch, kind)
    out, stdout = export(tmp_path, capsys, *AUTO, "--calib", str(calib_dir))
    sel = Classifier(out, EngineOptions(providers="cpu")).contract.provenance["selection"]
    assert set(sel["candidates"]) == {"fp32", "fp16", "int8"}
    assert "no native BF16" in sel["not_candidates"]["bf16"]
    assert "BF16 not a --precision auto candidate" in stdout
    assert figure(out) is None


# --- pieces ---------------------------------------------------------------------------------
def test_choose_holds_bf16_to_the_runtime_floor():
    lat = {"fp32": 40.0, "bf16": 10.0}
    chosen, reason = prec.choose({"fp32": 1.0, "bf16": 0.98}, lat, 0.5, {"bf16": 0.99})
    assert chosen == "fp32" and "bf16 (agreement 0.980 < 0.99)" in reason
    chosen, reason = prec.choose({"fp32": 1.0, "bf16": 0.995}, lat, 0.5, {"bf16": 0.99})
    assert chosen == "bf16" and reason.startswith(LABEL)


def test_latency_and_bf16_measure_on_onnx_stand_in(tmp_path, photos):
    """The BF16 classifier runs beside ONNX Runtime in the latency loop; the figure has its keys."""
    from tiny_models import make

    data = make(tmp_path / "t.onnx").read_bytes()
    fp32, bf16 = Classifier(data, EngineOptions(providers="cpu")), prec.bf16_classifier(data)
    assert bf16.runner.engine == "openvino" and bf16.report.precision_reason == "--precision bf16"
    ms = prec.latency_p50_ms({"fp32": fp32, "bf16": bf16}, iterations=3)
    assert set(ms) == {"fp32", "bf16"} and all(v > 0 for v in ms.values())
    f = prec.measure_bf16(bf16, photos[:6], fp32.predict(photos[:6]), 0.5)
    assert FIGURE_KEYS <= set(f) and f["images"] == 6 and f["bar"] == 0.99


def test_alternate_rotates_the_starting_call():
    order = []
    samples = prec.alternate({n: (lambda n=n: order.append(n)) for n in "abc"}, 3, warmup=1, gap_s=0)
    assert {n: len(v) for n, v in samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert order == list("abc") + list("abc") + list("bca") + list("cab")


def test_export_does_not_import_benchmarks():
    import edge_classify.export as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any("benchmarks" in n for n in names), f"{path.name} imports {names}"
    code = ("import sys, edge_classify.export.precision, edge_classify.export.pipeline, edge_classify.export.cli; "
            "print([m for m in sys.modules if m.startswith('edge_classify.benchmarks')])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# --- the real network: BF16 measured on the exported ResNet50 stand-in (no new export) ------
def test_bf16_figure_on_resnet50_standin(exported, calib_dir):
    data = Path(exported["fp32"]).read_bytes()
    photos = sorted(calib_dir.iterdir())[:6]
    ref = Classifier(data, EngineOptions(providers="cpu")).predict(photos)
    clf = prec.bf16_classifier(data)
    f = prec.measure_bf16(clf, photos, ref, prec.DEFAULT_AGREEMENT_BAR)
    ran = clf.runner.precision  # what OpenVINO computed when told bf16, on this CPU
    assert FIGURE_KEYS <= set(f) and f["images"] == 6 and f["openvino_precision"] == ran
    # A figure passes only if OpenVINO really computed native bf16 (and agreed well enough).
    assert f["passed"] == (f["top1_agreement"] >= 0.99 and ran == "bf16")
    if ran == "fp32":  # OpenVINO ignored the hint (an AVX2 CPU): its f32 matches ONNX Runtime's
        assert f["top1_agreement"] == 1.0 and f["max_abs_diff"] < 1e-3 and "not a BF16 measurement" in f["not_bf16"]
    elif ran == BF16_EMULATED:  # AVX-512 without native BF16
        assert not f["passed"] and "not evidence" in f["not_bf16"]
    else:  # native: a real BF16 measurement
        assert ran == "bf16" and "not_bf16" not in f
    # bf16 arithmetic (8-bit mantissa) moves the probabilities; f32 does not
    assert (f["max_abs_diff"] > 1e-4) == (ran != "fp32"), (ran, f["max_abs_diff"])
