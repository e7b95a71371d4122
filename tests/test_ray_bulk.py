"""Bulk classification on Ray Data (issue 12): the same results as a local run, bad images as
rows, and exactly one row per image after a kill and a rerun. One local Ray cluster (2 CPUs)
serves the whole module; the command-line runs join it with --ray-address."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import tiny_models
from conftest import script
from edge_classify.runtime import Classifier, EngineOptions
from edge_classify.runtime.apps import ray_bulk

ray = pytest.importorskip("ray")  # the [ray] extra is part of [test]: this runs in CI
pa = pytest.importorskip("pyarrow")  # comes with ray[data]

BAD = {"text.jpg": b"not an image at all", "empty.png": b""}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory, photos) -> list[Path]:
    """210 real-photo crops (JPEG and PNG) plus three bad files: 213 images."""
    import cv2

    d = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    out = []
    for i, photo in enumerate(photos):
        img = cv2.imread(str(photo))
        h, w = img.shape[:2]
        for k in range(10):
            y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            path = d / f"{i:02d}-{k}.{'jpg' if k % 2 else 'png'}"
            cv2.imwrite(str(path), img[y:y + h // 2, x:x + w // 2])
            out.append(path)
    for name, data in BAD.items():
        (d / name).write_bytes(data)
        out.append(d / name)
    jpeg = out[1].read_bytes()
    (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    out.append(d / "truncated.jpg")
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_models.make_conv(tmp_path_factory.mktemp("model") / "conv.onnx")


def _comparable(row: dict) -> dict:
    """A row without its timings, and with only whether it failed: the actors classify a file's
    bytes, whose reasons name them ("empty input") where a path's name the file ("empty file")."""
    return {k: v for k, v in row.items() if k != "timings_ms"} | {"error": "error" in row}


def test_results_equal_a_single_process_run(cluster, archive, model):
    """Each row is the row a one-process run writes (edge-classify --json's), but for its timings."""
    local = Classifier(model, EngineOptions(engine="onnxruntime", providers="cpu"))
    want = {str(p): local.row(r) for p, r in zip(archive, local.classify(archive, top_k=3, errors="collect"))}
    assert len({r["predictions"][0]["index"] for r in want.values() if "error" not in r}) > 1  # the picture matters
    ds = ray_bulk.classify_dataset(ray_bulk.read_images([str(p) for p in archive]), model, top_k=3, threads=1)
    got = {r["path"]: r for r in ray_bulk.batch_rows(pa.Table.from_pylist(ds.take_all()))}
    assert sorted(got) == sorted(want)
    for path, row in got.items():
        assert _comparable(row) == _comparable(want[path]), path
        assert row["model_precision"] == "fp32" and row["compute_precision"] == local.runner.precision
    bad = {Path(p).name: got[p]["error"] for p in got if "error" in got[p]}
    assert set(bad) == set(BAD) | {"truncated.jpg"}  # bad images are rows with their reason


def test_python_api_takes_any_dataset_of_bytes(cluster, archive, model):
    items = [{"path": str(p), "bytes": p.read_bytes()} for p in archive[:20]]
    rows = ray_bulk.classify_dataset(ray.data.from_items(items), model, top_k=1).take_all()
    assert sorted(r["path"] for r in rows) == sorted(i["path"] for i in items)
    assert all(len(r["predictions"]) == 1 for r in rows if r["error"] is None)


def test_actors_fit_the_cpus():
    assert ray_bulk.plan_actors(2, 1, None) == 2
    assert ray_bulk.plan_actors(2, 2, None) == 1
    assert ray_bulk.plan_actors(16, 4, None) == 4
    assert ray_bulk.plan_actors(16, 4, 2) == 2
    assert ray_bulk.plan_actors(2, 1, 8) == 2  # more actors than CPUs would oversubscribe
    assert ray_bulk.plan_actors(1, 4, None) == 1


def test_results_dir_counts_only_whole_parts(tmp_path):
    out = ray_bulk.ResultsDir(tmp_path / "r")
    out.write([{"path": f"/x/{i}.jpg", "model_sha256": "a", "model_precision": "fp32", "compute_precision": "fp32",
                "predictions": [{"rank": 1, "index": i, "wnid": None, "label": "l", "probability": 0.5}]}
               for i in range(3)])
    (tmp_path / "r" / ".part-killed-000009.parquet.tmp").write_bytes(b"half a part")
    again = ray_bulk.ResultsDir(tmp_path / "r")  # a rerun: the killed run's temporary is gone
    assert not list((tmp_path / "r").glob(".*.tmp"))
    assert again.done("a") == {"/x/0.jpg": False, "/x/1.jpg": False, "/x/2.jpg": False} and again.done("b") == {}


