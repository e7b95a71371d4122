"""Bulk classification on Ray Data: the same runtime, bit-exact preprocessing, any number of machines.

* **Reading**: ``ray.data.read_binary_files(..., include_paths=True)``: the encoded bytes
  travel, and each worker decodes them with the runtime's own safe decoder and contract
  preprocessing (Ray's ``read_images`` decodes with PIL, which is not the contract).
* **Inference**: ``ClassifyBatch``, a class-based ``map_batches`` UDF holding one
  ``Classifier`` per actor. Each actor gets ``threads`` intra-op threads and asks Ray for
  about that many CPUs, so actors never oversubscribe cores (ONNX Runtime would otherwise take
  every core per session). The actors reserve a little less than whole CPUs
  (``ACTOR_CPU_SHARE``) and the read tasks ``READ_CPUS``, which must fit in what an actor
  leaves on its node: with whole CPUs, actors holding every CPU of a 2-core machine starved
  the read task forever (seen with Ray 2.60); with reads of 0.1 CPU, a cluster of 1-CPU
  workers (0.05 left beside each actor) and a CPU-less head hung the same way.
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
from pathlib import Path
from typing import Iterable

from ..engines.options import EngineOptions
from ..errors import EXIT_USAGE, EdgeClassifyError
from ..host.deps import ray  # imported on use: the [ray] extra
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
        ("engine", s), ("provider", s), ("error", s),
        ("predictions", pa.list_(struct(rank=i32, index=i32, wnid=s, label=s, probability=f64))),
        ("threshold", f64), ("labels_above_threshold", pa.list_(struct(index=i32, label=s, probability=f64))),
        ("scores", pa.map_(s, f64)),
        ("timings_ms", struct(decode=f64, normalize=f64, inference=f64, batch=i32)), ("decode", s),
        ("notes", pa.list_(s)),
    ])


class ClassifyBatch:
    """``map_batches`` UDF: one Classifier per actor; a batch of ``{"path", "bytes"}`` in, result rows out."""

    def __init__(self, model: bytes, top_k: int = 5, threads: int = 1, batch_size: int = 16):
        from ..classifier import Classifier

        options = EngineOptions(engine="onnxruntime", threads=threads, spinning=False)
        self.clf = Classifier(model, options, batch_size=batch_size, decode_threads=threads)  # this actor's cores only
        self.top_k = top_k

    def __call__(self, batch: dict):
        import pyarrow as pa

        results = self.clf.classify(list(batch["bytes"]), top_k=self.top_k, errors="collect")
        rows = [self.clf.row(_named(res, str(p))) for p, res in zip(batch["path"], results)]
        return pa.Table.from_pylist(rows, schema=parquet_schema())


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
    """Rows for images that never reached an actor (a missing file): the reason in ``error``."""
    return [row(Classification(p, error=reason), producer) for p in paths]


def plan_actors(cluster_cpus: float, threads: int, actors: int | None) -> int:
    """Actors that fit the cluster's CPUs at ``threads`` each (at least one)."""
    fit = max(1, int(cluster_cpus // max(1, threads)))
    return fit if actors is None else max(1, min(actors, fit))


def classify_dataset(ds, model: bytes | str | os.PathLike, *, top_k: int = 5, actors: int | None = None,
                     threads: int = 1, batch_size: int = 16):
    """A ``ray.data.Dataset`` of ``{"path", "bytes"}`` rows (``read_binary_files(...,
    include_paths=True)``) -> a Dataset of result rows (``parquet_schema``). For people already in Ray."""
    r = ray()
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    n = plan_actors(r.cluster_resources().get("CPU", 1), threads, actors)
    return ds.map_batches(
        ClassifyBatch, fn_constructor_args=(data,), fn_constructor_kwargs={"top_k": top_k, "threads": threads,
                                                                          "batch_size": batch_size},
        compute=r.data.ActorPoolStrategy(size=n), num_cpus=threads * ACTOR_CPU_SHARE, batch_size=batch_size,
        batch_format="numpy")


def read_images(paths: list[str]):
    return ray().data.read_binary_files(paths, include_paths=True, num_cpus=READ_CPUS)


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
