"""Bulk classification on Ray Data: the same runtime, bit-exact preprocessing, any number of machines.

* **Reading**: ``ray.data.read_binary_files(..., include_paths=True)``: the encoded bytes
  travel, and each worker decodes them with the runtime's own safe decoder and contract
  preprocessing (Ray's ``read_images`` decodes with PIL, which is not the contract).
* **Inference**: ``ClassifyBatch``, a class-based ``map_batches`` UDF holding one
  ``Classifier`` per actor, loaded by path through the runtime's loader on the actor's node:
  the same engine policy as ``edge-classify`` (``auto`` measured per kind of node and
  remembered there; GPU providers where the node's are usable). ``plan_actors`` plans the
  actors node by node: each gets ``threads`` intra-op and decoding threads and asks Ray for a
  little less than that many CPUs (``ACTOR_CPU_SHARE``), so actors never oversubscribe cores
  (ONNX Runtime would otherwise take every core per session); GPU actors hold a GPU each. The
  read tasks ask for ``READ_CPUS``, which must fit in what an actor leaves on its node: with
  whole CPUs, actors holding every CPU of a 2-core machine starved the read task forever (seen
  with Ray 2.60); with reads of 0.1 CPU, a cluster of 1-CPU workers (0.05 left beside each
  actor) and a CPU-less head hung the same way. Reads come in ``read_blocks`` tasks.
* **Never a silent hang**: ``Watchdog`` follows the rows; none for a while, with demands no
  node can meet (``unmet_demands``), and the job stops naming them.
* **Results**: one row per image, the row every output writes (results.py: path, model and
  engine, predictions, timings, or ``error``: a bad image is a row with its reason, never a
  failed job), in Parquet with one fixed schema (``PARQUET_SCHEMA``), or JSON Lines.
* **Resumable, exactly once**: ``ResultsDir`` writes the rows in part files, each renamed
  into place only when complete, so a killed job leaves whole parts or nothing. A rerun
  reads the parts, skips every path already classified by the same model (same sha256) and
  classifies the rest: each image ends with exactly one row.

Ray is imported only here and only when used (the ``[ray]`` extra); nothing imports TensorFlow.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from ..engines.options import EngineOptions
from ..errors import EXIT_USAGE, EdgeClassifyError
from ..host.deps import ray  # imported on use: the [ray] extra
from ..images.preprocess import DEFAULT_DECODE, DecodeOptions
from ..results import Classification, Producer, row

ACTOR_CPU_SHARE = 0.95  # of each thread's CPU, reserved by an actor
READ_CPUS = 0.01  # per read task: reading files is I/O; 5 fit beside a 1-CPU node's actor
FORMATS = ("parquet", "jsonl")


def parquet_schema():
    """The row (results.py) as Parquet columns: one schema for every part, whatever its rows hold."""
    import pyarrow as pa

    def struct(**fields):
        return pa.struct(list(fields.items()))

    s, f64, i32 = pa.string(), pa.float64(), pa.int32()
    return pa.schema([
        ("path", s), ("path_base64", s), ("model_sha256", s), ("model_precision", s), ("compute_precision", s),
        ("engine", s), ("provider", s), ("host", s), ("node_id", s), ("error", s),
        ("predictions", pa.list_(struct(rank=i32, index=i32, wnid=s, label=s, probability=f64))),
        ("threshold", f64), ("labels_above_threshold", pa.list_(struct(index=i32, label=s, probability=f64))),
        ("scores", pa.map_(s, f64)),
        ("timings_ms", struct(decode=f64, normalize=f64, inference=f64, batch=i32)), ("decode", s),
        ("notes", pa.list_(s)),
    ])


class ClassifyBatch:
    """``map_batches`` UDF: one Classifier per actor, loaded through the runtime's loader on the
    actor's node, so ``--engine auto`` is measured there (once per kind of node, remembered in
    that node's cache) and GPU providers are used where that node's are usable. A batch of
    ``{"path", "bytes"}`` in, result rows out, each naming the node that computed it."""

    def __init__(self, model: bytes, model_path: str | None = None, options: EngineOptions | None = None,
                 top_k: int = 3, batch_size: int = 8, threads: int = 1, decode: DecodeOptions = DEFAULT_DECODE):
        import socket

        from ..classifier import Classifier

        options = options or EngineOptions(threads=threads, spinning=False)
        path = node_model(model, model_path)
        self.clf = Classifier(path, options, batch_size=batch_size, decode=decode,
                              decode_threads=options.threads or threads)  # this actor's cores only
        self.top_k = top_k
        self.node = {"host": socket.gethostname(), "node_id": _node_id()}

    def __call__(self, batch: dict):
        import pyarrow as pa

        results = self.clf.classify(list(batch["bytes"]), top_k=self.top_k, errors="collect")
        rows = [self.clf.row(_named(res, str(p)), **self.node) for p, res in zip(batch["path"], results)]
        return pa.Table.from_pylist(rows, schema=parquet_schema())


def node_model(data: bytes, path: str | None) -> str:
    """A path to the model on this node, for the loader (which caches and measures per file,
    not per byte string): the driver's path when this node sees the same file there, else a
    copy in this node's edge-classify home, named by its sha256 and written once."""
    import hashlib

    from ..cache.paths import home
    from ..cache.store import sha256_fd

    digest = hashlib.sha256(data).hexdigest()
    if path and os.path.isfile(path) and os.path.getsize(path) == len(data):
        fd = os.open(path, os.O_RDONLY)
        try:
            if sha256_fd(fd) == digest:  # read in chunks, not a second copy of the model in memory
                return path
        finally:
            os.close(fd)
    copy = home() / "bulk-models" / f"{digest}.onnx"
    if not (copy.is_file() and copy.stat().st_size == len(data)):
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, copy)  # several actors of one node may race: each writes whole, one wins
    return str(copy)


