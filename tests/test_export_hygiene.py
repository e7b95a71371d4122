"""Export cleans up after its own earlier deaths: PID-named temporaries, and the sweep
that removes those whose writer is gone (partials.sweep_stale)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edge_classify.export import convert, partials, quantize
from edge_classify.runtime.model.contract import PreprocessSpec

DAY = 24 * 3600


def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    for _ in range(5):
        p = subprocess.Popen([sys.executable, "-c", "pass"])
        p.wait()
        try:
            os.kill(p.pid, 0)
        except ProcessLookupError:
            return p.pid
    pytest.skip("could not find a dead PID (all reused at once?)")


def age(path: Path, seconds: float) -> Path:
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)
    return path


def touch(path: Path, data: bytes = b"partial model") -> Path:
    path.write_bytes(data)
    return path


def test_sweep_removes_dead_writers_leftovers_and_nothing_else(tmp_path, monkeypatch):
    dead, me = dead_pid(), os.getpid()
    out = tmp_path / "out"
    out.mkdir()
    model = touch(out / "m.onnx", b"finished model")
    stale = touch(out / f".m.onnx.{dead}.k2x9_q7a.partial")
    stale_variant = touch(out / f".m.fp16.onnx.{dead}.0abcdefg.partial")
    live = touch(out / f".m.onnx.{me}.abcdefgh.partial")
    reused = age(touch(out / f".m.onnx.{me}.zzzzzzzz.partial"), DAY + 60)  # PID alive again: age decides
    legacy_old = age(touch(out / ".m.onnx.ab12cd34.partial"), 2 * 3600)  # pre-PID name, 2 h old
    legacy_new = touch(out / ".m.onnx.ef56gh78.partial")  # pre-PID name, maybe being written now
    unrelated = [touch(out / ".m.onnx.notes"), touch(out / "other.partial"),
                 touch(out / f"m.onnx.{dead}.abcdefgh.partial"),  # no leading dot: not ours
                 age(touch(out / ".m.txt.ab12cd34.partial"), 2 * 3600)]  # pre-PID, not an .onnx
    outside = touch(tmp_path / "precious.onnx", b"keep me")
    link = out / f".m.onnx.{dead}.linklink.partial"
    link.symlink_to(outside)

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    stale_dir = tmp / f"edge-int8-{dead}-a1b2c3d4"
    (stale_dir / "sub").mkdir(parents=True)
    touch(stale_dir / "fp32.onnx")
    touch(stale_dir / "sub" / "int8.onnx")
    live_dir = tmp / f"edge-int8-{me}-e5f6g7h8"
    live_dir.mkdir()
    touch(live_dir / "fp32.onnx")
    legacy_dir = tmp / "edge-int8-q1w2e3r4"  # pre-PID name, 2 h old
    legacy_dir.mkdir()
    age(legacy_dir, 2 * 3600)
    outside_dir = tmp_path / "precious-dir"
    outside_dir.mkdir()
    touch(outside_dir / "keep.onnx")
    dir_link = tmp / f"edge-int8-{dead}-linklink"
    dir_link.symlink_to(outside_dir, target_is_directory=True)
    other_dir = tmp / "edge-int8-notes"
    other_dir.mkdir()

    removed = set(partials.sweep_stale(out)) | set(partials.sweep_stale())  # default: the temp dir

    assert removed == {stale, stale_variant, reused, legacy_old, stale_dir, legacy_dir}
    for p in removed:
        assert not os.path.lexists(p)
    for p in [model, live, legacy_new, *unrelated, live_dir, other_dir]:
        assert p.exists(), p
    assert link.is_symlink() and outside.read_bytes() == b"keep me"  # symlinks: not followed, not removed
    assert dir_link.is_symlink() and (outside_dir / "keep.onnx").is_file()
    assert model.read_bytes() == b"finished model"


def test_sweep_never_fails(tmp_path, monkeypatch):
    assert partials.sweep_stale(tmp_path / "missing") == []
    dead = dead_pid()
    stale_dir = tmp_path / f"edge-int8-{dead}-a1b2c3d4"
    stale_dir.mkdir()

    def refuse(*a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(partials.shutil, "rmtree", refuse)
    monkeypatch.setattr(partials.os, "unlink", refuse)
    touch(tmp_path / f".m.onnx.{dead}.abcdefgh.partial")
    assert partials.sweep_stale(tmp_path) == []  # nothing removed, nothing raised


def test_atomic_write_uses_pid_names_and_sweeps_its_folder(tmp_path, monkeypatch):
    stale = touch(tmp_path / f".m.onnx.{dead_pid()}.abcdefgh.partial")
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(Path(src).name)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    convert.atomic_write(tmp_path / "m.onnx", b"model")
    assert not stale.exists()
    assert len(seen) == 1 and seen[0].startswith(f".m.onnx.{os.getpid()}.") and seen[0].endswith(".partial")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_int8_work_folder_carries_pid(tmp_path, monkeypatch):
    prefixes = []

    class Stop(Exception):
        pass

    def temporary_directory(*a, prefix=None, **k):
        prefixes.append(prefix)
        raise Stop

    monkeypatch.setattr(tempfile, "TemporaryDirectory", temporary_directory)
    with pytest.raises(Stop):
        quantize.onnx_to_int8(b"", [], PreprocessSpec.keras("caffe", (224, 224)))
    assert prefixes == [f"edge-int8-{os.getpid()}-"]
    assert partials._PATTERNS[2][0].match(prefixes[0] + "abcd_123")


def test_quantizers_own_temporaries_nest_in_the_int8_folder(tmp_path, monkeypatch):
    """ONNX Runtime's ort.quant.* folder (~100 MB) lands inside ours, so the sweep covers it."""
    import onnxruntime.quantization as ortq

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = {}

    def fake_quantize_static(src, dst, reader, **kw):
        seen["tmp"] = tempfile.gettempdir()
        Path(dst).write_bytes(b"int8 model")

    monkeypatch.setattr(ortq, "quantize_static", fake_quantize_static)
    got = quantize.onnx_to_int8(b"fp32 model", [], PreprocessSpec.keras("caffe", (224, 224)))
    assert got == b"int8 model"
    assert Path(seen["tmp"]).parent == tmp_path and Path(seen["tmp"]).name.startswith(f"edge-int8-{os.getpid()}-")
    assert tempfile.gettempdir() == str(tmp_path)  # restored
    assert list(tmp_path.iterdir()) == []  # and the folder removed on the way out


