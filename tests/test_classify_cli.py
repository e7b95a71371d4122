"""edge-classify end to end: output forms, errors and exit codes, and no TensorFlow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import script
from edge_classify.runtime import Classifier, EngineOptions
from edge_classify.runtime.apps.classify import main

LINE = re.compile(r"^(\d+)\. (\S+): (\d+\.\d\d)%$")


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_one_image_prints_familiar_top3(exported, photos, capsys):
    rc, out, err = run_cli(capsys, "--model", exported["fp32"], photos[1])
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 3
    matches = [LINE.match(line) for line in lines]
    assert all(matches) and [m.group(1) for m in matches] == ["1", "2", "3"]
    # The lines are the model's top-3, formatted from its probabilities.
    top = Classifier(exported["fp32"], EngineOptions(providers="cpu")).classify(photos[1], top_k=3)[0].predictions
    assert lines == [f"{i}. {p.label}: {p.probability * 100:.2f}%" for i, p in enumerate(top, 1)]
    # The engine and device actually used are reported (auto: ONNX Runtime for one image).
    assert "on onnxruntime (CPUExecutionProvider)" in err


def test_several_images_get_a_header_each(exported, photos, capsys):
    rc, out, _ = run_cli(capsys, "--model", exported["fp32"], "--top-k", "2", photos[0], photos[1])
    assert rc == 0
    blocks = out.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [str(photos[0]), str(photos[1])]
    assert all(len(b.splitlines()) == 3 and LINE.match(b.splitlines()[1]) for b in blocks)


def test_json_lines(exported, photos, capsys):
    rc, out, _ = run_cli(capsys, "--model", exported["fp32"], "--json", "--top-k", "5", *photos[:3])
    assert rc == 0
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["path"] for o in objs] == [str(p) for p in photos[:3]]
    for o in objs:
        assert o["provider"] == "CPUExecutionProvider"
        preds = o["predictions"]
        assert [p["rank"] for p in preds] == [1, 2, 3, 4, 5]
        assert all(p["wnid"].startswith("n") and 0 <= p["index"] < 1000 for p in preds)
        probs = [p["probability"] for p in preds]
        assert probs == sorted(probs, reverse=True)
        assert {"decode", "inference"} <= set(o["timings_ms"])


def test_bad_inputs_do_not_stop_the_run(exported, photos, tmp_path, capsys):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photos[4].read_bytes()[:5000])  # rocket.jpg, cut short
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    missing = tmp_path / "missing.jpg"
    args = [photos[0], empty, truncated, text, missing, photos[1]]
    rc, out, err = run_cli(capsys, "--model", exported["fp32"], "--json", *args)
    assert rc == 1
    objs = {o["path"]: o for o in map(json.loads, out.splitlines())}
    assert len(objs) == 6
    assert "predictions" in objs[str(photos[0])] and "predictions" in objs[str(photos[1])]
    for bad, reason in [(empty, "empty"), (truncated, "truncated"), (text, "not a supported image format"), (missing, "no such file")]:
        assert reason in objs[str(bad)]["error"]
        assert any(line.startswith(f"edge-classify: {bad}: ") for line in err.splitlines())
    assert "Traceback" not in err


def test_directory_and_glob_inputs(exported, format_variants, capsys):
    folder = format_variants["chelsea-bmp.bmp"].parent
    rc, out, _ = run_cli(capsys, "--model", exported["fp32"], "--json", "--batch-size", "5", folder)
    assert rc == 0
    assert len(out.splitlines()) == len([p for p in folder.iterdir() if p.is_file()])
    rc, out, _ = run_cli(capsys, "--model", exported["fp32"], "--json", str(folder / "coffee-*.jp*g"))
    assert rc == 0 and len(out.splitlines()) == 4  # baseline, progressive, 444, gray


def test_missing_model_says_run_export_model(tmp_path, photos, capsys):
    rc, _, err = run_cli(capsys, "--model", tmp_path / "nope.onnx", photos[0])
    assert rc == 3 and "model file not found" in err and "export-model" in err
    assert "Traceback" not in err


def test_model_without_contract_is_explained(tmp_path, photos, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    rc, _, err = run_cli(capsys, "--model", path, photos[0])
    assert rc == 3 and "no edge-classify contract" in err


def test_unavailable_provider_is_an_error_listing_available(exported, photos, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    rc, _, err = run_cli(capsys, "--model", exported["fp32"], "--provider", "cuda", photos[0])
    assert rc == 3 and "not available" in err and "available: cpu" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--top-k", "0", "x.jpg"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--provider", "npu", "x.jpg"])
    assert e.value.code == 2


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_classifying_never_imports_tensorflow(exported, photos):
    code = f"""