def _node_id() -> str | None:
    r = ray()
    # Outside Ray (the UDF called directly) there is no node; asking would start a Ray instance.
    return r.get_runtime_context().get_node_id() if r.is_initialized() else None


def _named(result: Classification, path: str) -> Classification:
    """The result under its file's path (the actor classified its bytes)."""
    result.source = path
    return result


def batch_rows(table) -> list[dict]:
    """The rows of a pyarrow table of rows (a batch of ``classify_dataset``, a part file) as
    ``edge-classify --json`` writes them: absent fields left out, ``scores`` a dict again
    (Arrow reads a map back as key-value pairs)."""
    out = []
    for r in table.to_pylist():
        r = {k: v for k, v in r.items() if v is not None}
        if "scores" in r:
            r["scores"] = dict(r["scores"])
        out.append(r)
    return out


def failed_rows(paths: list[str], reason: str, producer: Producer) -> list[dict]:
    """Rows for images that never reached an actor (a missing file): the reason in ``error``, and
    no engine fields (the producer's None ones are left out)."""
    return [{k: v for k, v in row(Classification(p, error=reason), producer).items() if v is not None}
            for p in paths]


@dataclass(frozen=True)
class ActorPlan:
    """How many classifier actors, and what each asks Ray for."""

    actors: int
    threads: int  # intra-op and decoding threads of each actor
    num_cpus: float
    num_gpus: float = 0.0  # 0: CPU actors

    def describe(self) -> str:
        gpu = f", {self.num_gpus:g} GPU each" if self.num_gpus else ""
        return f"{self.actors} actor(s) x {self.threads} thread(s){gpu}"


def gpu_allowed(options: EngineOptions) -> bool:
    """Whether the options let ONNX Runtime's GPU providers run (auto, cuda, tensorrt)."""
    return (options.engine in ("auto", "onnxruntime") and options.device is None
            and options.providers in ("auto", "cuda", "tensorrt"))


