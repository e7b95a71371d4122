"""export-model end to end: random-weights smoke path, offline failure, nothing partial left."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import script
from edge_classify.export import cli as export_cli
from edge_classify.export import convert, keras_model
from edge_classify.runtime.apps.classify import main as classify_main

LINE = re.compile(r"^[123]\. \S+: \d+\.\d\d%$")


def run(cmd, cwd, **env):
    cmd = [script(cmd[0]), *cmd[1:]]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env={**os.environ, **env})


def test_random_weights_export_then_classify(tmp_path, photos):
    """The acceptance path: export-model --weights random -o m.onnx && edge-classify --model m.onnx IMG."""
    p = run(["export-model", "--weights", "random", "-o", "m.onnx"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "m.onnx").is_file()
    assert not list(tmp_path.glob(".*partial"))
    for stage in ("build model", "convert to ONNX", "verify against Keras", "write"):
        assert stage in p.stderr  # progress through the stages, with timings
    assert "done in" in p.stderr
    assert "m.onnx" in p.stdout and "fp32" in p.stdout and "max|dp|" in p.stdout

    c = run(["edge-classify", "--model", "m.onnx", str(photos[0])], tmp_path)
    assert c.returncode == 0, c.stderr
    lines = c.stdout.splitlines()
    assert len(lines) == 3 and all(LINE.match(x) for x in lines), c.stdout
    assert "--weights random" in c.stderr  # one-line warning for smoke-test models


def _offline_env(tmp_path) -> dict:
    # An empty Keras cache and a proxy that refuses connections: "no network", fast,
    # whether or not the machine running the tests is online.
    return {"KERAS_HOME": str(tmp_path / "keras-home"), "https_proxy": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


def test_offline_imagenet_fails_fast_and_clearly(tmp_path):
    t0 = time.monotonic()
    p = run(["export-model", "-o", "m.onnx"], tmp_path, **_offline_env(tmp_path))
    elapsed = time.monotonic() - t0
    assert p.returncode == 3
    assert "cannot download the ImageNet weights" in p.stderr
    assert "--weights PATH" in p.stderr and "--weights random" in p.stderr
    assert "Traceback" not in p.stderr
    assert not any(tmp_path.glob("*.onnx")) and not any(tmp_path.glob(".*partial"))
    print(f"offline failure after {elapsed:.2f} s")  # reported, not asserted (machines vary)


def test_bad_weights_path(tmp_path, capsys):
    rc = export_cli.main(["--weights", str(tmp_path / "nope.h5"), "-o", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 3 and "weights file not found" in err
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    rc = export_cli.main(["--weights", str(junk), "-o", str(tmp_path / "m.onnx"), "-q"])
    err = capsys.readouterr().err
    assert rc == 3 and "cannot load weights" in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def _tiny_imagenet_model(seed: int):
    """A small 1000-class Keras model standing in for ResNet in pipeline-plumbing tests."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(4, 7, strides=8, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(1000, activation="softmax")(keras.layers.Dense(32)(x)))


def test_parity_failure_writes_nothing(tmp_path, monkeypatch, capsys):
    """A converter that produces the wrong model must fail export and leave no file."""
    reference, wrong = _tiny_imagenet_model(1), _tiny_imagenet_model(2)
    real_convert = convert.keras_to_onnx
    monkeypatch.setattr(keras_model, "build", lambda arch, weights: reference)
    monkeypatch.setattr(convert, "keras_to_onnx", lambda model, *a, **k: real_convert(wrong, *a, **k))
    out = tmp_path / "m.onnx"
    rc = export_cli.main(["--weights", "random", "-o", str(out), "--fp16"])
    err = capsys.readouterr().err
    assert rc == 4 and "disagrees with Keras" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_default_location_round_trip(tmp_path, monkeypatch, photos, capsys):
    """With no -o, export writes where edge-classify looks by default (EDGE_CLASSIFY_HOME)."""
    monkeypatch.setattr(keras_model, "build", lambda arch, weights: _tiny_imagenet_model(3))
    monkeypatch.setenv("EDGE_CLASSIFY_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert export_cli.main(["--weights", "random", "-q"]) == 0
    assert (tmp_path / "home" / "model.onnx").is_file()
    capsys.readouterr()
    monkeypatch.chdir(photos[0].parent)
    assert classify_main([photos[0].name]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all(LINE.match(x) for x in out)


def test_atomic_write_interrupted_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous model")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert.atomic_write(target, b"x" * 1_000_000)
    assert target.read_bytes() == b"previous model"  # old file intact, no partial one
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_help_is_instant_and_has_examples():
    p = subprocess.run([sys.executable, "-c", "import sys; from edge_classify.export.cli import main\n"
                        "try: main(['--help'])\nexcept SystemExit: pass\n"
                        "print('TF' if 'tensorflow' in sys.modules else 'NO-TF')"],
                       capture_output=True, text=True, timeout=120)
    assert "examples:" in p.stdout and "--weights random" in p.stdout
    assert p.stdout.strip().endswith("NO-TF")


def test_usage_errors(capsys):
    for argv in (["--static-batch", "0"], ["--seed", "3"], ["--arch", "alexnet"]):
        with pytest.raises(SystemExit) as e:
            export_cli.main(argv)
        assert e.value.code == 2


def test_missing_verify_image_and_failed_conversion(tmp_path, monkeypatch, capsys):
    rc = export_cli.main(["--weights", "random", "-o", str(tmp_path / "m.onnx"), "--verify-images", str(tmp_path / "x.jpg")])
    assert rc == 2 and "verification image(s) not found" in capsys.readouterr().err

    def broken(*a, **k):
        raise ValueError("Opset 3 is not supported")

    monkeypatch.setattr(keras_model, "build", lambda arch, weights: _tiny_imagenet_model(4))
    monkeypatch.setattr(convert, "keras_to_onnx", broken)
    rc = export_cli.main(["--weights", "random", "-o", str(tmp_path / "m.onnx"), "-q", "--opset", "3"])
    err = capsys.readouterr().err
    assert rc == 3 and "ONNX conversion failed: Opset 3" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_internal_error_exits_70_not_3_or_4(tmp_path, monkeypatch, capsys):
    from edge_classify.export import pipeline

    def boom(*a, **k):
        raise KeyError("simulated bug")

    monkeypatch.setattr(pipeline, "export_model", boom)
    rc = export_cli.main(["--weights", "random", "-o", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 70 and "internal error: KeyError" in err and "Traceback" not in err
    saved = Path(err.split("the traceback is in ")[1].split(":")[0])
    assert "simulated bug" in saved.read_text()
    saved.unlink()
