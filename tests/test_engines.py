"""The runner seam and the engine policy: which engine runs, in which precision, and
whether the OpenVINO runner computes what the ONNX Runtime runner computes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import cpu_kinds
import tiny_models
from edge_classify.runtime import Classifier, EngineOptions, MachineFacts
from edge_classify.runtime.engines import policy
from edge_classify.runtime.engines.runners import BF16_EMULATED
from edge_classify.runtime.errors import EdgeClassifyError
from edge_classify.runtime.model import onnx_meta

BOTH = ["onnxruntime", "openvino"]
PASSING_BF16 = {"bf16": {"top1_agreement": 1.0, "bar": 0.99, "images": 8, "passed": True}}

# Tolerances between the two engines on the same file, max |probability difference| over
# the test photos (stand-in ResNet50). Measured here (2-core AMD EPYC, onnxruntime 1.32,
# openvino 2026.4): FP32 3e-7; FP16 file 3.1e-3 (ONNX Runtime keeps parts of the FP16 graph
# in half precision, OpenVINO computes it in f32 here; export's FP16 gate is 5e-2). INT8
# kernels differ between engines (requantization rounding), so INT8 is held to the same
# top-1 on every photo and a looser probability bound. BF16 (8-bit mantissa) runs only on
# CPUs with native BF16: on a Xeon Sapphire Rapids (AMX, openvino 2026.4.1) it moved the
# stand-in's probabilities by up to 0.087 over the 21 photos and flipped the top-1 of one,
# whose FP32 top-2 gap was 0.012 (0.061 over 6 photos, emulated, on an AVX-512 Xeon).
TOL = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.1, "bf16": 0.15}
BF16_NEAR_TIE = 0.05  # an FP32 top-2 gap BF16 may close (the flipped photo's: 0.012)


@pytest.fixture
def tiny(tmp_path):
    return tiny_models.make(tmp_path / "tiny.onnx")


# --- policy: pure functions over injected facts ---------------------------------------
def test_unknown_engine_is_a_usage_error():
    with pytest.raises(EdgeClassifyError) as e:
        policy.check_requested("tensorflow", BOTH, "auto")
    assert e.value.exit_code == 2 and "onnxruntime" in e.value.hint


def test_naming_an_engine_that_is_not_installed_lists_what_is(tiny):
    with pytest.raises(EdgeClassifyError) as e:
        Classifier(tiny, EngineOptions(engine="openvino"), facts=MachineFacts(engines=["onnxruntime"]))
    assert e.value.exit_code == 3
    assert "not installed" in e.value.message and "installed: onnxruntime" in e.value.hint
    assert "pip install -e '.[openvino]'" in e.value.hint


def test_an_onnxruntime_provider_with_the_openvino_engine_is_refused():
    with pytest.raises(EdgeClassifyError) as e:
        policy.check_requested("openvino", BOTH, "cuda")
    assert e.value.exit_code == 2


@pytest.mark.parametrize("requested,available,provider,ort_providers,want", [
    ("openvino", BOTH, "auto", ["CPUExecutionProvider"], "openvino"),
    ("onnxruntime", BOTH, "auto", ["CPUExecutionProvider"], "onnxruntime"),
    ("auto", BOTH, "cpu", ["CPUExecutionProvider"], "onnxruntime"),  # a provider is ONNX Runtime's
    ("auto", BOTH, "auto", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
     "onnxruntime"),  # a GPU: ONNX Runtime
    ("auto", BOTH, "auto", ["CUDAExecutionProvider", "CPUExecutionProvider"], "onnxruntime"),
    ("auto", ["openvino"], "auto", [], "openvino"),
    ("auto", ["onnxruntime"], "auto", ["CPUExecutionProvider"], "onnxruntime"),
    ("auto", BOTH, "auto", ["CPUExecutionProvider"], None),  # measured
    ("auto", BOTH, "auto", ["OpenVINOExecutionProvider", "CPUExecutionProvider"], None),
])
def test_auto_policy_without_measuring(requested, available, provider, ort_providers, want):
    choice = policy.decide_without_measuring(requested, available, provider, ort_providers)
    assert (choice.engine if choice else None) == want
    if choice:
        assert choice.reason


def test_combine_takes_medians_over_runs_so_one_busy_run_does_not_decide():
    runs = [{"onnxruntime": {"batch1_ms": 125.0, "batchN_ms_per_image": 114.0, "n": 8},  # a busy moment
             "openvino": {"batch1_ms": 75.0, "batchN_ms_per_image": 104.0, "n": 8}}] + [
            {"onnxruntime": {"batch1_ms": 43.6 + i, "batchN_ms_per_image": 43.2, "n": 8},
             "openvino": {"batch1_ms": 43.7 + i, "batchN_ms_per_image": 43.8, "n": 8}} for i in range(2)]
    assert policy.pick(policy.combine(runs[:1])).engine == "openvino"
    assert policy.pick(policy.combine(runs)).engine == "onnxruntime"


def test_pick_takes_the_lower_geometric_mean_of_batch_1_and_batch_n():
    measured = {"onnxruntime": {"batch1_ms": 24.0, "batchN_ms_per_image": 22.0, "n": 8},
                "openvino": {"batch1_ms": 22.0, "batchN_ms_per_image": 21.0, "n": 8}}
    assert policy.pick(measured).engine == "openvino"
    measured["openvino"]["batchN_ms_per_image"] = 30.0  # faster alone, much slower in batches
    choice = policy.pick(measured)
    assert choice.engine == "onnxruntime" and "24.0 ms" in choice.reason
    measured["openvino"].update(batch1_ms=23.5, batchN_ms_per_image=21.8)  # within 3%: a tie
    assert policy.pick(measured).engine == "onnxruntime"


def test_a_small_run_goes_to_the_leaner_start_up_without_measuring(tmp_path, monkeypatch):
    assert policy.small_run(1, BOTH).engine == "onnxruntime"
    assert policy.small_run(policy.SMALL_RUN + 1, BOTH) is None  # then per-image speed decides
    assert policy.small_run(None, BOTH) is None  # a long-lived Classifier: unknown workload
    assert policy.small_run(1, ["openvino"]) is None  # ONNX Runtime barred or absent
    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    clf = Classifier(tiny_models.make(tmp_path / "m.onnx"), EngineOptions(engine="auto", images_hint=1), facts=MachineFacts(engines=BOTH, ort_providers=["CPUExecutionProvider"]))
    assert clf.runner.engine == "onnxruntime" and "start-up" in clf.report.engine_choice.reason
    assert not clf.report.engine_choice.measured and not list((tmp_path / "home" / "ort-cache").glob("*.engine"))


def test_prior_is_used_only_for_its_cases():
    assert policy.prior("int8", False).engine == "openvino"
    assert policy.prior("fp32", False).engine == "onnxruntime"
    assert policy.prior("fp32", True).engine == "openvino"


# --- BF16: never chosen without its fidelity figure -----------------------------------
@pytest.mark.parametrize("engine,precision,hw,fidelity,want", [
    ("openvino", "fp32", True, None, "fp32"),  # no figure: FP32, even on a BF16 CPU
    ("openvino", "fp32", True, {"top1_agreement": 0.97, "bar": 0.99}, "fp32"),  # failed its gate
    ("openvino", "fp32", True, {"top1_agreement": 0.995, "bar": 0.9}, "bf16"),
    ("openvino", "fp32", True, {"top1_agreement": 0.985, "bar": 0.9}, "fp32"),  # a bar below 0.99 does not count
    ("openvino", "fp32", False, {"top1_agreement": 1.0, "bar": 0.99}, "fp32"),  # no BF16 in this CPU
    ("onnxruntime", "fp32", True, {"top1_agreement": 1.0, "bar": 0.99}, "fp32"),  # ORT has no BF16 path here
    ("openvino", "int8", True, {"top1_agreement": 1.0, "bar": 0.99}, "fp32"),
    ("openvino", "fp16", True, {"top1_agreement": 1.0, "bar": 0.99}, "fp32"),
])
def test_auto_precision_needs_a_passing_bf16_figure(engine, precision, hw, fidelity, want):
    got, why = policy.compute_precision("auto", engine, precision, hw, fidelity)
    assert got == want and why
    if want == "bf16":
        assert "0.995" in why  # the report can quote the evidence


def test_a_bf16_figure_measured_while_openvino_computed_f32_does_not_count():
    fig = {"top1_agreement": 1.0, "bar": 0.99, "openvino_precision": "fp32"}
    got, why = policy.compute_precision("auto", "openvino", "fp32", True, fig)
    assert got == "fp32" and "computed fp32" in why


def test_explicit_bf16_fails_clearly_where_it_cannot_run():
    with pytest.raises(EdgeClassifyError, match="openvino engine only"):
        policy.compute_precision("bf16", "onnxruntime", "fp32", True, None)
    with pytest.raises(EdgeClassifyError, match="no native BF16"):
        policy.compute_precision("bf16", "openvino", "fp32", False, None)
    assert policy.compute_precision("bf16", "openvino", "fp32", True, None)[0] == "bf16"
    assert policy.compute_precision("fp32", "openvino", "fp32", True, PASSING_BF16["bf16"])[0] == "fp32"


def test_classifier_on_a_bf16_cpu_without_a_figure_stays_fp32(tmp_path):
    clf = Classifier(tiny_models.make(tmp_path / "t.onnx"), EngineOptions(engine="openvino"), facts=MachineFacts(native_bf16=True))
    assert clf.runner.precision == "fp32" and "no BF16 fidelity figure" in clf.report.precision_reason


@pytest.mark.parametrize("kind,auto,asked", [
    ("amx", "bf16", "bf16"),  # native: chosen on evidence, and computed
    ("avx512", "fp32", None),  # emulated: never chosen, and --precision bf16 is refused
    ("avx2", "fp32", None),  # OpenVINO would compute f32 anyway
])
def test_classifier_chooses_bf16_on_evidence_and_reports_what_ran(tmp_path, monkeypatch, kind, auto, asked):
    cpu_kinds.inject(monkeypatch, kind)
    model = tiny_models.make(tmp_path / "t.onnx", parity=PASSING_BF16)
    clf = Classifier(model, EngineOptions(engine="openvino"))
    assert clf.runner.precision == auto
    assert ("agreement" in clf.report.precision_reason) == (auto == "bf16")
    if asked is None:
        with pytest.raises(EdgeClassifyError, match="no native BF16"):
            Classifier(model, EngineOptions(engine="openvino", precision="bf16"))
    else:
        assert Classifier(model, EngineOptions(engine="openvino", precision="bf16")).runner.precision == asked


def test_a_bf16_figure_measured_under_emulation_does_not_count():
    fig = {"top1_agreement": 1.0, "bar": 0.99, "openvino_precision": BF16_EMULATED}
    got, why = policy.compute_precision("auto", "openvino", "fp32", True, fig)
    assert got == "fp32" and "emulates bf16" in why and "not evidence" in why


# --- what the compiled model reports, read as OpenVINO spells it ------------------------
@pytest.mark.parametrize("file_precision,hint,native,want", [
    ("fp32", "f32", False, "fp32"), ("fp32", "f32", True, "fp32"),
    ("fp32", "bf16", True, "bf16"),  # AMX / AVX512-BF16
    ("fp32", "bf16", False, BF16_EMULATED),  # AVX-512 without native BF16: oneDNN emulates it
    ("fp16", "f32", True, "fp32"),  # an FP16 file's weights widened to f32 on CPUs
    ("fp32", "f16", False, "fp16"),
    ("int8", "bf16", True, "int8"), ("int8", "f32", False, "int8"),
])
def test_computed_precision(file_precision, hint, native, want):
    from edge_classify.runtime.engines.openvino_runner import computed_precision

    assert computed_precision(file_precision, hint, native) == want


def test_reported_types_are_read_by_their_short_names():
    """``str(ov.Type.bf16)`` is ``<Type: 'bfloat16'>``: matching "bf16" in it read bf16 as fp32."""
    import openvino

    from edge_classify.runtime.engines.openvino_runner import type_name

    assert [type_name(t) for t in (openvino.Type.f32, openvino.Type.bf16, openvino.Type.f16)] == ["f32", "bf16", "f16"]
    assert "bf16" not in str(openvino.Type.bf16)


def test_openvino_told_bf16_reports_what_this_cpu_computes(tiny):
    """On this machine, whatever it is: the label follows OpenVINO's own read-back and its
    native-BF16 capability; where it says f32 the output is f32's."""
    from edge_classify.runtime.engines import openvino_runner as ovr
    from edge_classify.runtime.host import deps, facts

    runner = ovr.OpenVinoRunner(str(tiny), "fp32", "bf16")
    core = deps.openvino_core()
    compiled = core.compile_model(core.read_model(str(tiny)), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    hint = ovr.type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    assert hint in ("f32", "bf16")
    native = facts.openvino_native_bf16()
    assert runner.precision == ("fp32" if hint == "f32" else "bf16" if native else BF16_EMULATED)
    if runner.precision == "fp32":
        f32 = ovr.OpenVinoRunner(str(tiny), "fp32", "fp32")
        x = np.random.default_rng(2).uniform(-120, 150, (2, 224, 224, 3)).astype(np.float32)
        assert float(np.abs(runner.run(x) - f32.run(x)).max()) <= 1e-6  # bf16 moves this model's by 4e-5


# --- the measured choice, remembered per machine --------------------------------------
def test_choice_key_changes_with_model_cpu_engine_versions_and_request():
    base = dict(model_sha256="a" * 64, cpu="AMD EPYC|avx2 fma", versions={"onnxruntime": "1.32.0",
                                                                           "openvino": "2026.4.1"},
                precision_request="auto", threads=None)
    key = policy.choice_key(**base)
    for change in ({"model_sha256": "b" * 64}, {"cpu": "Intel Xeon|avx512f amx_int8"},
                   {"versions": {"onnxruntime": "1.33.0", "openvino": "2026.4.1"}},
                   {"versions": {"onnxruntime": "1.32.0", "openvino": "2027.0.0"}},
                   {"precision_request": "fp32"}, {"threads": 1}):
        assert policy.choice_key(**{**base, **change}) != key, change
    assert policy.choice_key(**base) == key


def test_auto_measures_once_then_remembers(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    model = tiny_models.make(tmp_path / "m.onnx", seed=3)
    def auto():
        return Classifier(model, EngineOptions(engine="auto"), facts=MachineFacts(engines=BOTH, ort_providers=["CPUExecutionProvider"]))

    first = auto()
    assert first.report.engine_choice.reason.startswith("measured now (run 1 of 3")
    assert set(first.report.engine_choice.measured) == set(BOTH)
    assert first.runner.engine == first.report.engine_choice.engine
    assert auto().report.engine_choice.reason.startswith("measured now (run 2 of 3")
    third = auto()
    assert third.report.engine_choice.reason.startswith("measured now (run 3 of 3")
    assert third.report.engine_choice.measured["openvino"]["runs"] == 3
    second = auto()
    assert second.report.engine_choice.reason.startswith("measured on this machine earlier")
    assert second.report.engine_choice.engine == third.report.engine_choice.engine
    assert np.allclose(first.run(np.zeros((2, 224, 224, 3), np.float32)),
                       second.run(np.zeros((2, 224, 224, 3), np.float32)), atol=1e-5)

    # A record that is not ours (or not sane) is never trusted: measured again.
    records = list((tmp_path / "home" / "ort-cache").glob("*.engine"))
    assert len(records) == 1
    records[0].write_text(json.dumps({"engine": "tensorflow"}))
    assert auto().report.engine_choice.reason.startswith("measured now (run 1")

    # Another model: another key, measured again.
    other = Classifier(tiny_models.make(tmp_path / "o.onnx", seed=4), EngineOptions(engine="auto"), facts=MachineFacts(engines=BOTH, ort_providers=["CPUExecutionProvider"]))
    assert other.report.engine_choice.reason.startswith("measured now")


def test_settle_measures_the_choice_now_so_later_runs_do_not(tmp_path, monkeypatch):
    """edge-classify --warmup: the measuring runs happen at deployment, back to back."""
    from edge_classify.runtime.engines import loader

    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    model = tiny_models.make(tmp_path / "m.onnx", seed=5)
    facts = MachineFacts(engines=BOTH, ort_providers=["CPUExecutionProvider"])
    loads = []
    real_load = loader.load
    monkeypatch.setattr(loader, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    choice = loader.settle(model, EngineOptions(images_hint=3), facts)  # a small run's hint does not skip it
    assert len(loads) == policy.SAMPLES and choice.fresh and len(choice.samples) == policy.SAMPLES
    later = Classifier(model, EngineOptions(), facts=facts)
    assert later.report.engine_choice.reason.startswith("measured on this machine earlier")
    assert later.runner.engine == choice.engine
    loads.clear()
    assert not loader.settle(model, EngineOptions(), facts).fresh and len(loads) == 1  # settled: one load
    loads.clear()
    forced = loader.settle(model, EngineOptions(engine="onnxruntime"), facts)  # nothing to measure
    assert forced.engine == "onnxruntime" and len(loads) == 1


def test_auto_falls_back_when_one_engine_cannot_load_the_model(tmp_path, monkeypatch):
    from edge_classify.runtime.engines import openvino_runner

    def refuse(*args, **kwargs):
        raise RuntimeError("Exception from src/frontends/onnx: unsupported operation\nmore")

    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(openvino_runner, "OpenVinoRunner", refuse)
    clf = Classifier(tiny_models.make(tmp_path / "m.onnx"), EngineOptions(engine="auto"), facts=MachineFacts(engines=BOTH, ort_providers=["CPUExecutionProvider"]))
    assert clf.runner.engine == "onnxruntime"
    assert "openvino cannot load this model (RuntimeError: Exception from src/frontends/onnx" in \
        clf.report.engine_choice.reason
    with pytest.raises(EdgeClassifyError, match="cannot load model"):  # named: its own error, no fallback
        Classifier(tmp_path / "m.onnx", EngineOptions(engine="openvino"))


def test_auto_without_a_cache_uses_the_prior_instead_of_measuring_every_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_CLASSIFY_NO_CACHE", "1")
    clf = Classifier(tiny_models.make(tmp_path / "m.onnx"), EngineOptions(engine="auto"), facts=MachineFacts(engines=BOTH, ort_providers=["CPUExecutionProvider"]))
    assert clf.report.engine_choice.reason.startswith("prior") and clf.report.engine_choice.engine == "onnxruntime"


# --- the OpenVINO runner computes what the ONNX Runtime runner computes ---------------
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_openvino_runner_matches_onnxruntime_runner(exported, photos, precision):
    ort = Classifier(exported[precision], EngineOptions(engine="onnxruntime", providers="cpu"))
    ov = Classifier(exported[precision], EngineOptions(engine="openvino"))
    assert (ort.runner.engine, ov.runner.engine) == ("onnxruntime", "openvino")
    assert ort.runner.precision == precision
    # OpenVINO reports what it computes in: on CPUs an FP16 file's weights are widened to f32.
    assert ov.runner.precision == "fp32"
    p_ort, p_ov = ort.predict(photos), ov.predict(photos)
    top1 = p_ort.argmax(1)
    assert len(set(top1.tolist())) > 1  # the stand-in tells photos apart: top-1 means something
    assert np.array_equal(top1, p_ov.argmax(1))
    assert float(np.abs(p_ort - p_ov).max()) <= TOL[precision]


def _quantized_tiny(tmp_path):
    """The tiny classifier in QDQ INT8 (ONNX Runtime's quantizer, 16 random calibration inputs):
    simple and input-sensitive, so the two engines must agree where the top-1 is clear."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    fp32 = tiny_models.make(tmp_path / "fp32.onnx", classes=7, seed=5)

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{"input": rng.uniform(-120, 150, (1, 224, 224, 3)).astype(np.float32)}
                               for _ in range(16)])

        def get_next(self):
            return next(self.items, None)

    out = tmp_path / "int8.onnx"
    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return fp32, out


def test_openvino_runner_matches_onnxruntime_runner_int8(tmp_path, photos):
    fp32, int8 = _quantized_tiny(tmp_path)
    ort = Classifier(int8, EngineOptions(engine="onnxruntime", providers="cpu"))
    ov = Classifier(int8, EngineOptions(engine="openvino"))
    p_ort, p_ov = ort.predict(photos), ov.predict(photos)
    assert len(set(p_ort.argmax(1).tolist())) > 1
    # The output is quantized in steps of 1/255, and the engines round differently by a step
    # (measured: 1 step, on a Sapphire Rapids Xeon), which per CPU kind may land on a photo
    # whose top-2 margin is one step (5 of 21 are): top-1 is compared where it is clear.
    top2 = np.sort(p_ort, 1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 / 255
    assert clear.mean() >= 0.5
    assert np.array_equal(p_ort.argmax(1)[clear], p_ov.argmax(1)[clear])
    assert float(np.abs(p_ort - p_ov).max()) <= TOL["int8"]


def test_int8_stand_in_agrees_with_fp32_about_as_well_on_either_engine(exported, photos):
    """The stand-in's INT8 is poor on both engines (near ties), and they differ on which photos:
    the reason ``auto`` needs each engine's own INT8 figure (policy.unverified)."""
    ref = Classifier(exported["fp32"], EngineOptions(engine="onnxruntime", providers="cpu")).predict(photos).argmax(1)
    agree = {e: float((Classifier(exported["int8"], EngineOptions(engine=e)).predict(photos).argmax(1) == ref).mean())
             for e in BOTH}
    assert abs(agree["onnxruntime"] - agree["openvino"]) <= 0.2, agree


def test_auto_runs_int8_on_another_engine_only_with_its_own_figure(exported, tmp_path):
    import onnx

    m = onnx.load(str(exported["int8"]))  # as exported without OpenVINO installed: no figure for it
    for prop in m.metadata_props:
        if prop.key == "edge_classify.parity":
            parity = json.loads(prop.value)
            parity.pop("engines", None)
            prop.value = json.dumps(parity)
    onnx.save(m, str(tmp_path / "int8.onnx"))
    clf = Classifier(tmp_path / "int8.onnx", EngineOptions(engine="auto"), facts=MachineFacts(engines=BOTH, ort_providers=["CPUExecutionProvider"]))
    assert clf.runner.engine == "onnxruntime"
    assert "openvino not considered" in clf.report.engine_choice.reason and "fidelity figure" in clf.report.engine_choice.reason
    base = {"top1_agreement": 0.99, "min_agreement": None}
    assert policy.unverified("onnxruntime", "int8", base) is None
    assert "no INT8 fidelity figure" in policy.unverified("openvino", "int8", base)
    assert policy.unverified("openvino", "int8", {**base, "engines": {"openvino": {"top1_agreement": 0.985}}}) is None
    assert "below" in policy.unverified("openvino", "int8", {**base, "engines": {"openvino": {"top1_agreement": 0.97}}})
    assert "below" in policy.unverified("openvino", "int8", {"top1_agreement": 0.9, "min_agreement": 0.95,
                                                             "engines": {"openvino": {"top1_agreement": 0.93}}})
    assert policy.unverified("openvino", "fp32", base) is None  # float files: engines agree to 1e-4 (above)


@pytest.mark.bf16
def test_bf16_runner_stays_within_its_tolerance(exported, photos):
    from edge_classify.runtime.host.facts import openvino_native_bf16

    if not openvino_native_bf16():
        pytest.skip("this CPU has no native BF16 (AMX-BF16 / AVX512-BF16)")
    ref = Classifier(exported["fp32"], EngineOptions(engine="onnxruntime", providers="cpu")).predict(photos)
    bf16 = Classifier(exported["fp32"], EngineOptions(engine="openvino", precision="bf16"))
    assert bf16.runner.precision == "bf16"
    p = bf16.predict(photos)
    diff = float(np.abs(ref - p).max())
    assert 1e-4 < diff <= TOL["bf16"]  # bf16 arithmetic really ran, within its tolerance
    # Top-1 moves only where FP32 itself nearly ties.
    rows, want, got = np.arange(len(ref)), ref.argmax(1), p.argmax(1)
    moved = want != got
    assert moved.mean() <= 0.1 and (ref[rows, want] - ref[rows, got])[moved].max(initial=0) <= BF16_NEAR_TIE


def test_openvino_runner_batches_and_pads_like_single_runs(tiny):
    clf = Classifier(tiny, EngineOptions(engine="openvino"), batch_size=8)
    x = np.random.default_rng(0).uniform(-120, 150, (11, 224, 224, 3)).astype(np.float32)
    singles = np.concatenate([clf.run(x[i : i + 1]) for i in range(len(x))])
    for n in (8, 5, 3, 11):  # 5 and 3 reuse a compiled size with padding or get their own
        assert np.allclose(clf.run(x[:n]), singles[:n], atol=1e-6), n


def test_openvino_runner_can_be_shared_by_threads(tiny):
    from concurrent.futures import ThreadPoolExecutor

    clf = Classifier(tiny, EngineOptions(engine="openvino"))
    x = np.random.default_rng(1).uniform(-120, 150, (16, 224, 224, 3)).astype(np.float32)
    want = [clf.run(x[i : i + 1 + i % 3]) for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: clf.run(x[i : i + 1 + i % 3]), range(12)))
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(want, got))


def test_openvino_compiled_blob_is_cached_by_content(tmp_path, monkeypatch, photos):
    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    model = tiny_models.make(tmp_path / "m.onnx", seed=1)
    first = Classifier(model, EngineOptions(engine="openvino"))
    assert first.report.cache_status == "stored"
    want = first.predict(photos[:4])  # a batch size compiled after loading: cached as well
    blobs = sorted((tmp_path / "home" / "ort-cache").glob("*.ovblob"))
    assert len(blobs) == 2
    again = Classifier(model, EngineOptions(engine="openvino"))
    assert again.report.cache_status == "hit" and np.array_equal(again.predict(photos[:4]), want)
    # Same path, same size, other weights: a new key, never the old blob.
    st = os.stat(model)
    tiny_models.make(model, seed=2)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    swapped = Classifier(model, EngineOptions(engine="openvino"))
    assert swapped.report.cache_status == "stored"
    assert not np.array_equal(swapped.predict(photos[:4]), want)


def test_contract_is_read_without_any_engine(exported, tmp_path):
    import onnx

    for precision, path in exported.items():
        want = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        assert onnx_meta.metadata(path) == want and want, precision
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 100)
    with pytest.raises(EdgeClassifyError, match="cannot load model"):
        Classifier(junk, EngineOptions(engine="openvino"))


