"""Bulk classification on Ray Data (issue 12): the same results as a local run, bad images as
rows, and exactly one row per image after a kill and a rerun. One local Ray cluster (2 CPUs)
serves the whole module; the command-line runs join it with --ray-address."""

from __future__ import annotations

import importlib.util
import json
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
from edge_classify.runtime.errors import EdgeClassifyError

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
    """A row without its timings and node, and with only whether it failed: the actors classify
    a file's bytes, whose reasons name them ("empty input") where a path's name the file ("empty file")."""
    return {k: v for k, v in row.items() if k not in ("timings_ms", "host", "node_id")} | {"error": "error" in row}


ENGINES = ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed"))]


@pytest.mark.parametrize("engine", ENGINES)
def test_results_equal_a_single_process_run(cluster, archive, model, engine):
    """Each row is the row a one-process run with the same engine options writes (edge-classify
    --json's), but for its timings, and it names the node that computed it."""
    options = EngineOptions(engine=engine, threads=1)
    local = Classifier(model, options)
    want = {str(p): local.row(r) for p, r in zip(archive, local.classify(archive, top_k=3, errors="collect"))}
    assert len({r["predictions"][0]["index"] for r in want.values() if "error" not in r}) > 1  # the picture matters
    ds = ray_bulk.classify_dataset(ray_bulk.read_images([str(p) for p in archive]), model, top_k=3, threads=1,
                                   options=options)
    got = {r["path"]: r for r in ray_bulk.batch_rows(pa.Table.from_pylist(ds.take_all()))}
    assert sorted(got) == sorted(want)
    node = ray.get_runtime_context().get_node_id()
    for path, row in got.items():
        assert _comparable(row) == _comparable(want[path]), path
        assert row["engine"] == engine and row["compute_precision"] == local.runner.precision
        assert row["node_id"] == node and row["host"]
    bad = {Path(p).name: got[p]["error"] for p in got if "error" in got[p]}
    assert set(bad) == set(BAD) | {"truncated.jpg"}  # bad images are rows with their reason


def test_python_api_takes_any_dataset_of_bytes(cluster, archive, model):
    items = [{"path": str(p), "bytes": p.read_bytes()} for p in archive[:20]]
    rows = ray_bulk.classify_dataset(ray.data.from_items(items), model.read_bytes(), top_k=1).take_all()
    assert sorted(r["path"] for r in rows) == sorted(i["path"] for i in items)
    assert all(len(r["predictions"]) == 1 for r in rows if r["error"] is None)