def plan_actors(nodes: list[dict], threads: int, actors: int | None = None, gpu: bool = False) -> ActorPlan:
    """The actors that fit ``nodes`` (each alive node's total resources, as ``ray.nodes()``
    gives them), planned per node: an actor's ``threads`` CPUs must fit on one node, beside
    the read tasks (``READ_CPUS``), whatever the shape (nodes of 1 CPU, a head without CPUs,
    mixed sizes). With ``gpu`` and GPUs in the cluster, one actor per GPU (or a 1/k share
    of one for ``actors`` above the GPU count), on nodes with the CPUs for it."""
    cpu_fit = [int(n.get("CPU", 0) // threads + 1e-9) for n in nodes]
    if not any(cpu_fit):
        most = max((n.get("CPU", 0) for n in nodes), default=0)
        raise EdgeClassifyError(f"--threads {threads}: no node of this cluster has {threads} CPU(s) for an actor "
                                f"(the largest has {most:g})", hint=f"ask for --threads {max(1, int(most))} or fewer",
                                exit_code=EXIT_USAGE)
    gpus = [int(n.get("GPU", 0)) if fit else 0 for n, fit in zip(nodes, cpu_fit)]
    if gpu and any(gpus):
        share = max(1, -(-(actors or 0) // sum(gpus)))  # actors per GPU
        fit = sum(min(g * share, c) for g, c in zip(gpus, cpu_fit) if g)
        return ActorPlan(min(actors or fit, fit), threads, threads * ACTOR_CPU_SHARE, 1.0 / share)
    fit = sum(cpu_fit)
    return ActorPlan(min(actors or fit, fit), threads, threads * ACTOR_CPU_SHARE)


def cluster_nodes() -> list[dict]:
    return [n["Resources"] for n in ray().nodes() if n.get("Alive")]


# Inference batches per call of an actor: it decodes the next while one infers, and fewer,
# bigger calls and blocks leave more of the cores to the actors. 1,024 crops, 2 actors of 1
# thread, INT8 on OpenVINO (2-core Xeon, loaded): blocks of 64 files and calls of 32 images
# 57-58 img/s; 128 and 64, 82-88; 256 and 128, 85-95.
BATCHES_PER_CALL = 8


def classify_dataset(ds, model: bytes | str | os.PathLike, *, top_k: int = 3, actors: int | None = None,
                     threads: int = 1, batch_size: int = 8, options: EngineOptions | None = None,
                     plan: ActorPlan | None = None, decode: DecodeOptions = DEFAULT_DECODE):
    """A ``ray.data.Dataset`` of ``{"path", "bytes"}`` rows (``read_binary_files(...,
    include_paths=True)``) -> a Dataset of result rows (``parquet_schema``). For people already in
    Ray. ``options``: the engine policy's (``EngineOptions``; default auto), ``threads`` per actor;
    ``decode``: the decoder's (``DecodeOptions``, ``decode="auto"`` resolved per the model's evidence)."""
    path = None if isinstance(model, bytes) else os.path.abspath(model)
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    options = replace(options or EngineOptions(), threads=threads, spinning=False)
    plan = plan or plan_actors(cluster_nodes(), threads, actors, gpu_allowed(options))
    return ds.map_batches(
        ClassifyBatch, fn_constructor_args=(data, path, options),
        fn_constructor_kwargs={"top_k": top_k, "batch_size": batch_size, "threads": threads, "decode": decode},
        compute=ray().data.ActorPoolStrategy(size=plan.actors), num_cpus=plan.num_cpus, num_gpus=plan.num_gpus,
        batch_size=batch_size * BATCHES_PER_CALL, batch_format="numpy")


STALL_S = 120.0  # no rows for this long, with demands no node can meet: the job cannot go on


def unmet_demands(status) -> tuple[list[str], list[str]]:
    """From Ray's cluster status (``autoscaler.v2.sdk.get_cluster_status``): the task and
    actor demands that fit on no node's free resources (``{'CPU': 0.1} x 5``), and each node's
    free CPUs and GPUs. A demand that fits somewhere is merely queued, not stuck."""
    nodes = list(status.active_nodes) + list(status.idle_nodes)
    free = [n.available_resources() for n in nodes]
    unmet = []
    for demand in status.resource_demands.ray_task_actor_demand:
        for by_count in demand.bundles_by_count:
            bundle = {k: v for k, v in by_count.bundle.items() if v}
            if not any(all(f.get(k, 0) + 1e-9 >= v for k, v in bundle.items()) for f in free):
                unmet.append(f"{bundle} x {by_count.count}")
    shown = [f"node {n.node_id[:8]} ({n.ip_address}): " + ", ".join(
        f"{f.get(k, 0):g}/{n.total_resources().get(k, 0):g} {k}" for k in ("CPU", "GPU")
        if n.total_resources().get(k)) for n, f in zip(nodes, free)]
    return unmet, shown


class Watchdog:
    """Watches a running job: rows arriving is progress. With no rows for ``stall_s`` and
    demands that no node can meet, ``check`` returns why the job cannot go on (a job that is
    only slow, a TensorRT engine building, is never stopped). ``status`` reads the cluster's
    status (injected in tests); ``on_stall`` hears the reason, once."""

    def __init__(self, stall_s: float = STALL_S, status=None, on_stall=None, clock=time.monotonic):
        self.stall_s, self.status, self.on_stall, self.clock = stall_s, status or _cluster_status, on_stall, clock
        self.last = clock()
        self.reason: str | None = None
        self._stop = None

    def progress(self) -> None:
        self.last = self.clock()

    def check(self) -> str | None:
        idle = self.clock() - self.last
        if idle < self.stall_s:
            return None
        try:
            unmet, nodes = unmet_demands(self.status())
        except Exception:  # no status to judge by: keep waiting rather than stop a working job
            return None
        if not unmet:
            return None
        return (f"no results for {idle:.0f} s, and the cluster cannot schedule what the job needs: "
                f"{'; '.join(unmet)} pending, free: {'; '.join(nodes) or 'no nodes'}")

    def start(self, every_s: float | None = None) -> "Watchdog":
        import threading

        every_s = every_s or min(5.0, max(0.2, self.stall_s / 4))
        self._stop = threading.Event()

        def watch():
            while not self._stop.wait(every_s):
                reason = self.check()
                if reason is not None:
                    self.reason = reason
                    if self.on_stall is not None:
                        self.on_stall(reason)
                    return

        threading.Thread(target=watch, name="edge-classify-bulk-watchdog", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()


def _cluster_status():
    from ray.autoscaler.v2.sdk import get_cluster_status

    return get_cluster_status(ray().get_runtime_context().gcs_address)


BLOCK_FILES = 128  # files per read task, at most...
BLOCK_BYTES = 64 << 20  # ...and bytes per read task, at most (a block travels whole through the object store)


def read_blocks(sizes: list[int], actors: int = 1) -> int:
    """Read tasks for files of ``sizes`` bytes: blocks of at most ``BLOCK_FILES`` files and
    about ``BLOCK_BYTES``, at least two per actor so that every actor has work queued. Ray's
    own default made a task of two or three files each: 512 crops of ~50 kB took 12.7-14.4 s to
    read, against 0.7-0.9 s in 8 tasks (2-core Xeon, Ray 2.60, loaded), and the actors idled."""
    n = len(sizes)
    want = max(2 * actors, -(-n // BLOCK_FILES), -(-sum(sizes) // BLOCK_BYTES))
    return max(1, min(n, want))


def read_images(paths: list[str], actors: int = 1):
    """The files' bytes as a Dataset of ``{"path", "bytes"}`` rows, in ``read_blocks`` tasks."""
    sizes = []
    for p in paths:
        try:
            sizes.append(os.path.getsize(p))
        except OSError:  # gone since: read_binary_files says so
            sizes.append(0)
    return ray().data.read_binary_files(paths, include_paths=True, num_cpus=READ_CPUS,
                                        override_num_blocks=read_blocks(sizes, actors))


class ResultsDir:
    """A folder of result part files (``part-<run>-<n>.parquet`` or ``.jsonl``), each written
    under a hidden temporary name and renamed into place when complete."""

    def __init__(self, path: str | os.PathLike, fmt: str = "parquet"):
        if fmt not in FORMATS:
            raise EdgeClassifyError(f"unknown output format {fmt!r}", hint=f"choose one of {', '.join(FORMATS)}",
                                    exit_code=EXIT_USAGE)
        self.path, self.fmt = Path(path), fmt
        if self.path.exists() and not self.path.is_dir():
            raise EdgeClassifyError(f"{self.path} exists and is not a folder",
                                    hint="--out names a folder of result parts", exit_code=EXIT_USAGE)
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".part-*.tmp"):  # a killed run's unfinished part: never counted
            stale.unlink(missing_ok=True)
        self._run = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self._seq = 0

    def parts(self) -> list[Path]:
        return sorted(p for fmt in FORMATS for p in self.path.glob(f"part-*.{fmt}"))

    def rows(self, columns: list[str] | None = None) -> list[dict]:
        out = []
        for part in self.parts():
            if part.suffix == ".parquet":
                import pyarrow.parquet as pq

                have = pq.read_schema(part).names  # parts written before a column existed lack it
                out.extend(batch_rows(pq.read_table(part, columns=[c for c in columns if c in have]
                                                    if columns else None)))
            else:
                out.extend(json.loads(line) for line in part.read_text("utf-8").splitlines() if line.strip())
        return out

    def done(self, model_sha256: str) -> dict[str, bool]:
        """Paths that already have a row made by this model -> whether that row is a failure.
        A name that is not UTF-8 is matched by its exact bytes (``path_base64``), as sources are."""
        return {_source_path(r): r.get("error") is not None
                for r in self.rows(["path", "path_base64", "model_sha256", "error"])
                if r.get("model_sha256") == model_sha256}

    def write(self, rows: list[dict]) -> Path | None:
        if not rows:
            return None
        self._seq += 1
        final = self.path / f"part-{self._run}-{self._seq:06d}.{self.fmt}"
        tmp = self.path / f".{final.name}.tmp"
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows, schema=parquet_schema()), tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)  # whole part or nothing
        return final


def _source_path(r: dict) -> str:
    raw = r.get("path_base64")
    return os.fsdecode(base64.b64decode(raw)) if raw else r["path"]


def absolute_paths(paths: Iterable[str]) -> list[str]:
    """Absolute, de-duplicated, in order: one row per file however often it was named."""
    seen, out = set(), []
    for p in paths:
        a = os.path.abspath(p)
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out