def test_an_openvino_device_implies_the_openvino_engine_and_must_exist(tiny, capsys):
    from edge_classify.runtime.apps.classify import main

    clf = Classifier(tiny, EngineOptions(device="CPU"))
    assert clf.runner.engine == "openvino" and clf.runner.device == "CPU"
    with pytest.raises(EdgeClassifyError) as e:
        Classifier(tiny, EngineOptions(device="NO_SUCH_DEVICE"))
    assert e.value.exit_code == 3 and "not available" in e.value.message and "CPU" in e.value.hint
    with pytest.raises(EdgeClassifyError) as e:
        Classifier(tiny, EngineOptions(engine="onnxruntime", device="CPU"))
    assert e.value.exit_code == 2
    assert main(["--model", str(tiny), "--device", "NO_SUCH_DEVICE", "x.jpg"]) == 3
    assert "available: CPU" in capsys.readouterr().err


def test_cli_reports_the_engine_and_precision(tiny, photos, capsys):
    from edge_classify.runtime.apps.classify import main

    rc = main(["--model", str(tiny), "--engine", "openvino", "--json", str(photos[0])])
    out, err = capsys.readouterr()
    row = json.loads(out.splitlines()[0])
    assert rc == 0 and row["engine"] == "openvino" and row["compute_precision"] == row["model_precision"] == "fp32"
    assert "on openvino (CPU), computing in fp32" in err
    rc = main(["--model", str(tiny), "--engine", "openvino", "--provider", "cuda", str(photos[0])])
    assert rc == 2 and "ONNX Runtime provider" in capsys.readouterr().err


