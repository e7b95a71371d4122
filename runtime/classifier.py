"""``Classifier``: load an exported model once, classify images many times.

Loading (session + contract) is separate from running (``predict`` / ``classify``).
Images are decoded and resized on a small thread pool (OpenCV releases the GIL) while the
previous batch runs, and fed to the model in batches of ``batch_size``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .images import codec_messages, preprocess
from .host import deps
from .engines import policy, tensorrt
from .model import heads, checks, onnx_meta
from .cache import store
from .model.compare import topk_indices
from .model.contract import ModelContract
from .errors import EdgeClassifyError, InputError, first_line
from .images.preprocess import DEFAULT_DECODE, DecodeOptions, ImageInput
from .engines.providers import (GPU_PROVIDERS, SHORT, check_used, default_trt_cache_dir, plan_providers,
                        unusable_gpu_providers)


@dataclass(frozen=True)
class Prediction:
    index: int
    wnid: str | None
    label: str
    probability: float


@dataclass
class Classification:
    source: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    timings_ms: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the decoder said about an image it still classified
    # Multi-label models only: every label's score (label order), and those above the threshold.
    scores: dict[str, float] | None = None
    positive: list[Prediction] | None = None
    threshold: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, **extra) -> dict:
        """The JSON row. ``path`` is always valid UTF-8 (undecodable bytes of a file name
        become U+FFFD); when the name is not UTF-8, ``path_base64`` holds its exact bytes."""
        row = {"path": display_name(self.source, escape_controls=False), **extra}
        raw = path_bytes(self.source)
        if raw is not None:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                row["path_base64"] = base64.b64encode(raw).decode("ascii")
        if self.error is not None:
            row["error"] = self.error
        else:
            row["predictions"] = [
                {"rank": r, "index": p.index, "wnid": p.wnid, "label": p.label, "probability": p.probability}
                for r, p in enumerate(self.predictions, 1)
            ]
            if self.scores is not None:
                row["threshold"] = self.threshold
                row["labels_above_threshold"] = [
                    {"index": p.index, "label": p.label, "probability": p.probability} for p in self.positive]
                row["scores"] = self.scores
            row["timings_ms"] = self.timings_ms
        if self.notes:
            row["notes"] = self.notes
        return row


def path_bytes(source: str) -> bytes | None:
    """A path's bytes as the OS has them (``os.fsdecode`` kept undecodable ones as surrogates)."""
    try:
        return os.fsencode(source)
    except UnicodeEncodeError:
        return None


def display_name(source: str, escape_controls: bool = True) -> str:
    """A file name made safe to print: undecodable bytes as U+FFFD and, for terminals,
    control characters escaped (a newline in a name must not forge an output line)."""
    raw = path_bytes(source)
    text = raw.decode("utf-8", "replace") if raw is not None else source.encode("utf-8", "replace").decode("utf-8")
    if escape_controls:
        text = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
    return text


def _say(message: str) -> None:
    import sys

    print(f"edge-classify: {message}", file=sys.stderr, flush=True)


