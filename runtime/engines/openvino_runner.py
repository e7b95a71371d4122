"""The OpenVINO runner: the ``openvino`` runtime on the same ONNX file.

* **Precision is explicit.** On CPUs with AMX or AVX512-BF16, OpenVINO lowers an FP32 (or
  FP16) model to bf16 unless told otherwise. Here ``INFERENCE_PRECISION_HINT`` is always
  set: ``f32`` unless BF16 was chosen on evidence (``policy.compute_precision``), and the
  precision the compiled model reports back is what ``precision`` says
  (``computed_precision``). Told bf16, OpenVINO 2026.4 computes f32 on an AVX2 CPU, emulated
  bf16 on an AVX-512 CPU without native BF16, and bf16 on AMX / AVX512-BF16.
* **Static batch sizes.** A model compiled for a fixed batch ran 1.5% faster than the
  dynamic one (ResNet50 INT8, 2-core AMD EPYC: batch 1 22.56 vs 22.90 ms, batch 8 167.5 vs
  168.5 ms), so each batch size gets its own compiled model, made when first needed; the
  two most recent are kept. A short final batch is padded up to a compiled size when that
  costs at most half the batch.
* **Compiled blobs are cached like ONNX Runtime's graphs** (``cache/store.py``): keyed by the
  model's sha256, OpenVINO's version, the device, the configuration, the batch size and
  the CPU, stored only after the model passed its checks. Measured on ResNet50 INT8: read
  and compile 0.30 s, import of the cached blob 0.07 s (FP32: 0.24 vs 0.16 s). OpenVINO's
  own ``CACHE_DIR`` is not used: this cache shares the sha256 key, the ownership checks and
  the size cap of the one beside it, and a hit skips the ONNX import entirely.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import platform
import threading
from collections import OrderedDict

import numpy as np

from ..cache import store
from ..errors import EXIT_MODEL, EdgeClassifyError
from ..host import cpu, deps, facts
from .runners import BF16_EMULATED, BaseRunner, TensorInfo

_KEEP = 2  # compiled batch sizes held at once (each holds its own copy of the weights)
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def type_name(element_type) -> str:
    """OpenVINO's short name of an element type ("f32", "bf16", "f16"). ``str()`` of one is
    ``<Type: 'bfloat16'>``, in which neither "bf16" nor "f16" occurs."""
    name = getattr(element_type, "get_type_name", None)
    return name() if callable(name) else str(element_type)


def computed_precision(file_precision: str, hint: str, native_bf16: bool) -> str:
    """What a compiled model computes its float ops in, from the inference precision it
    reports back (``hint``: ``type_name`` of it) and whether the CPU has native BF16.
    An INT8 file's quantized ops stay int8 whatever the hint."""
    if file_precision == "int8":
        return "int8"
    if hint == "bf16":
        return "bf16" if native_bf16 else BF16_EMULATED
    if hint == "f16":
        return "fp16"
    return "fp32"


def check_device(device: str) -> None:
    """A clear error for a device OpenVINO does not see here (instead of its own message)."""
    base = device.split(".")[0].split(":")[0]
    if base in ("AUTO", "MULTI", "HETERO", "BATCH"):  # virtual devices over the real ones
        return
    available = deps.openvino_core().available_devices
    if device not in available and base not in {d.split(".")[0] for d in available}:
        raise EdgeClassifyError(f"OpenVINO device {device!r} is not available here",
                                hint=f"available: {', '.join(available) or 'none'} (GPU/NPU need Intel's "
                                     "drivers); or --device AUTO", exit_code=EXIT_MODEL)


