"""TensorRT policy without a GPU: options, per-model engine caches, INT8 flags and the
refusal of uint8 models, and the explicit fallback when the TensorRT session fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tiny_models
from edge_classify.runtime import EngineOptions, MachineFacts, TensorRTOptions
from edge_classify.runtime.engines import tensorrt
from edge_classify.runtime.engines.ort_runner import OrtRunner
from edge_classify.runtime.engines.providers import plan_providers
from edge_classify.runtime.errors import EdgeClassifyError

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
# A machine whose ONNX Runtime lists TensorRT, with a GPU and the provider's libraries in place.
TRT_HOST = MachineFacts(engines=("onnxruntime",), ort_providers=(TRT, CPU), gpu_device="/dev/nvidia0",
                        library_errors={})
BASE = dict(model_sha256="a" * 64, precision="fp32", input_name="input", input_shape=(224, 224, 3),
            static_batch=None, ort_version="1.20.1", trt_version="10.3.0", gpu="Orin (nvgpu)")


def test_fp16_by_default_int8_flag_for_int8_models_and_a_fixed_profile(tmp_path):
    fp32 = tensorrt.options(cache_base=tmp_path, **BASE)
    assert fp32["trt_fp16_enable"] is True and fp32["trt_int8_enable"] is False
    assert (fp32["trt_profile_min_shapes"], fp32["trt_profile_opt_shapes"], fp32["trt_profile_max_shapes"]) == (
        "input:1x224x224x3", "input:8x224x224x3", "input:32x224x224x3")
    int8 = tensorrt.options(cache_base=tmp_path, **{**BASE, "precision": "int8"})
    assert int8["trt_int8_enable"] is True
    static = tensorrt.options(cache_base=tmp_path, **{**BASE, "static_batch": 1})
    assert not any(k.startswith("trt_profile") for k in static)


def test_each_model_gets_its_own_engine_folder_created_with_parents(tmp_path):
    base = tmp_path / "not" / "yet" / "there"
    first = tensorrt.options(cache_base=base, **BASE)["trt_engine_cache_path"]
    assert (tmp_path / "not" / "yet" / "there").is_dir() and Path(first).is_dir()
    assert tensorrt.options(cache_base=base, **BASE)["trt_engine_cache_path"] == first  # stable
    for change in ({"model_sha256": "b" * 64}, {"precision": "fp16"}, {"ort_version": "1.21.0"},
                   {"trt_version": "10.4.0"}, {"gpu": "NVIDIA H200, 9.0"}, {"static_batch": 1},
                   {"input_shape": (256, 256, 3)}):
        assert tensorrt.options(cache_base=base, **{**BASE, **change})["trt_engine_cache_path"] != first, change


def test_timing_cache_only_where_onnx_runtime_knows_the_option(tmp_path):
    assert "trt_timing_cache_path" in tensorrt.options(cache_base=tmp_path, **BASE)
    old = tensorrt.options(cache_base=tmp_path, **{**BASE, "ort_version": "1.16.3"})  # JetPack 5 wheels
    assert "trt_timing_cache_path" not in old and "trt_timing_cache_enable" not in old


def test_uint8_and_int32_bias_int8_models_stay_off_tensorrt():
    u8 = {"quantization": {"activations": "u8", "bias": "int32"}}
    s8 = {"quantization": {"activations": "s8", "bias": "float"}}
    old_s8 = {"quantization": {"activations": "s8"}}  # exported before biases stayed float
    assert tensorrt.check_allowed("auto", "int8", s8) is None
    assert "uint8" in tensorrt.check_allowed("auto", "int8", u8)
    assert "int32" in tensorrt.check_allowed("auto", "int8", old_s8)
    for parity in (u8, old_s8):
        with pytest.raises(EdgeClassifyError, match="--int8-activations s8") as e:
            tensorrt.check_allowed("tensorrt", "int8", parity)
        assert e.value.exit_code == 3
    assert tensorrt.check_allowed("tensorrt", "fp32", None) is None


def test_s8_int8_export_keeps_biases_float_for_tensorrt(tmp_path, photos):
    """TensorRT's parser rejects DequantizeLinear on int32 biases (ORT's quantizer default):
    the s8 model made for it keeps them float, says so in its contract, and TensorRT's policy
    takes it; it still runs on the CPU with FP32's predictions."""
    import onnx

    from edge_classify.runtime import Classifier

    def int32_dequantized(path):
        m = onnx.load(str(path))
        int32 = {t.name for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT32}
        return [n.name for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]

    s8 = tiny_models.make_conv(tmp_path / "s8.onnx", "int8", calibration=photos[:8], activations="s8")
    u8 = tiny_models.make_conv(tmp_path / "u8.onnx", "int8", calibration=photos[:8], activations="u8")
    assert int32_dequantized(u8)  # the check can fail: ORT's default quantizes biases
    assert not int32_dequantized(s8)
    clf = Classifier(s8, EngineOptions(providers="cpu"))
    assert clf.contract.parity["quantization"]["bias"] == "float"
    assert tensorrt.check_allowed("tensorrt", "int8", clf.contract.parity) is None
    fp32 = Classifier(tmp_path / "s8.fp32.onnx", EngineOptions(providers="cpu")).predict(photos)
    got = clf.predict(photos)
    assert len(set(fp32.argmax(1))) > 1  # the picture matters
    assert (got.argmax(1) == fp32.argmax(1)).mean() >= 0.9