class Classifier:
    """An exported model with its contract, ready to classify.

    ``model`` is a path or the serialized ONNX bytes. ``engine`` is ``auto``,
    ``onnxruntime`` or ``openvino`` (see policy.py); ``providers`` (ONNX Runtime's) is
    ``auto``, ``cpu``, ``cuda``, ``tensorrt`` or ``openvino`` (see providers.py);
    ``precision`` is ``auto``, ``fp32`` or ``bf16`` (BF16 only on evidence: policy.py).
    ``available_providers`` / ``available_engines`` / ``hardware_bf16`` override what this
    machine reports (for tests). ``images_hint``: how many images this instance will
    classify, when known (the CLI passes it): a small run goes to the engine that starts leaner.
    ``device`` is an OpenVINO device (``CPU``, ``GPU``, ``NPU``, ``AUTO``) and implies the
    openvino engine. ``spinning=False`` stops ONNX Runtime's worker threads
    from busy-waiting inside a run; turn it off when several sessions run back to back in
    one process (see ``ort_runner.session_options``). ``threshold``: for a multi-label model,
    the score above which a label counts (default: the one exported with it, else 0.5).
    ``on_status`` receives the messages around long one-time steps (a TensorRT engine build:
    before, and its duration after); by default they go to stderr, ``None`` silences them.
    ``decode_threads``: threads decoding files ahead of inference (default: the cores, at most
    4); a process sharing the machine with others (a Ray actor) gives its own share.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        providers: str = "auto",
        threads: int | None = None,
        batch_size: int = 8,
        decode: DecodeOptions = DEFAULT_DECODE,
        trt_cache_dir: str | os.PathLike | None = None,
        trt_fp16: bool = True,
        available_providers: list[str] | None = None,
        spinning: bool = True,
        engine: str = "auto",
        precision: str = "auto",
        available_engines: list[str] | None = None,
        hardware_bf16: bool | None = None,
        images_hint: int | None = None,
        device: str | None = None,
        threshold: float | None = None,
        on_status: Callable[[str], None] | None = _say,
        decode_threads: int | None = None,
    ):
        if batch_size < 1:
            raise EdgeClassifyError("batch size must be at least 1", exit_code=2)
        if decode_threads is not None and decode_threads < 1:
            raise EdgeClassifyError("decode threads must be at least 1", exit_code=2)
        self.batch_size = batch_size
        self.decode_options = decode
        self.spinning = spinning
        self.cache_warning = None
        self.provider_warning = None
        self.provider_note = None  # GPU providers ONNX Runtime lists but `auto` left out here, and why
        self.engine_built = None  # TensorRT: True when this load built its engine, False when it reused one
        self.engine_build_s = None
        self._on_status = on_status
        self.precision_reason = ""
        self._threads, self._providers = threads, providers
        self._trt = (trt_cache_dir, trt_fp16)
        self._trt_skipped = None  # why TensorRT was left out for this model, if it was
        self._available_providers = available_providers
        self._hw_bf16 = hardware_bf16
        self._images_hint = images_hint
        installed = policy.installed() if available_engines is None else list(available_engines)
        requested_engine = policy.check_requested(engine, installed, providers, device)
        self._device = device or "CPU"
        self._precision_request = precision
        model_stat = cache = None
        hashed = False
        if isinstance(model, (bytes, bytearray)):
            self.model_path, source, name = None, bytes(model), "model"
            self.model_sha256 = hashlib.sha256(source).hexdigest()
        else:
            self.model_path = Path(model)
            source = name = str(self.model_path)  # by path: ONNX Runtime finds external weights beside it
            if not self.model_path.is_file():
                raise EdgeClassifyError(
                    f"model file not found: {self.model_path}",
                    hint="run `export-model` to create it (or pass --model PATH to an exported .onnx)",
                )
        self._name = name
        self.runner = None
        try:
            if self.model_path is not None:
                cache = self._open_cache()
                model_stat, self.model_sha256, hashed = _digest(self.model_path, cache)
            self.contract = _read_contract(source, name)
            listed = self._ort_providers(installed)
            usable = [p for p in listed if p not in self._unusable(listed)]
            choice = policy.decide_without_measuring(requested_engine, installed, providers, usable)
            if choice is None:
                choice = self._auto_choice(source, cache, installed)
            self.engine_choice = choice
            if self.runner is None:
                self.runner = self._make_runner(choice.engine, source, cache)
            else:  # measured both: the reason must be the chosen engine's
                self._compute(self.runner.engine)
            if model_stat is not None and _changed(self.model_path, model_stat):
                # Hashed one file, loaded another: the cache key and model_sha256 would lie.
                raise EdgeClassifyError(f"model {name} changed while it was being loaded",
                                        hint="run again once the file is complete")
            checks.check(self.contract, self.runner.inputs, self.runner.outputs, name)
            if cache is not None:  # only a model that passed its checks is cached
                if hashed:
                    cache.remember_digest(model_stat, self.model_sha256)
                self.runner.commit_cache()
        except EdgeClassifyError:
            self._discard()
            raise
        except Exception as exc:  # the engines raise their own types for unreadable models
            self._discard()
            raise EdgeClassifyError(
                f"cannot load model {name}: {first_line(exc)}",
                hint="re-export it with `export-model`",
            ) from None
        finally:
            if cache is not None:
                cache.close()
        if self.runner.engine == "onnxruntime":
            self.provider, self.provider_warning = check_used(self.plan, self.session.get_providers(),
                                                              self._why_unusable(self.plan.primary))
            self.provider_warning = self.provider_warning or self.runner.fallback_note or (
                f"TensorRT skipped: {self._trt_skipped}" if self._trt_skipped else None)
        else:
            self.provider = f"OpenVINO {self.runner.device}"  # what JSON rows call the device
        self._fixed_batch = self.contract.model.batch
        m = self.contract.model
        self.threshold = None
        if m.multi_label:  # the caller's, else the one exported with the model, else 0.5
            self.threshold = next(t for t in (threshold, m.threshold, heads.DEFAULT_THRESHOLD) if t is not None)
        self._width_checked = False
        self._workers = decode_threads or max(1, min(4, os.cpu_count() or 1))

    def _discard(self) -> None:
        if self.runner is not None:
            self.runner.discard_pending()

    def _unusable(self, listed: list[str]) -> dict:
        """The GPU providers ONNX Runtime lists that cannot work on this machine, and why.
        What it lists is not what works: PyPI's GPU build lists TensorRT and CUDA everywhere.
        Injected providers (tests) are taken as working."""
        if self._available_providers is not None:
            return {}
        return unusable_gpu_providers(listed, deps.nvidia_gpu_device(), deps.provider_library_error)

    def _why_unusable(self, provider: str) -> str | None:
        if self._available_providers is not None or provider not in GPU_PROVIDERS:
            return None
        return unusable_gpu_providers([provider], deps.nvidia_gpu_device(), deps.provider_library_error).get(provider)

    def _ort_providers(self, installed) -> list[str]:
        if self._available_providers is not None:
            return list(self._available_providers)
        return deps.onnxruntime().get_available_providers() if "onnxruntime" in installed else []

    def _open_cache(self):
        """The per-machine cache (optimised graphs, compiled blobs, engine choices), or None."""
        if not store.enabled():
            return None
        try:
            return store.CacheDir()
        except store.Refused as exc:
            self.cache_warning = f"optimised-graph cache not used: {exc}"
            return None

    def _compute(self, engine: str) -> str:
        """fp32 or bf16 for this engine (policy.compute_precision); remembers why."""
        bf16 = False
        if engine == "openvino" and self.contract.model.precision == "fp32":
            bf16 = self._hw_bf16 if self._hw_bf16 is not None else _openvino_bf16(self._device)
        compute, self.precision_reason = policy.compute_precision(
            self._precision_request, engine, self.contract.model.precision, bf16,
            (self.contract.parity or {}).get("bf16"))
        return compute

    def _make_runner(self, engine: str, source, cache):
        if engine == "openvino":
            from .engines.openvino_runner import OpenVinoRunner

            compute = self._compute(engine)
            return OpenVinoRunner(deps.openvino(), source, self.contract.model.precision, compute, self._threads,
                                  device=self._device, cache=cache if self.model_path is not None else None,
                                  model_sha256=self.model_sha256, first_batch=self._fixed_batch_or(1))
        from .engines.ort_runner import OrtRunner

        self._compute(engine)  # validates the request (bf16 needs OpenVINO)
        ort = deps.onnxruntime()
        available = self._ort_providers(["onnxruntime"])
        unusable = self._unusable(available)
        plan = plan_providers(self._providers, available, unusable=unusable)
        if plan.skipped:
            by_reason = {}
            for name, why in plan.skipped.items():
                by_reason.setdefault(why, []).append(SHORT.get(name, name))
            self.provider_note = "; ".join(f"{' and '.join(names)} not used: {why}" for why, names in by_reason.items())
        if "TensorrtExecutionProvider" in plan.names:
            m, pre = self.contract.model, self.contract.preprocess
            self._trt_skipped = tensorrt.check_allowed(plan.requested, m.precision, self.contract.parity)
            if self._trt_skipped:
                available = [p for p in available if p != "TensorrtExecutionProvider"]
                plan = plan_providers(self._providers, available, unusable=unusable)
            else:
                h, w = pre.input_size
                trt = tensorrt.options(
                    cache_base=self._trt[0] or default_trt_cache_dir(), model_sha256=self.model_sha256,
                    precision=m.precision, input_name=m.input_name,
                    input_shape=(h, w, 3) if pre.layout == "NHWC" else (3, h, w), static_batch=m.batch,
                    ort_version=ort.__version__, trt_version=deps.tensorrt_version(), gpu=deps.gpu_name(),
                    fp16=self._trt[1])
                plan = plan_providers(self._providers, available, trt, unusable)
        graph_cache = cache if (self.model_path is not None and plan.names == ["CPUExecutionProvider"]) else None
        engine_dir = dict(plan.providers).get("TensorrtExecutionProvider", {}).get("trt_engine_cache_path")
        fresh = engine_dir is not None and not tensorrt.cached_engines(engine_dir)
        if fresh and self._on_status is not None:
            self._on_status("building the TensorRT engine for this model (first run with this model, precision and "
                            "TensorRT on this GPU; this can take minutes, and is cached for later runs)")
        t0 = time.perf_counter()
        runner = OrtRunner(ort, source, plan, self.contract.model.precision, self._threads, self.spinning,
                           graph_cache, self.model_sha256)
        if engine_dir is not None and runner.device == "TensorrtExecutionProvider":
            self.engine_built = fresh
            if fresh:
                self.engine_build_s = time.perf_counter() - t0
                if self._on_status is not None:
                    self._on_status(f"TensorRT engine built in {self.engine_build_s:.1f} s, cached in {engine_dir}")
        return runner

    def _fixed_batch_or(self, n: int) -> int:
        return self.contract.model.batch or n

    def _auto_choice(self, source, cache, installed) -> policy.EngineChoice:
        """Both engines installed, nothing forces one: the measured choice for this model,
        CPU and engine versions (measured now and remembered), or the prior without a cache."""
        if (self._precision_request or "").lower() == "bf16":
            return policy.EngineChoice("openvino", "--precision bf16 runs on OpenVINO only")
        m = self.contract.model
        barred = {e: why for e in policy.ENGINES if (why := policy.unverified(e, m.precision, self.contract.parity))}
        if len(barred) == 1:
            (other, why), = barred.items()
            keep = next(e for e in policy.ENGINES if e != other)
            return policy.EngineChoice(keep, f"{other} not considered: {why}")
        small = policy.small_run(self._images_hint, [e for e in policy.ENGINES if e not in barred])
        if small is not None:
            return small
        if cache is None or m.batch:
            return policy.prior(m.precision, self._compute("openvino") == "bf16")
        key = policy.choice_key(self.model_sha256, policy.cpu_signature(), policy.engine_versions(installed),
                                 self._precision_request, self._threads)
        known = policy.load_choice(cache, key)  # before anything imports the engine that is not chosen
        if known is not None and known.settled:
            choice = policy.pick(policy.combine(known.samples))
            choice.reason = "measured on this machine earlier: " + choice.reason.split(": ", 1)[-1]
            choice.samples = known.samples
            return choice
        runners, failed = {}, {}
        for e in policy.ENGINES:
            try:
                runners[e] = self._make_runner(e, source, cache)
            except EdgeClassifyError:
                raise
            except Exception as exc:  # one engine cannot run this graph (an op it lacks): the other can
                failed[e] = f"{type(exc).__name__}: {first_line(exc)}"
        if failed:
            if not runners:
                raise EdgeClassifyError(f"cannot load model {self._name}: "
                                        + "; ".join(f"{e}: {why}" for e, why in failed.items()),
                                        hint="re-export it with `export-model`")
            (engine, runner), = runners.items()
            self.runner = runner
            return policy.EngineChoice(engine, "; ".join(f"{e} cannot load this model ({why})"
                                                          for e, why in failed.items()))
        h, w = self.contract.preprocess.input_size
        shape = (1, h, w, 3) if self.contract.preprocess.layout == "NHWC" else (1, 3, h, w)
        sample = np.random.default_rng(0).uniform(-120, 150, shape).astype(np.float32)
        batch = min(self.batch_size, 8)
        try:
            for r in runners.values():
                checks.check(self.contract, r.inputs, r.outputs, self._name)  # before running anything
            samples = (known.samples if known else []) + [policy.measure(runners, sample, batch)]
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
        policy.save_choice(cache, key, choice)
        choice.reason = (f"measured now (run {len(samples)} of {policy.SAMPLES} that measure): "
                         + choice.reason.split(": ", 1)[-1])
        return choice

    @property
    def plan(self):
        """ONNX Runtime's provider plan (None on the openvino engine)."""
        return getattr(self.runner, "plan", None)

    @property
    def session(self):
        """The ONNX Runtime session (None on the openvino engine)."""
        return getattr(self.runner, "session", None)

    @property
    def cache_status(self) -> str:
        status = self.runner.cache_status if self.runner is not None else "off"
        return "off" if status in ("miss", "pending") else status

    @property
    def provider_short(self) -> str:
        """``cpu``, ``cuda``, ``tensorrt``, ``openvino`` (ONNX Runtime's) or OpenVINO's device (``CPU``)."""
        return SHORT.get(self.runner.device, self.runner.device)

    @property
    def labels(self):
        return self.contract.labels

    # --- running ---------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model input tensor (N, ...) -> probabilities (N, classes), whatever N is."""
        outs = []
        step = self._fixed_batch or self.batch_size
        for i in range(0, len(batch), step):
            chunk = batch[i : i + step]
            n = len(chunk)
            if self._fixed_batch and n < self._fixed_batch:  # static-batch model: pad
                pad = np.zeros((self._fixed_batch - n,) + chunk.shape[1:], chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            outs.append(self.runner.run(chunk)[:n])
        m = self.contract.model
        out = np.concatenate(outs) if outs else np.zeros((0, m.width), np.float32)
        if not self._width_checked and outs:
            checks.check_output_width(self.contract, out.shape[-1] if out.ndim == 2 else -1, self._name)
            self._width_checked = True
        return heads.probabilities(out, m.head, m.output)

    def input_shape(self, n: int) -> tuple:
        """The model input tensor's shape for a batch of ``n`` images."""
        pre = self.contract.preprocess
        h, w = pre.input_size
        return (n, h, w, 3) if pre.layout == "NHWC" else (n, 3, h, w)

    def warmup(self, batch_sizes: Sequence[int] | None = None) -> dict:
        """Run one blank batch of each size (default: 1 and ``batch_size``) and return the
        milliseconds each took. Loading already built a TensorRT engine; what runs do lazily
        (cuDNN's algorithm search per input shape, an engine's first-run allocations) happens
        here, so the first real image or frame is served at full speed."""
        sizes = [self._fixed_batch] if self._fixed_batch else sorted(set(batch_sizes or (1, self.batch_size)))
        took = {}
        for n in sizes:
            t0 = time.perf_counter()
            self.run(np.zeros(self.input_shape(n), np.float32))
            took[n] = (time.perf_counter() - t0) * 1000.0
        return took

    def predict(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Images -> probabilities (N, classes). Raises ``InputError`` on a bad image."""
        images = _as_list(images)
        tensor = preprocess.preprocess(images, self.contract.preprocess, self.decode_options)
        return self.run(tensor)

    def classify(
        self, images: ImageInput | Iterable[ImageInput], top_k: int = 5, errors: str = "raise"
    ) -> list[Classification]:
        """Classify images (paths, encoded bytes or decoded arrays), top ``top_k`` each.

        ``errors="raise"`` raises ``InputError`` for the first unreadable image;
        ``errors="collect"`` records it in that image's ``Classification.error`` and goes on.
        """
        if errors not in ("raise", "collect"):
            raise ValueError("errors must be 'raise' or 'collect'")
        return list(self.iter_classify(images, top_k, errors))

    def iter_classify(
        self, images: ImageInput | Iterable[ImageInput], top_k: int = 5, errors: str = "raise"
    ) -> Iterator[Classification]:
        """Like ``classify`` but yields results as batches finish (input order kept)."""
        top_k = max(1, min(top_k, len(self.labels)))
        with codec_messages.held():  # stderr keeps one path, and its order, for the whole run
            yield from self._classified(images, top_k, errors)

    def _classified(self, images, top_k: int, errors: str) -> Iterator[Classification]:
        for items in self._prepared_batches(_as_iter(images)):
            good = [it for it in items if it[2] is None]
            probs = None
            t_norm = t_inf = 0.0
            if good:
                t0 = time.perf_counter()
                tensor = preprocess.normalize(np.stack([it[1] for it in good]), self.contract.preprocess)
                t1 = time.perf_counter()
                probs = self.run(tensor)
                t2 = time.perf_counter()
                t_norm, t_inf = (t1 - t0) * 1e3, (t2 - t1) * 1e3
            row = 0
            for source, _, err, t_decode, notes in items:
                if err is None:
                    p = probs[row]
                    row += 1
                    if not np.isfinite(p).all():  # a NaN makes the ranking meaningless: per image
                        err = "the model produced non-finite scores (NaN or infinity) for this image"
                if err is not None:
                    if errors == "raise":
                        raise InputError(f"{source}: {err}")
                    yield Classification(source, error=err, notes=notes)
                    continue
                yield Classification(
                    source,
                    self._top(p, top_k),
                    **self._multi_label(p),
                    timings_ms={
                        "decode": round(t_decode, 3),
                        "normalize": round(t_norm, 3),
                        "inference": round(t_inf, 3),
                        "batch": len(good),
                    },
                    notes=notes,
                )

    def _multi_label(self, p: np.ndarray) -> dict:
        if self.threshold is None:
            return {}
        names = self.labels.names
        above = self._top(p, len(p))
        return {"scores": {n: float(v) for n, v in zip(names, p)}, "threshold": self.threshold,
                "positive": [q for q in above if q.probability > self.threshold]}

    def row(self, result: Classification) -> dict:
        """The JSON row a classification becomes (``edge-classify --json`` / ``--output``):
        the result plus which model, engine and precision made it."""
        return result.to_dict(engine=self.runner.engine, provider=self.provider, precision=self.runner.precision,
                              model_sha256=self.model_sha256)

    def _top(self, p: np.ndarray, k: int) -> list[Prediction]:
        idx = topk_indices(p, k)
        names, wnids = self.labels.names, self.labels.wnids
        return [Prediction(int(i), wnids[i], names[i], float(p[i])) for i in idx]

    def _prepare_one(self, source: ImageInput):
        name = preprocess.describe(source)
        t0 = time.perf_counter()
        try:
            img, notes = preprocess.load_with_notes(source, self.decode_options)
            img = preprocess.resize(img, self.contract.preprocess)
        except InputError as exc:
            return name, None, exc.message, 0.0, []
        except MemoryError:
            return name, None, "out of memory while decoding this image", 0.0, []
        except Exception as exc:  # nothing one image does may end the run: a bug, reported per image
            return name, None, f"internal error while decoding: {type(exc).__name__}: {first_line(exc)}", 0.0, []
        return name, img, None, (time.perf_counter() - t0) * 1e3, notes

    def _prepared_batches(self, sources: Iterator[ImageInput]) -> Iterator[list]:
        # Bounded read-ahead: at most two batches decoded ahead of the one running.
        with ThreadPoolExecutor(self._workers, thread_name_prefix="edge-decode") as pool:
            pending: deque = deque()
            limit = 2 * self.batch_size + self._workers
            exhausted = False
            while True:
                while not exhausted and len(pending) < limit:
                    try:
                        pending.append(pool.submit(self._prepare_one, next(sources)))
                    except StopIteration:
                        exhausted = True
                if not pending:
                    return
                n = min(self.batch_size, len(pending))
                yield [pending.popleft().result() for _ in range(n)]


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


def _openvino_bf16(device: str = "CPU") -> bool:
    from .engines.openvino_runner import hardware_bf16

    return hardware_bf16(deps.openvino(), device)


def _is_single(images) -> bool:
    return isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray))


def _as_list(images) -> list:
    return [images] if _is_single(images) else list(images)


def _as_iter(images) -> Iterator:
    return iter([images]) if _is_single(images) else iter(images)
