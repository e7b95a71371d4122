"""What edge-serve serves, apart from HTTP: the models (each loaded once, checked and warmed,
with its one ``Batcher``), their descriptions in the protocol's terms (metadata, Triton's
config, the page's model card), and the server's metrics.

Names a client sees: each model takes either its own input tensor (FP32, the contract's
layout and size: the client preprocessed it) or ``image_bytes`` (BYTES, one encoded image
per element, decoded here with the runtime's safe decoder and the contract); it answers
``probabilities`` (FP32 [N, classes]: the model's head applied, as ``Classifier`` returns
them). The version is always "1": one file per name.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..engines.options import EngineOptions
from ..images import decode_pool
from ..images.preprocess import DEFAULT_DECODE, DecodeOptions
from .batcher import Batcher

IMAGE_INPUT = "image_bytes"
OUTPUT = "probabilities"
VERSION = "1"
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration"]


@dataclass(frozen=True)
class ServeOptions:
    """How models are served (edge-serve's flags, README: edge-serve)."""

    engine: EngineOptions = field(default_factory=EngineOptions)
    decode: DecodeOptions = DEFAULT_DECODE
    max_batch: int = 8
    max_delay_ms: float = 5.0  # a batch waits this long at most for images still being decoded
    max_queue: int = 64  # images admitted and not yet answered, per model; past it: 503
    max_body_bytes: int = 32 << 20  # one request's body (Triton's default is 64 MiB; a device has less memory)
    timeout_s: float = 30.0  # per request: past it, 504 and its images are dropped unrun
    decode_threads: int | None = None  # default: decode_pool.default_threads()
    top_k: int = 3  # /v1/classify's default
    token: str | None = None


class Metrics:
    """Prometheus metrics, in a registry of their own (several servers in one test process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.requests = Counter("edge_serve_requests", "HTTP requests by model, endpoint and outcome",
                                ["model", "endpoint", "outcome"], registry=r)
        self.latency = Histogram("edge_serve_request_seconds", "Request latency, received to answered",
                                 ["model", "endpoint"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch = Histogram("edge_serve_batch_size", "Images per inference batch", ["model"], registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.images = Counter("edge_serve_images", "Images classified", ["model"], registry=r)
        self.decode_failures = Counter("edge_serve_decode_failures", "Images that could not be decoded",
                                       ["model"], registry=r)
        self.queue = Gauge("edge_serve_queue_depth", "Images admitted and not yet answered", ["model"], registry=r)
        self.ready = Gauge("edge_serve_model_ready", "1 when the model is loaded, checked and warmed", ["model"],
                           registry=r)


class ServedModel:
    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path
        self.state, self.error = "loading", None
        self.clf = self.batcher = None
        self.load_s = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    # --- descriptions ----------------------------------------------------------------
    @property
    def input_name(self) -> str:
        return self.clf.contract.model.input_name

    def metadata(self) -> dict:
        """The protocol's model metadata (open dimensions are -1)."""
        c = self.clf.contract
        return {"name": self.name, "versions": [VERSION], "platform": _platform(self.clf.runner.engine),
                "inputs": [{"name": self.input_name, "datatype": "FP32", "shape": [-1, *c.preprocess.input_shape()]},
                           {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, c.model.num_classes]}]}

    def config(self, opts: ServeOptions) -> dict:
        """Triton's model configuration, for clients that read it (perf_analyzer: max_batch_size,
        dynamic_batching). Dimensions exclude the batch; the BYTES input is one scalar per image."""
        c, r = self.clf.contract, self.clf.runner
        gpu = r.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        return {
            "name": self.name, "platform": _platform(r.engine), "backend": r.engine,
            "max_batch_size": self.max_batch(opts),
            "input": [{"name": self.input_name, "data_type": "TYPE_FP32", "format": f"FORMAT_{c.preprocess.layout}",
                       "dims": list(c.preprocess.input_shape()), "optional": True},
                      {"name": IMAGE_INPUT, "data_type": "TYPE_STRING", "dims": [1], "reshape": {"shape": []},
                       "optional": True}],
            "output": [{"name": OUTPUT, "data_type": "TYPE_FP32", "dims": [c.model.num_classes]}],
            "dynamic_batching": {"max_queue_delay_microseconds": int(opts.max_delay_ms * 1000),
                                 "default_queue_policy": {"max_queue_size": opts.max_queue, "timeout_action": "REJECT",
                                                          "default_timeout_microseconds": int(opts.timeout_s * 1e6)}},
            "instance_group": [{"count": 1, "kind": "KIND_GPU" if gpu else "KIND_CPU"}],
        }

    def max_batch(self, opts: ServeOptions) -> int:
        return self.clf.contract.model.batch or opts.max_batch

    def card(self, opts: ServeOptions) -> dict:
        """What the page shows of a model (GET /v1/models)."""
        card = {"name": self.name, "version": VERSION, "ready": self.ready, "state": self.state}
        if self.error:
            card["error"] = self.error
        if self.clf is None:
            return card
        c, r = self.clf.contract, self.clf.runner
        pre = c.preprocess
        return {**card, "arch": c.model.arch, "classes": c.model.num_classes, "labels": list(c.labels.names),
                "multi_label": c.model.multi_label, "model_precision": c.model.precision,
                "compute_precision": r.precision, "engine": r.engine, "provider": r.provider,
                "input": {"name": self.input_name, "datatype": "FP32", "shape": [-1, *pre.input_shape()]},
                "preprocessing": {"mode": pre.mode, "input_size": list(pre.input_size), "resize": pre.resize,
                                  "color_order": pre.color_order, "layout": pre.layout,
                                  "mean": list(pre.mean) if pre.mean else None,
                                  "std": list(pre.std) if pre.std else None},
                "max_batch_size": self.max_batch(opts), "max_files_per_request": opts.max_queue,
                "weights_origin": c.weights_origin,
                "model_sha256": self.clf.model_sha256}


