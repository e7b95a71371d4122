"""The loader: (model file, ``EngineOptions``, ``MachineFacts``, cache) -> a checked runner
and a ``LoadReport`` saying what was decided and why.

Loading a model means: read its identity (bytes or path; the sha256, remembered per file
by the cache), read its contract before any engine sees the graph, choose the engine
(policy.py: by the request, by the machine, or measured on this machine and remembered),
choose the arithmetic (BF16 only on evidence), plan ONNX Runtime's providers (TensorRT
allowed or not, its engine folder), create the runner, check the graph against the
contract, and only then store what was compiled in the cache. Nothing here prints: the
report carries the warnings and notes, and ``on_status`` hears of long one-time steps
(a TensorRT engine build) as they start and end.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..cache import store
from ..errors import EdgeClassifyError, first_line
from ..host import deps, gpu
from ..host.facts import MachineFacts
from ..model import onnx_meta
from ..model.contract import ModelContract
from . import policy, tensorrt
from .options import EngineOptions
from .providers import SHORT, ProviderPlan, default_trt_cache_dir, plan_providers, unusable_gpu_providers
from .runners import Runner


@dataclass
class LoadReport:
    """What loading decided, and why: for the command lines to render and the tests to read."""

    engine_choice: policy.EngineChoice
    precision_reason: str = ""
    cache_warning: str | None = None  # why the per-machine cache was not used
    provider_warning: str | None = None  # ONNX Runtime did not run where planned: dropped, fell back, TensorRT skipped
    notes: list[str] = field(default_factory=list)  # informational: GPU providers `auto` left out here, and why
    provider_plan: ProviderPlan | None = None  # ONNX Runtime's providers, as planned (None on OpenVINO)
    cache_status: str = "off"  # "hit" | "stored" | "off": the compiled-model cache, for this load
    engine_built: bool | None = None  # TensorRT: True when this load built its engine, False when it reused one
    engine_build_s: float | None = None


@dataclass
class LoadedModel:
    contract: ModelContract
    runner: Runner
    model_sha256: str
    model_path: Path | None  # None for a model given as bytes
    report: LoadReport


def load(model: str | os.PathLike | bytes, options: EngineOptions | None = None, facts: MachineFacts | None = None,
         *, measure_batch: int = 8, on_status: Callable[[str], None] | None = None) -> LoadedModel:
    """Load ``model`` (a path, or the serialized ONNX bytes) as ``options`` ask, on the machine
    ``facts`` describe (default: this one, probed as needed). ``measure_batch``: the batch
    the caller will run (``auto`` times the engines at it, up to 8; TensorRT's profile
    covers it). Raises ``EdgeClassifyError``."""
    return _Load(model, options or EngineOptions(), facts or MachineFacts(), measure_batch, on_status).run()


def settle(model: str | os.PathLike, options: EngineOptions | None = None, facts: MachineFacts | None = None,
           *, measure_batch: int = 8, on_status: Callable[[str], None] | None = None) -> policy.EngineChoice:
    """Measure ``auto``'s engine choice for ``model`` on this machine until it is settled, now,
    so that later runs start without measuring (``edge-classify --warmup`` at deployment). It
    is the same choice made the same way: each of the ``SAMPLES`` runs that measure still
    loads both engines and alternates them, only back to back instead of in the first three
    runs of real work. Returns the choice the last load made; where ``auto`` measures nothing
    (a forced engine, one engine installed, no cache, a static batch), the one load's choice."""
    opt = replace(options or EngineOptions(), images_hint=None)  # a small run would not measure at all
    for _ in range(policy.SAMPLES):
        loaded = load(model, opt, facts, measure_batch=measure_batch, on_status=on_status)
        choice = loaded.report.engine_choice
        loaded.runner.close()
        if not choice.fresh:
            break
    return choice