class OpenVinoRunner(BaseRunner):
    engine = "openvino"

    def __init__(self, source, file_precision: str, compute: str = "fp32", threads: int | None = None,
                 device: str = "CPU", cache=None, model_sha256: str | None = None, first_batch: int = 1):
        super().__init__()
        check_device(device)
        self._ov, self._source, self.device = deps.openvino(), source, device
        self._core = deps.openvino_core()
        self._file_precision = file_precision
        self._config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": _OV_PRECISION[compute]}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
            if device == "CPU" and threads < cpu.usable_cores():
                # A share of the machine: OpenVINO pins its threads to cores by default, and every
                # process sharing the machine picks the same first cores. Two 1-thread actors of
                # edge-classify-bulk on 2 cores both ran on core 0: INT8 ResNet50 at 23 ms/image
                # each instead of 6 (2-core Sapphire Rapids). Unpinned, the OS spreads them.
                self._config["ENABLE_CPU_PINNING"] = False
        self._cache, self._sha = cache, model_sha256
        self._cache_path = cache.path if cache is not None else None
        self._lock = threading.Lock()
        self._model = None  # read lazily: a cached blob needs no ONNX import at all
        self._compiled: OrderedDict[int, tuple] = OrderedDict()
        self._pending: list[tuple[str, bytes]] = []
        self._checked = False
        self.cache_status = "off" if cache is None else "miss"
        compiled = self._compile(first_batch)
        self.precision = self._reported_precision(compiled)
        if self._model is not None:  # the ONNX graph's own shapes, for the contract checks
            self.inputs = [_info(p) for p in self._model.inputs]
            self.outputs = [_info(p) for p in self._model.outputs]
        else:  # a cached blob, stored only after this very model (by sha256) passed the checks:
            # its shapes are the graph's but for the batch it was compiled for
            self.inputs = [_info(p, batch=None) for p in compiled.inputs]
            self.outputs = [_info(p, batch=None) for p in compiled.outputs]

    @property
    def provider(self) -> str:
        return f"OpenVINO {self.device}"

    # --- running ---------------------------------------------------------------------
    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        x = np.ascontiguousarray(batch, dtype=np.float32)
        # An infer request is not thread-safe (a Classifier may be shared by threads); one
        # request per size, used one run at a time. OpenVINO parallelises inside the run.
        with self._lock:
            size = self._size_for(n)
            request = self._request(size)
            if size > n:
                x = np.concatenate([x, np.zeros((size - n,) + x.shape[1:], np.float32)])
            request.infer({0: x}, share_inputs=True)
            return request.get_output_tensor(0).data[:n].copy()

    def _size_for(self, n: int) -> int:
        if n in self._compiled:
            return n
        bigger = [s for s in self._compiled if n <= s <= 2 * n]
        return min(bigger) if bigger else n

    def _request(self, size: int):
        if size not in self._compiled:
            with self._cache_open():
                self._compile(size)
        self._compiled.move_to_end(size)
        return self._compiled[size][1]

    # --- loading ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _cache_open(self):
        """``self._cache`` usable inside: the loader's handle while it is open (the loader
        closes it once loaded), else a fresh one for sizes compiled later."""
        loader = self._cache
        if self._cache_path is None or (loader is not None and loader.fd >= 0):
            yield
            return
        try:
            fresh = store.CacheDir(self._cache_path)
        except store.Refused:  # no longer trustworthy: compile uncached
            fresh = None
        self._cache = fresh
        try:
            yield
        finally:
            self._cache = loader
            if fresh is not None:
                fresh.close()

    def _key(self, batch: int) -> str:
        parts = ["ov2", self._sha or "", getattr(self._ov, "__version__", ""), self.device,
                 repr(sorted(self._config.items())), str(batch), platform.machine(), cpu.flags_or_name()]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]

    def _compile(self, batch: int):
        compiled = blob = None
        key = self._key(batch) if self._cache is not None else None
        hit = self._cache.lookup(key, ".ovblob") if key is not None else None
        if hit is not None:
            fd, path = hit
            try:
                # Mapped, not read: ResNet50 FP32 peaked at 293-331 MiB this way, 385-390 MiB
                # from a bytes copy. Copy-on-write because OpenVINO wants a writable buffer.
                # The compiled model may point into the mapping: it lives as long as it does.
                blob = np.memmap(path, dtype=np.uint8, mode="c")
                compiled = self._core.import_model(self._ov.Tensor(blob, shared_memory=True), self.device,
                                                   self._config)
                if len(self._compiled) == 0:
                    self.cache_status = "hit"
            except Exception:  # a blob from another build, or damaged: compile afresh
                compiled = blob = None
                self._cache.discard(f"{key}.ovblob")
            finally:
                os.close(fd)
        if compiled is None:
            model = self._read().clone()
            name = model.inputs[0].any_name
            dims = list(model.inputs[0].partial_shape)
            dims[0] = batch
            model.reshape({name: dims})
            compiled = self._core.compile_model(model, self.device, self._config)
            if key is not None:
                data = compiled.export_model()
                self._pending.append((key, data.getvalue() if hasattr(data, "getvalue") else bytes(data)))
                if self._checked:
                    self.commit_cache()
        self._compiled[batch] = (compiled, compiled.create_infer_request(), blob)
        while len(self._compiled) > _KEEP:
            self._compiled.popitem(last=False)
        return compiled

    def _read(self):
        if self._model is None:
            if isinstance(self._source, (bytes, bytearray)):
                self._model = self._core.read_model(io.BytesIO(bytes(self._source)))
            else:
                self._model = self._core.read_model(str(self._source))
        return self._model

    def _reported_precision(self, compiled) -> str:
        """What OpenVINO says it computes in (an FP16 file's weights are widened to f32 on
        CPUs); bf16 on a device without native BF16 is ``BF16_EMULATED``."""
        hint = type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        return computed_precision(self._file_precision, hint, hint == "bf16" and facts.openvino_native_bf16(self.device))

    def commit_cache(self) -> None:
        self._checked = True
        stored = False
        if self._pending:
            with self._cache_open():
                for key, blob in self._pending:
                    stored = (self._cache is not None and self._cache.store(key, ".ovblob", blob)) or stored
        self._pending = []
        if stored and self.cache_status != "hit":
            self.cache_status = "stored"

    def discard_pending(self) -> None:
        self._pending = []

    def close(self) -> None:
        super().close()
        self._compiled.clear()
        self._model = None
        self._pending = []


def _info(port, batch: int | None | str = "as-is") -> TensorInfo:
    shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
    if batch != "as-is" and shape:
        shape[0] = batch
    return TensorInfo(port.any_name, shape, "tensor(float)" if port.get_element_type().get_type_name() == "f32"
                      else f"tensor({port.get_element_type().get_type_name()})")
