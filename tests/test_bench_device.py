"""``edge-bench`` on a device without TensorFlow (a Jetson): ``--no-keras`` and ``--provider``.

One ``--quick`` run of the tiny convolutional model (``tiny_models.make_conv``: onnx helpers,
no TensorFlow) in a subprocess whose ``tensorflow`` and ``keras`` are stand-ins that record
any import, from the conductor or any worker or child it starts, and then fail it as a missing
package would. No test here asserts a time; GPU providers are checked only for their refusal
on a machine that lacks them (tests/test_gpu.py runs the GPU itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import onnxruntime as ort
import pytest

import tiny_models
from conftest import script
from edge_classify.benchmarks import lineup, peak, report
from edge_classify.benchmarks.run import main

BLOCKED = ("tensorflow", "keras")


@pytest.fixture(scope="module")
def device_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench-device")
    model = tiny_models.make_conv(d / "m.onnx")
    marker = d / "imported.txt"
    for name in BLOCKED:
        (d / "blocked" / name).mkdir(parents=True)
        (d / "blocked" / name / "__init__.py").write_text(
            "import sys\n"
            f"with open({str(marker)!r}, 'a') as f:\n"
            f"    f.write({name!r} + ' imported by ' + ' '.join(sys.argv) + '\\n')\n"
            f"raise ImportError({name!r} + ' is not installed here (test stand-in)')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(d / "blocked"), os.environ.get("PYTHONPATH"))
                                                      if p))
    out = d / "out"
    p = subprocess.run([script("edge-bench"), "--quick", "--model", str(model), "--no-keras", "--provider", "cpu",
                        "--no-openvino", "-q", "-o", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return {"out": out, "marker": marker, "data": json.loads((out / "report.json").read_text()),
            "stdout": p.stdout}


def test_no_keras_run_never_imports_tensorflow(device_run):
    assert not device_run["marker"].exists(), device_run["marker"].read_text()


def test_no_keras_report_is_valid_and_says_keras_was_skipped(device_run):
    d = device_run["data"]
    assert report.validate(d) == []
    lat = d["latency_batch1"]
    assert not any(row["kind"] == "keras" for row in lat.values())
    assert {lineup.KERAS_PREDICT, lineup.TF_FUNCTION} <= set(d["skipped_rows"])
    assert any("Keras skipped (--no-keras)" in n for n in d["notes"])
    # The validator CI runs, as a command.
    v = subprocess.run([sys.executable, "-m", "edge_classify.benchmarks.report", str(device_run["out"] / "report.json")],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stdout


def test_no_keras_rows_record_the_provider_that_ran(device_run):
    d = device_run["data"]
    edge = {n: r for n, r in d["latency_batch1"].items() if r["kind"] == "edge"}
    assert lineup.edge_name("onnxruntime", "fp32") in edge
    for name, row in edge.items():
        assert row["provider"] == "CPUExecutionProvider", name
        assert row["info"]["provider_requested"] == "cpu"
    assert d["provider"] == {"rows": "cpu", "sections": "auto"}
    assert "gpu" in d["environment"]  # {} here; the GPU, TensorRT and L4T facts where present


def test_no_keras_report_keeps_the_peer_ratio_and_marks_keras_ratios(device_run):
    d = device_run["data"]
    r, lat = d["ratios"], d["latency_batch1"]
    assert r["best_peer"] == lineup.ORT_PLAIN and isinstance(r["best_edge_p50_over_best_peer_p50"], float)
    assert all(row["ratio_vs_tf_function"] is None for row in lat.values())
    by_key = {t["ratio"]: t for t in d["targets"]}
    assert by_key["cold_wall_edge_over_keras"]["not_applicable"] == "no Keras"
    assert "not_applicable" not in by_key["best_edge_p50_over_best_peer_p50"]
    assert set(d["cold_start"]) >= {"edge-classify"} and "keras-script" not in d["cold_start"]
    assert d["preprocessing"]["speedup"] is None
    md = (device_run["out"] / "report.md").read_text()
    assert "n/a (no Keras)" in md and "| ran on |" in md
    assert {p.name for p in device_run["out"].glob("*.png")} == {"latency.png", "throughput.png", "cold_start.png"}
    assert "n/a (no Keras)" in device_run["stdout"]  # the headline printed at the end


def test_validator_still_wants_keras_rows_unless_the_report_says_they_were_skipped(device_run):
    """The guard the relaxed validator keeps: a report that does not say Keras was left out
    must have its rows and ratios (a default run whose Keras rows went missing fails CI)."""
    d = json.loads(json.dumps(device_run["data"]))
    del d["skipped_rows"]
    problems = report.validate(d)
    assert f"missing latency row {lineup.KERAS_PREDICT}" in problems
    assert "ratio cold_wall_edge_over_keras missing" in problems


@pytest.mark.skipif("TensorrtExecutionProvider" in ort.get_available_providers(),
                    reason="this onnxruntime lists TensorRT")
def test_unavailable_provider_fails_before_timing_anything(tmp_path, capsys):
    model = tiny_models.make_conv(tmp_path / "m.onnx")
    rc = main(["--quick", "--model", str(model), "--no-keras", "--provider", "tensorrt", "-q", "-o",
               str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 3  # as edge-classify: a model / provider problem
    assert "provider 'tensorrt'" in err and "available: cpu" in err
    assert not (tmp_path / "out" / "report.json").exists()


def test_no_keras_needs_a_model(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--no-keras", "--quick"])
    assert e.value.code == 2 and "--no-keras needs --model" in capsys.readouterr().err


def test_gpu_provider_applies_to_onnxruntime_rows_only(tmp_path):
    specs = lineup.edge_specs({"fp32": tmp_path / "m.onnx"}, ["onnxruntime", "openvino"], None, False, "tensorrt")
    assert {s["engine"]: s["providers"] for s in specs} == {"onnxruntime": "tensorrt", "openvino": "cpu"}


def test_a_gpu_row_gets_no_cpu_peak_estimate(tmp_path):
    model = tiny_models.make_conv(tmp_path / "m.onnx")
    cpu = {"cores": 2, "mhz": 2400.0, "mhz_source": "test"}
    on_gpu = peak.report(1000.0, "fp16", "edge", model, cpu, {"avx2", "fma"}, gpu="TensorrtExecutionProvider")
    assert on_gpu["fraction_of_peak"] is None and "TensorrtExecutionProvider" in on_gpu["why_none"]
    assert on_gpu["achieved_ops_per_s"] > 0
    assert peak.report(1000.0, "fp32", "edge", model, cpu, {"avx2", "fma"})["fraction_of_peak"] > 0


def test_benchmarks_run_on_python38():
    """JetPack 5's Python is 3.8, and edge-bench now runs there (see test_install_targets)."""
    from test_install_targets import ROOT, _vermin

    out = _vermin(*map(str, sorted((ROOT / "benchmarks").glob("*.py"))))
    assert out.returncode == 0, out.stdout + out.stderr