def inspect(model: str | os.PathLike | bytes, options: EngineOptions | None = None,
            facts: MachineFacts | None = None) -> tuple[ModelContract, str]:
    """(contract, sha256) of ``model``, refusing what ``load`` would refuse before any engine
    starts: an engine asked for that is not installed here, a missing file, a file that is not
    an exported model. For a caller whose loads happen elsewhere (edge-classify-bulk's actors)
    and who must fail fast here."""
    one = _Load(model, options or EngineOptions(), facts or MachineFacts(), 8, None)
    sha = one.sha256 if one.path is None else _digest(one.path, None)[1]
    return _read_contract(one.source, one.name), sha


class _Load:
    """One load's state: the source, its cache handle, the contract, the report so far."""

    def __init__(self, model, options: EngineOptions, facts: MachineFacts, measure_batch: int, on_status):
        self.opt, self.facts, self.measure_batch, self.on_status = options, facts, measure_batch, on_status
        self.installed = facts.installed_engines()
        self.requested = policy.check_requested(options.engine, self.installed, options.providers, options.device)
        self.report = LoadReport(policy.EngineChoice("", ""))
        if isinstance(model, (bytes, bytearray)):
            self.path, self.source, self.name = None, bytes(model), "model"
            self.sha256 = hashlib.sha256(self.source).hexdigest()
        else:
            self.path = Path(model)
            self.source = self.name = str(self.path)  # by path: ONNX Runtime finds external weights beside it
            if not self.path.is_file():
                raise EdgeClassifyError(f"model file not found: {self.path}",
                                        hint="run `export-model` to create it (or pass --model PATH to an exported .onnx)")
        self.runner = None
        self.cache = None
        self.trt_skipped = None

    def run(self) -> LoadedModel:
        stat = None
        hashed = False
        try:
            if self.path is not None:
                self.cache = self._open_cache()
                stat, self.sha256, hashed = _digest(self.path, self.cache)
            self.contract = _read_contract(self.source, self.name)
            listed = self.facts.onnxruntime_providers() if "onnxruntime" in self.installed else []
            usable = [p for p in listed if p not in self._unusable(listed)]
            choice = policy.decide_without_measuring(self.requested, self.installed, self.opt.providers, usable)
            self.report.engine_choice = choice if choice is not None else self._auto_choice()
            if self.runner is None:
                self.runner = self._runner(self.report.engine_choice.engine)
            else:  # measured both: the reason must be the chosen engine's
                self._compute(self.runner.engine)
            if stat is not None and _changed(self.path, stat):
                # Hashed one file, loaded another: the cache key and model_sha256 would lie.
                raise EdgeClassifyError(f"model {self.name} changed while it was being loaded",
                                        hint="run again once the file is complete")
            self.runner.check(self.contract, self.name)
            if self.cache is not None:  # only a model that passed its checks is cached
                if hashed:
                    self.cache.remember_digest(stat, self.sha256)
                self.runner.commit_cache()
        except EdgeClassifyError:
            self._discard()
            raise
        except Exception as exc:  # the engines raise their own types for unreadable models
            self._discard()
            raise EdgeClassifyError(f"cannot load model {self.name}: {first_line(exc)}",
                                    hint="re-export it with `export-model`") from None
        finally:
            if self.cache is not None:
                self.cache.close()
        # One provider warning, the most telling: a provider ONNX Runtime dropped, else a session
        # that fell back, else TensorRT left out for this model.
        self.report.provider_warning = next(iter(self.runner.notes + [w for w in [self.trt_skipped] if w]), None)
        if self.runner.engine != "onnxruntime":
            self.report.provider_plan = None  # `auto` measured both engines and chose OpenVINO
        status = self.runner.cache_status
        self.report.cache_status = "off" if status in ("miss", "pending") else status
        return LoadedModel(self.contract, self.runner, self.sha256, self.path, self.report)

    def _discard(self) -> None:
        if self.runner is not None:
            self.runner.discard_pending()

    def _open_cache(self):
        """The per-machine cache (optimised graphs, compiled blobs, engine choices), or None."""
        if not store.enabled():
            return None
        try:
            return store.CacheDir()
        except store.Refused as exc:
            self.report.cache_warning = f"optimised-graph cache not used: {exc}"
            return None

    # --- machine facts ---------------------------------------------------------------
    def _unusable(self, listed: list[str]) -> dict:
        """The GPU providers ONNX Runtime lists that cannot work on this machine, and why.
        What it lists is not what works: PyPI's GPU build lists TensorRT and CUDA everywhere."""
        return unusable_gpu_providers(listed, self.facts.nvidia_gpu(), self.facts.library_error)

    def _compute(self, engine: str) -> str:
        """fp32 or bf16 for this engine (policy.compute_precision); the report says why."""
        m = self.contract.model
        bf16 = engine == "openvino" and m.precision == "fp32" and self.facts.bf16(self.opt.openvino_device)
        compute, self.report.precision_reason = policy.compute_precision(
            self.opt.precision, engine, m.precision, bf16, (self.contract.parity or {}).get("bf16"))
        return compute

    # --- runners ---------------------------------------------------------------------
    def _runner(self, engine: str):
        cache = self.cache
        if engine == "openvino":
            from .openvino_runner import OpenVinoRunner

            return OpenVinoRunner(self.source, self.contract.model.precision, self._compute(engine), self.opt.threads,
                                  device=self.opt.openvino_device, cache=cache if self.path is not None else None,
                                  model_sha256=self.sha256, first_batch=self.contract.model.batch or 1)
        from .ort_runner import OrtRunner

        self._compute(engine)  # validates the request (bf16 needs OpenVINO)
        plan = self._plan()
        graph_cache = cache if (self.path is not None and plan.names == ["CPUExecutionProvider"]) else None
        engine_dir = dict(plan.providers).get("TensorrtExecutionProvider", {}).get("trt_engine_cache_path")
        fresh = engine_dir is not None and not tensorrt.cached_engines(engine_dir)
        if fresh and self.on_status is not None:
            self.on_status("building the TensorRT engine for this model (first run with this model, precision and "
                           "TensorRT on this GPU; this can take minutes, and is cached for later runs)")
        t0 = time.perf_counter()
        runner = OrtRunner(self.source, plan, self.contract.model.precision, self.opt.threads, self.opt.spinning,
                           graph_cache, self.sha256, why_unusable=lambda p: self._unusable([p]).get(p))
        if engine_dir is not None and runner.device == "TensorrtExecutionProvider":
            self.report.engine_built = fresh
            if fresh:
                self.report.engine_build_s = time.perf_counter() - t0
                if self.on_status is not None:
                    self.on_status(f"TensorRT engine built in {self.report.engine_build_s:.1f} s, cached in {engine_dir}")
        return runner

    def _plan(self) -> ProviderPlan:
        """ONNX Runtime's providers for this model: the request against what is listed and
        usable here, TensorRT left out (with the reason) where it cannot build this model."""
        available = self.facts.onnxruntime_providers()
        unusable = self._unusable(available)
        plan = plan_providers(self.opt.providers, available, unusable=unusable)
        by_reason: dict[str, list[str]] = {}
        for name, why in plan.skipped.items():
            by_reason.setdefault(why, []).append(SHORT.get(name, name))
        if by_reason:
            self.report.notes.append("; ".join(f"{' and '.join(names)} not used: {why}" for why, names in by_reason.items()))
        if "TensorrtExecutionProvider" in plan.names:
            m, pre = self.contract.model, self.contract.preprocess
            skipped = tensorrt.check_allowed(plan.requested, m.precision, self.contract.parity)
            if skipped:
                self.trt_skipped = f"TensorRT skipped: {skipped}"
                available = [p for p in available if p != "TensorrtExecutionProvider"]
                plan = plan_providers(self.opt.providers, available, unusable=unusable)
            else:
                trt = tensorrt.options(
                    cache_base=self.opt.tensorrt.cache_dir or default_trt_cache_dir(), model_sha256=self.sha256,
                    precision=m.precision, input_name=m.input_name, input_shape=pre.input_shape(),
                    static_batch=m.batch, ort_version=deps.onnxruntime().__version__,
                    trt_version=gpu.tensorrt_version(), gpu=gpu.gpu_name(), fp16=self.opt.tensorrt.fp16,
                    max_batch=self.measure_batch)
                plan = plan_providers(self.opt.providers, available, trt, unusable)
        self.report.provider_plan = plan
        return plan

    # --- the measured choice ---------------------------------------------------------
    def _auto_choice(self) -> policy.EngineChoice:
        """Both engines installed, nothing forces one: the measured choice for this model,
        CPU and engine versions (measured now and remembered), or the prior without a cache."""
        if (self.opt.precision or "").lower() == "bf16":
            return policy.EngineChoice("openvino", "--precision bf16 runs on OpenVINO only")
        m = self.contract.model
        barred = {e: why for e in policy.ENGINES if (why := policy.unverified(e, m.precision, self.contract.parity))}
        if len(barred) == 1:
            (other, why), = barred.items()
            keep = next(e for e in policy.ENGINES if e != other)
            return policy.EngineChoice(keep, f"{other} not considered: {why}")
        small = policy.small_run(self.opt.images_hint, [e for e in policy.ENGINES if e not in barred])
        if small is not None:
            return small
        if self.cache is None or m.batch:
            return policy.prior(m.precision, self._compute("openvino") == "bf16")
        key = policy.choice_key(self.sha256, policy.cpu_signature(), policy.engine_versions(self.installed),
                                self.opt.precision, self.opt.threads)
        known = policy.load_choice(self.cache, key)  # before anything imports the engine that is not chosen
        if known is not None and known.settled:
            choice = policy.pick(policy.combine(known.samples))
            choice.reason = "measured on this machine earlier: " + choice.reason.split(": ", 1)[-1]
            choice.samples = known.samples
            return choice
        runners, failed = {}, {}
        for e in policy.ENGINES:
            try:
                runners[e] = self._runner(e)
            except EdgeClassifyError:
                raise
            except Exception as exc:  # one engine cannot run this graph (an op it lacks): the other can
                failed[e] = f"{type(exc).__name__}: {first_line(exc)}"
        if failed:
            if not runners:
                raise EdgeClassifyError(f"cannot load model {self.name}: "
                                        + "; ".join(f"{e}: {why}" for e, why in failed.items()),
                                        hint="re-export it with `export-model`")
            (engine, self.runner), = runners.items()
            return policy.EngineChoice(engine, "; ".join(f"{e} cannot load this model ({why})"
                                                         for e, why in failed.items()))
        sample = np.random.default_rng(0).uniform(-120, 150, self.contract.preprocess.input_shape(1)).astype(np.float32)
        try:
            for r in runners.values():
                r.check(self.contract, self.name)  # before running anything
            samples = (known.samples if known else []) + [policy.measure(runners, sample, min(self.measure_batch, 8))]
            choice = policy.pick(policy.combine(samples))
            choice.samples, choice.fresh = samples, True
        except Exception:
            for r in runners.values():
                r.discard_pending()
            raise
        for e, r in runners.items():
            if e == choice.engine:
                self.runner = r
            else:
                r.close()
        policy.save_choice(self.cache, key, choice)
        choice.reason = (f"measured now (run {len(samples)} of {policy.SAMPLES} that measure): "
                         + choice.reason.split(": ", 1)[-1])
        return choice


def _digest(path: Path, cache) -> tuple[os.stat_result, str, bool]:
    """(stat, sha256, whether it was hashed now) of a model file: the cache's memo for this
    exact file if it has one (77 ms saved on a 97 MiB model), else hashed now."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            known = cache.remembered_digest(st) if cache is not None else None
            return (st, known, False) if known else (st, store.sha256_fd(fd), True)
        finally:
            os.close(fd)
    except OSError as exc:
        raise EdgeClassifyError(f"cannot read model {path}: {exc.strerror or exc}") from None


def _changed(path: Path, before: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return True
    return (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != (
        before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns)


def _read_contract(source, name) -> ModelContract:
    """The contract from the model's metadata, read before any engine loads the graph."""
    try:
        meta = onnx_meta.metadata(source)
    except (onnx_meta.NotOnnx, OSError) as exc:
        raise EdgeClassifyError(f"cannot load model {name}: not a readable ONNX model ({first_line(exc)})",
                                hint="re-export it with `export-model`") from None
    return ModelContract.from_metadata(meta, name)