def test_default_settings_give_edge_classify_s_rows(cluster, archive, model, tmp_path):
    """The same folder through `edge-classify -o` and `edge-classify-bulk`, both with default
    settings: the same engine policy, so the same rows. (A run this small goes to ONNX
    Runtime in both; a measured choice is per thread count, and rows say which engine ran.)"""
    folder = tmp_path / "few"
    folder.mkdir()
    for p in archive[:12]:
        (folder / p.name).write_bytes(p.read_bytes())
    one = subprocess.run([script("edge-classify"), str(folder), "-m", str(model), "-o", str(tmp_path / "one.jsonl"),
                          "-q"], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    want = {r["path"]: r for r in map(json.loads, (tmp_path / "one.jsonl").read_text().splitlines())}
    bulk = subprocess.run([script("edge-classify-bulk"), str(folder), "--out", str(tmp_path / "bulk"), "-m",
                           str(model), "--ray-address", cluster, "-q"], capture_output=True, text=True, timeout=300)
    assert bulk.returncode == 0, bulk.stderr
    got = {r["path"]: r for r in ray_bulk.ResultsDir(tmp_path / "bulk").rows()}
    assert sorted(got) == sorted(want) and len(got) == 12
    for path, row in got.items():
        assert row["predictions"] == want[path]["predictions"], path
        assert (row["engine"], row["provider"], row["compute_precision"], row["decode"]) == (
            want[path]["engine"], want[path]["provider"], want[path]["compute_precision"], want[path]["decode"])


def test_the_decoder_flags_reach_the_actors(cluster, archive, model, tmp_path):
    """--decode fast: the crops' JPEGs (4x the model's 64 px or more) decode at reduced scale on
    the actors, as a Classifier with the same options decodes them; PNGs stay exact."""
    from edge_classify.runtime.images.preprocess import DecodeOptions

    images = [p for p in archive if p.name not in BAD][:16]
    local = Classifier(model, EngineOptions(engine="onnxruntime", threads=1), decode=DecodeOptions(decode="fast"))
    want = {str(p): local.row(r) for p, r in zip(images, local.classify(images, top_k=3))}
    proc = _bulk(*images, "--out", tmp_path / "o", "--model", model, "--ray-address", cluster, "--engine",
                 "onnxruntime", "--decode", "fast", "-q")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    got = {r["path"]: r for r in ray_bulk.ResultsDir(tmp_path / "o").rows()}
    assert sorted(got) == sorted(want)
    assert {r["decode"] for p, r in got.items() if p.endswith(".png")} == {"exact"}
    assert all(r["decode"].startswith("fast 1/") for p, r in got.items() if p.endswith(".jpg"))
    for path, row in got.items():
        assert (row["decode"], row["predictions"]) == (want[path]["decode"], want[path]["predictions"]), path


def test_an_engine_that_is_not_installed_is_refused_before_ray_starts(tmp_path, monkeypatch, capsys):
    from edge_classify.runtime.apps.bulk import main
    from edge_classify.runtime.host import facts

    monkeypatch.setattr(facts, "installed_engines", lambda: ["onnxruntime"])
    model = tiny_models.make(tmp_path / "m.onnx")
    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "-m", str(model), "--engine", "openvino"]) == 3
    err = capsys.readouterr().err
    assert "openvino" in err.lower() and "install" in err.lower(), err


def test_actors_are_planned_node_by_node():
    plan = ray_bulk.plan_actors
    assert plan([{"CPU": 2}], 1).actors == 2
    assert plan([{"CPU": 2}], 2).actors == 1
    assert plan([{"CPU": 16}], 4).actors == 4 and plan([{"CPU": 16}], 4, 2).actors == 2
    assert plan([{"CPU": 2}], 1, 8).actors == 2  # more actors than CPUs would oversubscribe
    # A head without CPUs and two 1-CPU workers: one actor each, and room beside it for reads.
    p = plan([{"CPU": 0}, {"CPU": 1}, {"CPU": 1}], 1)
    assert p.actors == 2 and p.num_gpus == 0 and 1 - p.num_cpus >= ray_bulk.READ_CPUS * 5
    # Three CPUs in total, but no node with two: an actor of 2 threads fits on one node only.
    assert plan([{"CPU": 1}, {"CPU": 2}], 2).actors == 1
    with pytest.raises(EdgeClassifyError, match="no node of this cluster has 4 CPU"):
        plan([{"CPU": 2}, {"CPU": 2}], 4)


def test_reads_come_in_blocks_sized_by_files_and_bytes():
    blocks = ray_bulk.read_blocks
    assert blocks([50_000] * 1024, actors=2) == 8  # 128 files a task (Ray's default: two or three)
    assert blocks([50_000] * 10, actors=2) == 4  # still two per actor, to keep each one fed
    assert blocks([50_000] * 3, actors=4) == 3  # never more tasks than files
    assert blocks([6 << 20] * 512, actors=2) == 48  # camera photos: ~64 MiB a task, not 64 photos
    assert blocks([], actors=2) == 1