def _platform(engine: str) -> str:
    return "onnxruntime_onnx" if engine == "onnxruntime" else "openvino"


class Service:
    """The served models. ``load()`` loads, checks and warms each (a TensorRT engine is built
    here), then makes its batcher; the server is ready when every model is."""

    def __init__(self, models: dict[str, Path], opts: ServeOptions, metrics: Metrics | None = None):
        self.opts, self.metrics = opts, metrics or Metrics()
        self.models = {name: ServedModel(name, Path(path)) for name, path in models.items()}
        self.decode_threads = opts.decode_threads or decode_pool.default_threads()
        self.pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="edge-serve-decode")
        self.held_bytes = 0  # request bodies being read or served, together (event loop only: no lock)
        self.max_held_bytes = 8 * opts.max_body_bytes
        self._closed = threading.Event()

    @property
    def ready(self) -> bool:
        return all(m.ready for m in self.models.values())

    def load(self, on_status=None) -> None:
        """Load every model in turn; raises (``EdgeClassifyError`` for the user's) on the first
        that fails, after marking it failed."""
        from ..classifier import Classifier

        for m in self.models.values():
            t0 = time.perf_counter()
            try:
                clf = Classifier(m.path, self.opts.engine, batch_size=self.opts.max_batch, decode=self.opts.decode,
                                 decode_threads=self.decode_threads, on_status=on_status)
                m.clf = clf
                max_batch = m.max_batch(self.opts)
                # every batch size the batcher can form: an engine's first run of a shape is slow
                # (OpenVINO: 0.5-0.6 s for a ResNet50 at batch 2 or 3 here, 45-65 ms after), and ready means warm
                clf.warmup(batch_sizes=range(1, max_batch + 1))
            except BaseException as exc:
                m.state, m.error = "failed", getattr(exc, "message", None) or str(exc)
                raise
            if self._closed.is_set():
                return
            metrics = self.metrics
            m.batcher = Batcher(clf, max_batch=max_batch, max_delay_s=self.opts.max_delay_ms / 1e3,
                                max_queue=self.opts.max_queue, decode_pool_=self.pool, decode=clf.decode_options,
                                on_batch=lambda n, name=m.name: metrics.batch.labels(name).observe(n))
            metrics.queue.labels(m.name).set_function(lambda b=m.batcher: b.depth)
            m.load_s = time.perf_counter() - t0
            m.state = "ready"
            metrics.ready.labels(m.name).set(1)

    def hold(self, n: int) -> bool:
        """Count ``n`` more bytes of request bodies in memory, unless that passes the bound."""
        if self.held_bytes + n > self.max_held_bytes:
            return False
        self.held_bytes += n
        return True

    def release(self, n: int) -> None:
        self.held_bytes -= n

    def server_metadata(self) -> dict:
        return {"name": "edge-serve", "version": __version__, "extensions": list(EXTENSIONS)}

    def close(self) -> None:
        """Answer what was admitted, then stop the batchers and the decoders."""
        self._closed.set()
        self.pool.shutdown(wait=True)
        for m in self.models.values():
            if m.batcher is not None:
                m.batcher.close(timeout=60)