# --- loading apart from running ----------------------------------------------------------
def test_a_classifier_over_a_loaded_model_or_runner_classifies_the_same(tiny, photos):
    from edge_classify.runtime.engines.loader import load

    want = Classifier(tiny, EngineOptions(providers="cpu")).predict(photos)
    loaded = load(tiny, EngineOptions(providers="cpu"))
    assert loaded.report.engine_choice.engine == "onnxruntime" and loaded.report.provider_plan.names == [
        "CPUExecutionProvider"]
    assert np.array_equal(Classifier.from_loaded(loaded, batch_size=3).predict(photos), want)
    again = load(tiny, EngineOptions(engine="openvino"))
    assert again.report.provider_plan is None  # no ONNX Runtime plan on the OpenVINO engine
    clf = Classifier.from_runner(again.runner, again.contract)
    assert clf.runner.provider == "OpenVINO CPU" and clf.report.engine_choice.engine == "openvino"
    assert np.array_equal(clf.predict(photos), Classifier(tiny, EngineOptions(engine="openvino")).predict(photos))


def test_a_static_batch_graph_runs_once_per_batch_of_its_own_size(tmp_path, photos):
    """batch_size 1 on a graph fixed at 4: whole batches of 4 (the last padded), as many runs as
    that takes, and the same probabilities as the dynamic graph."""
    static = Classifier(tiny_models.make(tmp_path / "s.onnx", batch=4), EngineOptions(providers="cpu"), batch_size=1)
    calls = []
    real = static.runner._run
    static.runner._run = lambda x: calls.append(len(x)) or real(x)
    got = static.predict(photos[:6])
    assert calls == [4, 4]
    want = Classifier(tiny_models.make(tmp_path / "d.onnx"), EngineOptions(providers="cpu")).predict(photos[:6])
    assert np.allclose(got, want, atol=1e-6)