import sys
from edge_classify.runtime.apps.classify import main
rc = main(["--model", {str(exported["fp32"])!r}, {str(photos[0])!r}])
heavy = sorted(m for m in ("tensorflow", "keras", "tf2onnx", "onnx", "PIL") if m in sys.modules)
print("RC", rc, "HEAVY", heavy)
"""
    p = _python(code)
    assert p.returncode == 0, p.stderr
    assert "RC 0 HEAVY []" in p.stdout


def test_help_imports_nothing_heavy():
    code = """
import sys
from edge_classify.runtime.apps.classify import main
try:
    main(["--help"])
except SystemExit:
    pass
print("LOADED", sorted(m for m in ("onnxruntime", "cv2", "numpy", "tensorflow") if m in sys.modules))
"""
    p = _python(code)
    assert "LOADED []" in p.stdout, p.stdout + p.stderr


def test_console_script_wiring(exported, photos):
    p = subprocess.run([script("edge-classify"), "--model", str(exported["fp32"]), "-q", str(photos[0])],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 3 and all(LINE.match(x) for x in p.stdout.splitlines())
    assert p.stderr == ""


def test_spinning_knob_reaches_the_session(exported, photos):
    """Spinning is on inside runs and always stopped when a run returns; spinning=False turns it off."""

    def entry(clf, key):
        return clf.runner.session.get_session_options().get_session_config_entry(key)

    on = Classifier(exported["fp32"], EngineOptions(providers="cpu"))
    off = Classifier(exported["fp32"], EngineOptions(providers="cpu", spinning=False))
    assert (entry(on, "session.intra_op.allow_spinning"), entry(off, "session.intra_op.allow_spinning")) == ("1", "0")
    assert entry(on, "session.force_spinning_stop") == entry(off, "session.force_spinning_stop") == "1"
    assert np.array_equal(on.predict(photos[:2]), off.predict(photos[:2]))


def test_arrays_and_bytes_through_api(exported, photos):
    from PIL import Image

    clf = Classifier(exported["fp32"], EngineOptions(providers="cpu"))
    rgb = np.asarray(Image.open(photos[2]).convert("RGB"))
    by_path, by_bytes, by_array = clf.classify([photos[2], photos[2].read_bytes(), rgb], top_k=3)
    assert by_path.predictions == by_bytes.predictions == by_array.predictions


def test_optimised_graph_cache(exported, photos, tmp_path, monkeypatch):
    """Second start loads the cached optimised graph; results are identical; damage heals."""
    import shutil

    from edge_classify.runtime.cache import store

    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    model = tmp_path / "m.onnx"
    shutil.copy(exported["fp32"], model)
    first = Classifier(model, EngineOptions(providers="cpu"))
    assert first.report.cache_status == "stored"
    key = store.entry_key(first.model_sha256, __import__("onnxruntime").__version__, "all")
    cached = store.cache_dir() / f"{key}.onnx"
    assert cached.is_file()
    second = Classifier(model, EngineOptions(providers="cpu"))
    assert second.report.cache_status == "hit" and second.contract == first.contract
    assert np.array_equal(first.predict(photos[:3]), second.predict(photos[:3]))
    cached.write_bytes(b"damaged")
    assert Classifier(model, EngineOptions(providers="cpu")).report.cache_status == "stored"
    monkeypatch.setenv("EDGE_CLASSIFY_NO_CACHE", "1")
    assert Classifier(model, EngineOptions(providers="cpu")).report.cache_status == "off"
    monkeypatch.delenv("EDGE_CLASSIFY_NO_CACHE")
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))  # touched, same bytes
    assert Classifier(model, EngineOptions(providers="cpu")).report.cache_status == "hit"
    assert len(list(cached.parent.glob("*.onnx"))) == 1


def test_warmup_alone_loads_runs_blank_batches_and_exits_zero(tmp_path, capsys, monkeypatch):
    """Build ahead of deployment: `--warmup` without inputs is a complete, successful run; without
    it, no inputs is a usage error. Each warm-up batch size is reported."""
    import tiny_models

    model = tiny_models.make(tmp_path / "m.onnx")
    calls = []
    real = Classifier.warmup
    monkeypatch.setattr(Classifier, "warmup", lambda self, **kw: calls.append(kw) or real(self, **kw))
    rc, out, err = run_cli(capsys, "--model", model, "--warmup", "--batch-size", "4", "--engine", "onnxruntime")
    assert rc == 0 and out == "" and calls == [{"batch_sizes": (1, 4)}]
    assert re.search(r"warm-up: batch 1 in [\d.]+ ms, batch 4 in [\d.]+ ms", err)
    rc, out, err = run_cli(capsys, "--model", model, "--engine", "onnxruntime")
    assert rc == 2 and "no images" in err
    clf = Classifier(model, EngineOptions(providers="cpu"), batch_size=4)
    assert set(clf.warmup()) == {1, 4}