def test_batch_size_does_not_change_the_engine(tmp_path):
    """The profile and the engine folder come from the model, not from --batch-size."""
    from edge_classify.runtime.classifier import Classifier

    model = tiny_models.make(tmp_path / "m.onnx")
    options = EngineOptions(engine="onnxruntime", tensorrt=TensorRTOptions(cache_dir=tmp_path / "trt"))
    plans = [Classifier(model, options, batch_size=b, facts=TRT_HOST).report.provider_plan for b in (1, 16, 48)]
    (name_a, opts_a), (name_b, opts_b), (_, opts_c) = (p.providers[0] for p in plans)
    assert name_a == name_b == TRT and opts_a == opts_b
    # Beyond the profile's 32 (48 camera streams in one round), its maximum covers the batch.
    assert opts_a["trt_profile_max_shapes"].startswith("input:32x")
    assert opts_c["trt_profile_max_shapes"].startswith("input:48x")
    assert opts_c["trt_profile_opt_shapes"] == opts_a["trt_profile_opt_shapes"]
    assert opts_c["trt_engine_cache_path"] != opts_a["trt_engine_cache_path"], "another profile, another engine"


class _Options:
    def __init__(self):
        self.entries = {}

    def add_session_config_entry(self, k, v):
        self.entries[k] = v


class _FakeOrt:
    """An onnxruntime whose TensorRT session creation fails the way EPFail does, after
    printing ORT's banner on stdout."""
    __version__ = "1.20.0"
    SessionOptions = _Options

    class _Session:
        def __init__(self, providers):
            self._providers = [p for p, _ in providers]

        def get_providers(self):
            return self._providers

        def get_inputs(self):
            return [type("I", (), {"name": "input", "shape": [None, 4, 4, 3], "type": "tensor(float)"})()]

        def get_outputs(self):
            return [type("O", (), {"name": "probabilities", "shape": [None, 5], "type": "tensor(float)"})()]

        def run(self, outputs, feeds):
            return [np.full((len(next(iter(feeds.values()))), 5), 0.2, np.float32)]

    def __init__(self):
        self.calls = []

    def InferenceSession(self, source, so, providers, **kwargs):  # noqa: N802 (onnxruntime's name)
        self.calls.append(kwargs)
        if providers[0][0] == TRT:
            print("*************** EP Error ***************")
            raise type("EPFail", (Exception,), {})("TensorRT EP failed to create engine from network")
        return self._Session(providers)


def test_tensorrt_session_failure_falls_back_explicitly_and_keeps_stdout_clean(capsys, monkeypatch):
    from edge_classify.runtime.host import deps

    plan = plan_providers("auto", [TRT, CUDA, CPU], {"trt_fp16_enable": True})
    ort = _FakeOrt()
    monkeypatch.setattr(deps, "onnxruntime", lambda: ort)
    runner = OrtRunner("m.onnx", plan, "fp32")
    assert runner.device == CUDA
    note, = runner.notes
    assert "tensorrt could not create a session" in note and "running on cuda" in note
    assert "failed to create engine" in note  # why, in ONNX Runtime's words
    assert capsys.readouterr().out == ""  # the banner went to stderr
    assert all(call.get("enable_fallback") == 0 for call in ort.calls)  # ORT's own fallback off: ours decides
    named = plan_providers("tensorrt", [TRT, CUDA, CPU], {})
    with pytest.raises(EdgeClassifyError, match="tensorrt could not create a session.*failed to create engine") as e:
        OrtRunner("m.onnx", named, "fp32")
    assert "--provider auto" in e.value.hint


class _BuildingOrt(_FakeOrt):
    """An onnxruntime whose TensorRT sessions write an engine into the cache folder, as the
    provider does on its first build, and reuse it later."""

    def InferenceSession(self, source, so, providers, **kwargs):  # noqa: N802 (onnxruntime's name)
        name, opts = providers[0]
        if name == TRT:
            folder = Path(opts["trt_engine_cache_path"])
            self.builds = getattr(self, "builds", 0) + (not list(folder.glob("*.engine")))
            (folder / "TensorrtExecutionProvider_TRTKernel_graph_tiny_0_0_sm87.engine").write_bytes(b"engine")
        return self._Session(providers)


def test_first_engine_build_is_announced_and_timed_then_reused(tmp_path, monkeypatch):
    """Minutes of silence on the first TensorRT run look like a hang: the build is announced
    before it starts and timed after; a later load reuses the cached engine without a word."""
    from edge_classify.runtime.classifier import Classifier
    from edge_classify.runtime.host import deps

    model = tiny_models.make(tmp_path / "m.onnx", graph_input_size=(4, 4), contract_input_size=(4, 4))
    fake = _BuildingOrt()
    monkeypatch.setattr(deps, "onnxruntime", lambda: fake)
    said = []
    options = EngineOptions(tensorrt=TensorRTOptions(cache_dir=tmp_path / "trt"))
    first = Classifier(model, options, on_status=said.append, facts=TRT_HOST)
    assert first.runner.provider == TRT and first.report.engine_built is True and first.report.engine_build_s >= 0
    assert len(said) == 2 and "building the TensorRT engine" in said[0] and "minutes" in said[0]
    assert said[1].startswith("TensorRT engine built in") and str(tmp_path / "trt") in said[1]
    said.clear()
    again = Classifier(model, options, on_status=said.append, facts=TRT_HOST)
    assert again.report.engine_built is False and said == [] and fake.builds == 1
    cpu = Classifier(model, EngineOptions(providers="cpu"), on_status=said.append, facts=TRT_HOST)
    assert cpu.report.engine_built is None and said == []