def test_gpu_actors_hold_a_gpu_each_where_the_options_allow_them():
    plan, gpu_ok = ray_bulk.plan_actors, ray_bulk.gpu_allowed
    nodes = [{"CPU": 0}, {"CPU": 8, "GPU": 1}, {"CPU": 8, "GPU": 2}]
    p = plan(nodes, 2, None, gpu=True)
    assert (p.actors, p.num_gpus) == (3, 1.0)  # one per GPU
    p = plan(nodes, 2, 6, gpu=True)
    assert (p.actors, p.num_gpus) == (6, 0.5)  # a share of a GPU each, a share that packs whole
    assert plan(nodes, 2, 5, gpu=True).num_gpus == 0.5
    assert plan(nodes, 2, None, gpu=False).num_gpus == 0 and plan(nodes, 2, None, gpu=False).actors == 8
    with pytest.raises(EdgeClassifyError, match="--threads 2"):  # its GPUs, but not the CPUs an actor asks for
        plan([{"CPU": 1, "GPU": 4}], 2, None, gpu=True)
    assert gpu_ok(EngineOptions()) and gpu_ok(EngineOptions(providers="tensorrt"))
    assert not gpu_ok(EngineOptions(providers="cpu")) and not gpu_ok(EngineOptions(engine="openvino"))
    assert not gpu_ok(EngineOptions(device="GPU"))  # OpenVINO's GPU is not a CUDA one


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
    """kill -9 mid-way, run again: none lost, none twice. The archive's 213 files plus 1,800 small
    JPEGs, so that the job's 16 read blocks come back one after another and the kill lands between
    parts (213 files in the 2 blocks one actor gets could both be back before the first part was seen)."""
    import shutil

    import cv2

    folder = tmp_path / "many"
    folder.mkdir()
    for p in archive:
        shutil.copy(p, folder / p.name)
    rng = np.random.default_rng(1)
    crops = [cv2.imread(str(p)) for p in archive if p.suffix == ".png"][:20]
    for i in range(1800):
        img = crops[i % len(crops)]
        y, x = int(rng.integers(0, img.shape[0] - 64)), int(rng.integers(0, img.shape[1] - 64))
        cv2.imwrite(str(folder / f"small-{i:04d}.jpg"), img[y:y + 64, x:x + 64])
    images = sorted(folder.iterdir())
    out = tmp_path / "results"
    args = [folder, "--out", out, "--model", model, "--ray-address", cluster, "--flush-rows", "10", "--actors", "1",
            "-q"]
    first = _bulk(*args)
    deadline = time.monotonic() + 240
    while not list(out.glob("part-*.parquet")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(first.pid, signal.SIGKILL)  # mid-way: some parts written, the rest not
    first.wait()
    before = ray_bulk.ResultsDir(out).rows()
    assert 0 < len(before) < len(images), "the kill should land mid-way"
    second = _bulk(*args[:-1])
    _, err = second.communicate(timeout=300)
    assert second.returncode == 1, err  # the bad images failed; their rows say why
    rows = ray_bulk.ResultsDir(out).rows()
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == len(images)  # none lost, none duplicated
    assert set(paths) == {str(p) for p in images}
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

    for flag in ("--threads", "--actors", "--batch-size", "--top-k", "--flush-rows"):
        with pytest.raises(SystemExit) as exit_:
            main([str(tmp_path), "--out", str(tmp_path / "o"), flag, "0"])
        assert exit_.value.code == 2
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
import json, os, signal, subprocess, sys, time
from pathlib import Path
from ray.cluster_utils import Cluster

bulk, out = json.loads(sys.argv[1]), Path(sys.argv[2])
c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # a head with no CPUs, as clusters keep it
for _ in range(2):
    c.add_node(num_cpus=1)
c.wait_for_nodes()
try:
    # Killed once it has written its first part, then run again to finish: the test counts the rows.
    first = subprocess.Popen(bulk + ["--ray-address", c.address], start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("part-*")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if first.poll() is not None:
        sys.exit(f"the first run ended before it was killed (exit {first.returncode})")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    print(json.dumps({"parts_when_killed": len(list(out.glob("part-*")))}), flush=True)
    second = subprocess.run(bulk + ["--ray-address", c.address], timeout=240)
    sys.exit(second.returncode)
except subprocess.TimeoutExpired:
    sys.exit("the job hung (240 s)")
finally:
    c.shutdown()
"""


def test_a_cpu_less_head_and_one_cpu_workers(archive, model, tmp_path):
    """A real cluster shape beyond one raylet: a head without CPUs and two worker nodes of one
    CPU. Each worker's actor holds 0.95 of its CPU; reads asking 0.1 found 0.05 per node and the
    job waited forever at 0% CPU. Now the job spreads over both nodes, and a run killed mid-way
    and run again leaves exactly one row per image."""
    import sys

    images = [p for p in archive if p.name not in BAD][:120]
    out = tmp_path / "out"
    bulk = [script("edge-classify-bulk"), *map(str, images), "--out", str(out), "-m", str(model), "-q",
            "--engine", "onnxruntime", "--batch-size", "2", "--flush-rows", "8"]
    r = subprocess.run([sys.executable, "-c", CLUSTER_SHAPE, json.dumps(bulk), str(out)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = ray_bulk.ResultsDir(out).rows()
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) == len(images)  # none lost, none twice
    assert set(paths) == {str(p) for p in images} and all("predictions" in row for row in rows)
    assert json.loads(r.stdout.splitlines()[0])["parts_when_killed"] < len(images) / 8  # killed mid-way
    workers = {row["node_id"] for row in rows}
    assert len(workers) == 2, workers  # both worker nodes classified (the head has no CPU for an actor)


def test_the_watchdog_names_the_unmet_demand_and_the_free_resources():
    from types import SimpleNamespace as NS

    def node(node_id, total, free):
        return NS(node_id=node_id, ip_address="10.0.0.1", total_resources=lambda: total,
                  available_resources=lambda: free)

    def status(*bundles):
        demands = [NS(bundles_by_count=[NS(bundle=b, count=n) for b, n in bundles])]
        return NS(active_nodes=[node("a" * 56, {"CPU": 1.0}, {"CPU": 0.05}), node("b" * 56, {"CPU": 1.0}, {"CPU": 0.05})],
                  idle_nodes=[node("c" * 56, {}, {})], resource_demands=NS(ray_task_actor_demand=demands))

    now = [0.0]
    stuck = ray_bulk.Watchdog(60, status=lambda: status(({"CPU": 0.1}, 5)), clock=lambda: now[0])
    assert stuck.check() is None  # not for a while yet
    now[0] = 61
    why = stuck.check()
    assert "no results for 61 s" in why and "{'CPU': 0.1} x 5" in why and "0.05/1 CPU" in why, why
    stuck.progress()
    assert stuck.check() is None  # rows came: the clock starts again
    now[0] = 200
    queued = ray_bulk.Watchdog(60, status=lambda: status(({"CPU": 0.01}, 3)), clock=lambda: now[0])
    assert queued.check() is None  # it fits beside the actors: only queued, a slow job goes on
    assert ray_bulk.Watchdog(60, status=lambda: status(), clock=lambda: now[0]).check() is None


def test_a_job_the_cluster_cannot_schedule_stops_with_75(cluster, archive, model, tmp_path):
    """Another job holds every CPU of the cluster: the actors can never start. No rows, and
    demands no node can meet: a clear error and exit 75, not a silent wait."""

    @ray.remote(num_cpus=2)
    class Hold:
        def ping(self):
            return 1

    hold = Hold.remote()
    ray.get(hold.ping.remote())
    proc = _bulk(*archive[:10], "--out", tmp_path / "o", "--model", model, "--ray-address", cluster,
                 "--stall-timeout", "3", "-q")
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # never left running into the next test (or the cluster's shutdown)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        ray.kill(hold)
    assert proc.returncode == 75, err
    assert "stalled" in err and "cannot schedule" in err and "'CPU': 0.95" in err and "0/2 CPU" in err, err


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
def test_an_actor_that_cannot_load_the_model_stops_the_job_with_3(cluster, archive, model, tmp_path):
    """The driver cannot know every node's devices: an actor whose load fails on its node (here
    an OpenVINO device this machine lacks) ends the job with the loader's message and exit 3,
    not an internal-error report."""
    proc = _bulk(*archive[:6], "--out", tmp_path / "o", "--model", model, "--ray-address", cluster,
                 "--device", "NPU", "-q")
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 3, err
    assert "could not load the model on its node" in err and "NPU" in err and "internal error" not in err, err
