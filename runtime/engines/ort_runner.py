"""The ONNX Runtime runner: one ``InferenceSession`` on the planned providers.

For CPU-only sessions of a model file, the optimised graph is cached per machine
(``cache/store.py``); the entry is committed only after the model passed its checks.
ONNX Runtime drops a provider it cannot start, silently; the runner says which one it got
(``device``) and why it is not the one planned (``notes``, or an error for a named one).
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from ..cache import store
from ..errors import EdgeClassifyError, first_line
from ..host import deps
from .providers import SHORT, ProviderPlan, check_used
from .runners import BaseRunner, TensorInfo


class OrtRunner(BaseRunner):
    engine = "onnxruntime"

    def __init__(self, source, plan: ProviderPlan, precision: str, threads: int | None = None,
                 spinning: bool = True, cache=None, model_sha256: str | None = None,
                 why_unusable=lambda provider: None):
        """``why_unusable(provider)``: why a GPU provider cannot work here, where known (for
        the message when ONNX Runtime drops it: ``providers.check_used``)."""
        super().__init__()
        self._ort, self._threads, self._spinning = deps.onnxruntime(), threads, spinning
        self.plan = plan
        self._cache, self._pending = cache, None
        notes = []
        while True:
            try:
                self.session = self._quiet_create(source, model_sha256)
                break
            except Exception as exc:  # TensorRT's EPFail is not one ORT's own fallback catches
                failed = SHORT.get(plan.primary, plan.primary)
                if plan.primary == "CPUExecutionProvider":
                    raise
                if plan.requested != "auto":
                    raise EdgeClassifyError(
                        f"{failed} could not create a session for this model: {first_line(exc)}",
                        hint="--provider auto runs on the next provider instead; "
                             f"`edge-doctor --model MODEL --provider {failed}` checks this device") from None
                self.plan = plan = ProviderPlan(plan.requested, plan.providers[1:], plan.skipped)
                notes.append(f"{failed} could not create a session for this model ({first_line(exc)})")
        try:
            self.device, dropped = check_used(plan, self.session.get_providers(), why_unusable(plan.primary))
        except EdgeClassifyError:
            self.close()
            raise
        self.notes += [n for n in (dropped, "; ".join(notes) + f"; running on {SHORT.get(plan.primary, plan.primary)}"
                                   if notes else None) if n]
        trt_fp16 = self.device == "TensorrtExecutionProvider" and plan.providers[0][1].get("trt_fp16_enable")
        self.precision = "fp16" if trt_fp16 and precision == "fp32" else precision
        self.inputs = [TensorInfo(i.name, list(i.shape or []), i.type) for i in self.session.get_inputs()]
        self.outputs = [TensorInfo(o.name, list(o.shape or []), o.type) for o in self.session.get_outputs()]
        self._in, self._out = self.inputs[0].name, self.outputs[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self._out], {self._in: batch})[0]

    def commit_cache(self) -> None:
        if self._pending is not None:
            tmp, key = self._pending
            self._pending = None
            self.cache_status = "stored" if self._cache.commit(tmp, key) else "off"

    def discard_pending(self) -> None:
        if self._pending is not None:
            self._cache.discard(self._pending[0])
            self._pending = None

    def close(self) -> None:
        super().close()
        self.session = None

    def _quiet_create(self, source, model_sha256):
        # ONNX Runtime prints its "EP Error ... Falling back" banner with print(): keep it
        # off stdout, which carries --json rows.
        with contextlib.redirect_stdout(sys.stderr):
            return self._create_session(source, model_sha256)

    def _create_session(self, source, model_sha256):
        ort, cache, providers = self._ort, self._cache, self.plan.providers
        so = session_options(ort, self._threads, self._spinning)
        if cache is None:
            return _session(ort, source, so, providers)
        key = store.entry_key(model_sha256, ort.__version__, "all")
        hit = cache.lookup(key)
        if hit is not None:
            fd, path = hit
            fast = session_options(ort, self._threads, self._spinning)
            fast.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                session = _session(ort, path, fast, providers)
                self.cache_status = "hit"
                return session
            except Exception:  # a damaged entry: rebuilt below
                cache.discard(f"{key}.onnx")
            finally:
                os.close(fd)
        tmp, tmp_path = cache.reserve(key)
        try:
            so.optimized_model_filepath = tmp_path
            session = _session(ort, source, so, providers)
            self._pending, self.cache_status = (tmp, key), "pending"
            return session
        except Exception:  # full disk, or a broken model (which fails again just below)
            cache.discard(tmp)
            so.optimized_model_filepath = ""
            return _session(ort, source, so, providers)


def _session(ort, source, so, providers):
    # ORT's own fallback (retry on CUDA+CPU after printing a banner on stdout) is off: OrtRunner
    # falls back itself, only under `auto`, and says which provider failed and why.
    return ort.InferenceSession(source, so, providers=providers, enable_fallback=0)


def session_options(ort, threads: int | None, spinning: bool = True):
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3  # errors only; we report provider fallbacks ourselves
    # Worker threads busy-wait between the parallel sections of a run (faster), and stop
    # the moment a run returns, so they never starve whatever runs next (the decode pool,
    # another runtime). Measured on 2 cores, ResNet50: batch 1 p50 INT8 35.1 vs 36.0 ms and
    # FP32 60.1 vs 60.8 ms; batch 8 from JPEG files 16.1-16.5 vs 13.1-13.6 img/s. Spinning
    # that outlives the run (ORT's default) made two sessions alternating take 125 ms each
    # instead of 55. With spinning off entirely, that case is best (55 vs 67 ms): hence
    # ``spinning=False`` for processes that alternate several sessions.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.force_spinning_stop", "1")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so