@pytest.mark.slow
def test_kill_9_during_write_leaves_a_partial_that_the_sweep_removes(tmp_path):
    """The real thing: SIGKILL export-model while it writes, then sweep."""
    exe = Path(sys.executable).parent / "export-model"
    assert exe.is_file(), f"console script not installed beside {sys.executable}"
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(exe), "--weights", "random", "-q", "-o", str(out / "m.onnx")], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    partial = None
    try:
        deadline = time.monotonic() + 240
        while partial is None and proc.poll() is None and time.monotonic() < deadline:
            partial = next((e.name for e in os.scandir(out) if e.name.endswith(".partial")), None)
            if partial is None:
                time.sleep(0.002)  # the write stage lasts ~200 ms here
        if partial is not None:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None and partial is None:
            proc.kill()
        proc.wait(timeout=60)
    err = log.read_text(errors="replace")
    assert partial is not None, f"export-model ended (rc {proc.returncode}) before a partial was seen: {err[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    names = [p.name for p in out.iterdir()]
    assert partial in names and partial.startswith(f".m.onnx.{proc.pid}.")  # kill -9 ran no cleanup
    assert "m.onnx" not in names  # never a half-written model at the real path

    removed = partials.sweep_stale(out)  # what the next export-model does first
    assert [p.name for p in removed] == [partial]
    assert list(out.iterdir()) == []
