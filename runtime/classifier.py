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
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import codec_messages, deps, model_check, preprocess, session_cache
from .compare import topk_indices
from .contract import ModelContract
from .errors import EdgeClassifyError, InputError, first_line
from .preprocess import DEFAULT_DECODE, DecodeOptions, ImageInput
from .providers import SHORT, check_used, plan_providers, tensorrt_options


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


class Classifier:
    """An exported model with its contract, ready to classify.

    ``model`` is a path or the serialized ONNX bytes. ``providers`` is ``auto``, ``cpu``,
    ``cuda`` or ``tensorrt`` (see providers.py); ``available_providers`` overrides what
    onnxruntime reports (for tests). ``spinning=False`` stops ONNX Runtime's worker
    threads from busy-waiting inside a run; turn it off when several sessions run back to
    back in one process (see ``_session_options``).
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
    ):
        ort = deps.onnxruntime()
        if batch_size < 1:
            raise EdgeClassifyError("batch size must be at least 1", exit_code=2)
        self.batch_size = batch_size
        self.decode_options = decode
        self.spinning = spinning
        self.cache_status, self.cache_warning = "off", None
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
        try:
            available = available_providers if available_providers is not None else ort.get_available_providers()
            self.plan = plan_providers(providers, available)
            if "TensorrtExecutionProvider" in self.plan.names:
                # The contract sizes TensorRT's optimisation profile, but lives in the model:
                # read it first with a throwaway metadata-only look.
                contract = _read_contract(ort, source, name)
                h, w = contract.preprocess.input_size
                shape = (h, w, 3) if contract.preprocess.layout == "NHWC" else (3, h, w)
                trt = tensorrt_options(
                    trt_cache_dir, trt_fp16, contract.model.input_name, shape,
                    None if contract.model.batch else batch_size,
                )
                self.plan = plan_providers(providers, available, trt)
            if self.model_path is not None:
                cache = self._open_cache()
                model_stat, self.model_sha256, hashed = _digest(self.model_path, cache)
            self._load(ort, source, name, _session_options(ort, threads, spinning), cache, model_stat, hashed)
        finally:
            if cache is not None:
                cache.close()
        self.provider, self.provider_warning = check_used(self.plan, self.session.get_providers())
        self._input = self.contract.model.input_name
        self._output = self.contract.model.output_name
        self._fixed_batch = self.contract.model.batch
        self._width_checked = False
        self._name = name
        self._workers = max(1, min(4, os.cpu_count() or 1))

    def _open_cache(self):
        """The optimised-graph cache, for CPU-only sessions of a model file; None otherwise."""
        if self.plan.names != ["CPUExecutionProvider"] or not session_cache.enabled():
            return None
        try:
            return session_cache.CacheDir()
        except session_cache.Refused as exc:
            self.cache_warning = f"optimised-graph cache not used: {exc}"
            return None

    def _load(self, ort, source, name, so, cache, model_stat, hashed: bool) -> None:
        """Session, contract and its checks; then, and only then, the cache entry."""
        pending = None
        try:
            self.session, pending = self._create_session(ort, source, so, cache)
            if model_stat is not None and _changed(self.model_path, model_stat):
                # Hashed one file, loaded another: the cache key and model_sha256 would lie.
                raise EdgeClassifyError(f"model {name} changed while it was being loaded",
                                        hint="run again once the file is complete")
            self.contract = ModelContract.from_metadata(self.session.get_modelmeta().custom_metadata_map, name)
            model_check.check(self.contract, self.session.get_inputs(), self.session.get_outputs(), name)
            if cache is not None:  # only a model that passed its checks is cached
                if hashed:
                    cache.remember_digest(model_stat, self.model_sha256)
                if pending is not None:
                    tmp, key = pending
                    pending = None
                    self.cache_status = "stored" if cache.commit(tmp, key) else "off"
        except EdgeClassifyError:
            raise
        except Exception as exc:  # onnxruntime raises its own types for unreadable models
            raise EdgeClassifyError(
                f"cannot load model {name}: {first_line(exc)}",
                hint="re-export it with `export-model`",
            ) from None
        finally:
            if pending is not None:
                cache.discard(pending[0])

    def _create_session(self, ort, source, so, cache):
        """(session, (temporary name, key) of a cache entry to commit, or None)."""
        if cache is None:
            return ort.InferenceSession(source, so, providers=self.plan.providers), None
        key = session_cache.entry_key(self.model_sha256, ort.__version__, "all")
        hit = cache.lookup(key)
        if hit is not None:
            fd, path = hit
            fast = _session_options(ort, so.intra_op_num_threads, self.spinning)
            fast.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                session = ort.InferenceSession(path, fast, providers=self.plan.providers)
                self.cache_status = "hit"
                return session, None
            except Exception:  # a damaged entry: rebuilt below
                cache.discard(f"{key}.onnx")
            finally:
                os.close(fd)
        tmp, tmp_path = cache.reserve(key)
        try:
            so.optimized_model_filepath = tmp_path
            return ort.InferenceSession(source, so, providers=self.plan.providers), (tmp, key)
        except Exception:  # full disk, or a broken model (which fails again just below)
            cache.discard(tmp)
            so.optimized_model_filepath = ""
            return ort.InferenceSession(source, so, providers=self.plan.providers), None

    @property
    def provider_short(self) -> str:
        return SHORT.get(self.provider, self.provider)

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
            outs.append(self.session.run([self._output], {self._input: chunk})[0][:n])
        out = np.concatenate(outs) if outs else np.zeros((0, len(self.labels)), np.float32)
        if not self._width_checked and outs:
            model_check.check_output_width(self.contract, out.shape[-1] if out.ndim == 2 else -1, self._name)
            self._width_checked = True
        out = out.astype(np.float32, copy=False)
        if self.contract.model.output == "logits":
            out = _softmax(out)
        return out

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
                    timings_ms={
                        "decode": round(t_decode, 3),
                        "normalize": round(t_norm, 3),
                        "inference": round(t_inf, 3),
                        "batch": len(good),
                    },
                    notes=notes,
                )

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
            return (st, known, False) if known else (st, session_cache.sha256_fd(fd), True)
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


def _session_options(ort, threads: int | None, spinning: bool = True):
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


def _read_contract(ort, source, name) -> ModelContract:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for unreadable models
        raise EdgeClassifyError(f"cannot load model {name}: {first_line(exc)}",
                                hint="re-export it with `export-model`") from None
    return ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map, name)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _is_single(images) -> bool:
    return isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray))


def _as_list(images) -> list:
    return [images] if _is_single(images) else list(images)


def _as_iter(images) -> Iterator:
    return iter([images]) if _is_single(images) else iter(images)