def _bulk(*args, **kw):
    return subprocess.Popen([script("edge-classify-bulk"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def test_killed_and_rerun_gives_exactly_one_row_per_image(cluster, archive, model, tmp_path):
    out = tmp_path / "results"
    args = [archive[0].parent, "--out", out, "--model", model, "--ray-address", cluster, "--flush-rows", "10",
            "--batch-size", "4", "-q"]
    first = _bulk(*args)
    deadline = time.monotonic() + 240
    while not list(out.glob("part-*.parquet")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # mid-way: some parts written, the rest not
    first.wait()
    before = ray_bulk.ResultsDir(out).rows()
    assert 0 < len(before) < len(archive), "the kill should land mid-way"
    second = _bulk(*args[:-1])
    _, err = second.communicate(timeout=300)
    assert second.returncode == 1, err  # the bad images failed; their rows say why
    rows = ray_bulk.ResultsDir(out).rows()
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == len(archive)  # none lost, none duplicated
    assert set(paths) == {str(p) for p in archive}
    assert f"{len(set(r['path'] for r in before))} already classified" in err
    assert sum("error" in r for r in rows) == 3


def test_jsonl_results_and_a_missing_file(cluster, archive, model, tmp_path):
    out = tmp_path / "jsonl"
    proc = _bulk(*archive[:5], tmp_path / "nope.jpg", "--out", out, "--model", model, "--format", "jsonl",
                 "--ray-address", cluster)
    _, err = proc.communicate(timeout=300)
    rows = ray_bulk.ResultsDir(out, "jsonl").rows()
    assert proc.returncode == 1 and len(rows) == 6, err
    assert {r["path"]: r.get("error") for r in rows}[str(tmp_path / "nope.jpg")] == "no such file"
    assert "img/s" in err and "actor" in err
    rerun = _bulk(*archive[:5], tmp_path / "nope.jpg", "--out", out, "--model", model, "--format", "jsonl",
                  "--ray-address", cluster)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and "nothing left to classify" in err
    assert "1 of them failed" in err  # the missing file's row is kept, and said
    assert len(ray_bulk.ResultsDir(out, "jsonl").rows()) == 6


def test_usage_errors_exit_2(tmp_path):
    from edge_classify.runtime.apps.bulk import main

    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "--threads", "0"]) == 2
    (tmp_path / "file").write_text("x")
    model = tiny_models.make(tmp_path / "m.onnx")
    assert main([str(tmp_path), "--out", str(tmp_path / "file"), "--model", str(model)]) == 2
    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "none.onnx")]) == 3



@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_name_that_is_not_utf8_is_done_once(tmp_path, fmt):
    """Rows show such a name with U+FFFD and keep its bytes in path_base64; a rerun matches the
    source by those bytes, so it is not classified (or reported missing) again."""
    from edge_classify.runtime.results import Producer

    name = os.fsdecode(b"/x/caf\xe9.jpg")  # Latin-1 bytes, as an old camera card writes them
    out = ray_bulk.ResultsDir(tmp_path / "r", fmt)
    out.write(ray_bulk.failed_rows([name], "no such file", Producer("a", "fp32", "fp32", "onnxruntime", "cpu")))
    (row,) = ray_bulk.ResultsDir(tmp_path / "r", fmt).rows()
    assert row["path"] == "/x/caf\ufffd.jpg" and "path_base64" in row
    assert ray_bulk.ResultsDir(tmp_path / "r", fmt).done("a") == {name: True}


CLUSTER_SHAPE = """
import subprocess, sys
from ray.cluster_utils import Cluster

c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # a head with no CPUs, as clusters keep it
for _ in range(2):
    c.add_node(num_cpus=1)
c.wait_for_nodes()
try:
    r = subprocess.run(sys.argv[1:] + ["--ray-address", c.address], timeout=240)
    sys.exit(r.returncode)
except subprocess.TimeoutExpired:
    sys.exit("the job hung (240 s)")
finally:
    c.shutdown()
"""


def test_a_cpu_less_head_and_one_cpu_workers(archive, model, tmp_path):
    """Each worker's actor holds 0.95 of its one CPU; reads asking 0.1 found 0.05 per node and
    the job waited forever at 0% CPU. Reads now fit beside the actors on any node shape."""
    import sys

    images = [p for p in archive if p.name not in BAD][:24]
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", CLUSTER_SHAPE, script("edge-classify-bulk"), *map(str, images),
                        "--out", str(out), "-m", str(model), "-q"], capture_output=True, text=True, timeout=420)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = ray_bulk.ResultsDir(out).rows()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in images)
    assert all("predictions" in r for r in rows)
