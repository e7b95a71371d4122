"""``Classifier``: an exported model, loaded once, classifying images many times.

Loading is the loader's (engines/loader.py: the engine, precision, providers, cache and
checks, with a ``LoadReport`` saying why); a ``Classifier`` holds what it returned and
runs it: decoding on a small thread pool while the previous batch infers
(images/decode_pool.py), batches of ``batch_size``, the contract's preprocessing, the
model's head turned into probabilities, top-k and multi-label thresholds, and the row
every output writes (results.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .engines.loader import LoadedModel, LoadReport, load
from .engines.options import EngineOptions
from .engines.runners import Runner
from .errors import EXIT_USAGE, EdgeClassifyError, InputError
from .host.facts import MachineFacts
from .images import codec_messages, decode_pool, fast_decode, preprocess
from .images.preprocess import DEFAULT_DECODE, DecodeOptions, ImageInput
from .model import heads
from .model.compare import topk_indices
from .model.contract import ModelContract
from .results import Classification, Prediction, Producer, row


class Classifier:
    """An exported model with its contract, ready to classify.

    ``model`` is a path or the serialized ONNX bytes; ``options`` say how to run it (engine,
    providers, device, precision, threads: ``EngineOptions``). ``batch_size``: images per
    inference. ``decode``: the decoder's limits and quirks (``DecodeOptions``).
    ``threshold``: for a multi-label model, the score above which a label counts (default:
    the one exported with it, else 0.5). ``decode_threads``: threads decoding files ahead of
    inference (default: the cores, at most 4); a process sharing the machine with others (a
    Ray actor) gives its own share. ``decode.decode="auto"`` is resolved here against the
    model's evidence (images/fast_decode.py): ``decode_options`` holds ``exact`` or ``fast``,
    ``decode_reason`` says why. ``facts``: the machine, when not this one (tests).
    ``on_status``: hears of long one-time steps (a TensorRT engine build, before and after);
    the library prints nothing itself. What loading decided and why is ``report``.
    """

    def __init__(self, model: str | os.PathLike | bytes, options: EngineOptions | None = None, *,
                 batch_size: int = 8, decode: DecodeOptions = DEFAULT_DECODE, threshold: float | None = None,
                 decode_threads: int | None = None, facts: MachineFacts | None = None,
                 on_status: Callable[[str], None] | None = None):
        _check_sizes(batch_size, decode_threads)
        loaded = load(model, options, facts, measure_batch=batch_size, on_status=on_status)
        self._setup(loaded, batch_size, decode, threshold, decode_threads)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, *, batch_size: int = 8, decode: DecodeOptions = DEFAULT_DECODE,
                    threshold: float | None = None, decode_threads: int | None = None) -> "Classifier":
        """A classifier over a model the caller loaded (``engines.loader.load``)."""
        _check_sizes(batch_size, decode_threads)
        self = cls.__new__(cls)
        self._setup(loaded, batch_size, decode, threshold, decode_threads)
        return self

    @classmethod
    def from_runner(cls, runner: Runner, contract: ModelContract, *, model_sha256: str = "",
                    report: LoadReport | None = None, **kwargs) -> "Classifier":
        """A classifier over a runner built elsewhere (benchmarks, a server holding runners);
        the runner is checked against ``contract`` here."""
        from .engines.policy import EngineChoice

        runner.check(contract, "model")
        report = report or LoadReport(EngineChoice(runner.engine, "given"))
        return cls.from_loaded(LoadedModel(contract, runner, model_sha256, None, report), **kwargs)

    def _setup(self, loaded: LoadedModel, batch_size: int, decode: DecodeOptions, threshold: float | None,
               decode_threads: int | None) -> None:
        self.contract, self.runner, self.report = loaded.contract, loaded.runner, loaded.report
        self.model_sha256, self.model_path = loaded.model_sha256, loaded.model_path
        mode, self.decode_reason = fast_decode.choose(decode.decode, (self.contract.parity or {}).get("fast_decode"))
        self.batch_size, self.decode_options = batch_size, replace(decode, decode=mode)
        m = self.contract.model
        self.threshold = None
        if m.multi_label:  # the caller's, else the one exported with the model, else 0.5
            self.threshold = next(t for t in (threshold, m.threshold, heads.DEFAULT_THRESHOLD) if t is not None)
        self.decode_threads = decode_threads or decode_pool.default_threads()
        self.producer = Producer(self.model_sha256, m.precision, self.runner.precision, self.runner.engine,
                                 self.runner.provider)

    @property
    def labels(self):
        return self.contract.labels

    # --- running ---------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model input tensor (N, ...) -> probabilities (N, classes), whatever N is."""
        m = self.contract.model
        step = m.batch or self.batch_size  # a static-batch graph: its own batch (the runner pads the last)
        outs = [self.runner.run(batch[i : i + step]) for i in range(0, len(batch), step)]
        out = np.concatenate(outs) if outs else np.zeros((0, m.width), np.float32)
        return heads.probabilities(out, m.head, m.output)

    def warmup(self, batch_sizes: Sequence[int] | None = None) -> dict:
        """Run one blank batch of each size (default: 1 and ``batch_size``) and return the
        milliseconds each took. Loading already built a TensorRT engine; what runs do lazily
        (cuDNN's algorithm search per input shape, an engine's first-run allocations) happens
        here, so the first real image or frame is served at full speed."""
        fixed = self.contract.model.batch
        sizes = [fixed] if fixed else sorted(set(batch_sizes or (1, self.batch_size)))
        took = {}
        for n in sizes:
            t0 = time.perf_counter()
            self.run(np.zeros(self.contract.preprocess.input_shape(n), np.float32))
            took[n] = (time.perf_counter() - t0) * 1000.0
        return took

    def predict(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Images -> probabilities (N, classes). Raises ``InputError`` on a bad image."""
        images = [images] if _is_single(images) else list(images)
        tensor = preprocess.preprocess(images, self.contract.preprocess, self.decode_options)
        return self.run(tensor)

    def classify(self, images: ImageInput | Iterable[ImageInput], top_k: int = 5,
                 errors: str = "raise") -> list[Classification]:
        """Classify images (paths, encoded bytes or decoded arrays), top ``top_k`` each.

        ``errors="raise"`` raises ``InputError`` for the first unreadable image;
        ``errors="collect"`` records it in that image's ``Classification.error`` and goes on.
        """
        if errors not in ("raise", "collect"):
            raise ValueError("errors must be 'raise' or 'collect'")
        return list(self.iter_classify(images, top_k, errors))

    def iter_classify(self, images: ImageInput | Iterable[ImageInput], top_k: int = 5,
                      errors: str = "raise") -> Iterator[Classification]:
        """Like ``classify`` but yields results as batches finish (input order kept)."""
        top_k = max(1, min(top_k, len(self.labels)))
        with codec_messages.held():  # stderr keeps one path, and its order, for the whole run
            yield from self._classified(images, top_k, errors)

    def _classified(self, images, top_k: int, errors: str) -> Iterator[Classification]:
        sources = iter([images]) if _is_single(images) else iter(images)
        for items in decode_pool.batches(sources, self.contract.preprocess, self.decode_options, self.batch_size,
                                         self.decode_threads):
            for res in self.classify_prepared(items, top_k):
                if res.error is not None and errors == "raise":
                    raise InputError(f"{res.source}: {res.error}")
                yield res

    def classify_prepared(self, items: Sequence[decode_pool.Prepared], top_k: int) -> list[Classification]:
        """Images already decoded and resized (``decode_pool.prepare``) -> their results, in
        order: one inference over those without an error. The one place a batch becomes
        results, for files (``iter_classify``) and for many streams at once (apps/multistream.py)."""
        top_k = max(1, min(top_k, len(self.labels)))
        good = [it for it in items if it.error is None]
        probs = None
        t_norm = t_inf = 0.0
        if good:
            t0 = time.perf_counter()
            tensor = preprocess.normalize(np.stack([it.image for it in good]), self.contract.preprocess)
            t1 = time.perf_counter()
            probs = self.run(tensor)
            t_norm, t_inf = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        rows = iter(probs if probs is not None else ())
        return [Classification(it.source, error=it.error, notes=it.notes) if it.error is not None else
                self.classification(it.source, next(rows), top_k, notes=it.notes, decode=it.decode, timings_ms={
                    "decode": round(it.decode_ms, 3), "normalize": round(t_norm, 3),
                    "inference": round(t_inf, 3), "batch": len(good)})
                for it in items]

    def classification(self, source: str, p: np.ndarray, top_k: int, *, timings_ms: dict | None = None,
                       notes: list[str] | None = None, decode: str | None = None) -> Classification:
        """One image's probabilities (a row of ``run``'s output) -> its ``Classification``: the
        top ``top_k`` and, for a multi-label model, every label against the threshold. Whoever
        ran the batch (this class, a server's batcher) names the image by ``source``."""
        if not np.isfinite(p).all():  # a NaN makes the ranking meaningless: per image
            return Classification(source, error="the model produced non-finite scores (NaN or infinity) for this "
                                                 "image", notes=list(notes or ()))
        top_k = max(1, min(top_k, len(self.labels)))
        return Classification(source, self._top(p, top_k), **self._multi_label(p), timings_ms=dict(timings_ms or {}),
                              notes=list(notes or ()), decode=decode)

    def _multi_label(self, p: np.ndarray) -> dict:
        if self.threshold is None:
            return {}
        above = self._top(p, len(p))
        return {"scores": {n: float(v) for n, v in zip(self.labels.names, p)}, "threshold": self.threshold,
                "positive": [q for q in above if q.probability > self.threshold]}

    def _top(self, p: np.ndarray, k: int) -> list[Prediction]:
        names, wnids = self.labels.names, self.labels.wnids
        return [Prediction(int(i), wnids[i], names[i], float(p[i])) for i in topk_indices(p, k)]

    def row(self, result: Classification, **extra) -> dict:
        """The row a result becomes in every output (results.py)."""
        return row(result, self.producer, **extra)


def _check_sizes(batch_size: int, decode_threads: int | None) -> None:
    if batch_size < 1:
        raise EdgeClassifyError("batch size must be at least 1", exit_code=EXIT_USAGE)
    if decode_threads is not None and decode_threads < 1:
        raise EdgeClassifyError("decode threads must be at least 1", exit_code=EXIT_USAGE)


def _is_single(images) -> bool:
    return isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray))
