"""Dynamic batching for one model: images from concurrent requests share inference batches.

One ``Batcher`` per model holds its one ``Classifier`` (one runner) and one inference
thread. Requests hand in images (encoded bytes, decoded on a thread pool while the
previous batch infers, or rows of the model's own input tensor) and get a future per
image. The inference thread takes what is queued, up to ``max_batch``; a smaller batch
waits up to ``max_delay`` for images still being decoded, and never when none are on
their way, so a lone request is not delayed (Triton's rule: as large as possible without
waiting, the delay only to complete a batch). A static-batch model is padded by its runner.

Memory is bounded: ``admit`` refuses a request at once (``Busy``: the server's 503) when
the images already admitted and not yet answered, plus its own, would exceed
``max_queue``. An image whose request gave up (timeout, disconnect) is cancelled and
skipped, never inferred.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, first_line
from ..images import decode_pool, preprocess
from ..images.preprocess import DecodeOptions


class Busy(Exception):
    """The queue cannot take a request's images now (503 with Retry-After)."""


class Expired(Exception):
    """An image's deadline passed before its batch ran: it was not run (504)."""


@dataclass
class Scored:
    """One image's answer: its probabilities (the head applied) and where its time went."""

    probabilities: np.ndarray
    timings_ms: dict
    notes: list[str] = field(default_factory=list)
    decode: str | None = None  # which decode ran (images/fast_decode.py); None for tensors


@dataclass
class _Item:
    x: np.ndarray  # one image, normalised: the model's input without the batch axis
    future: Future
    deadline: float  # time.perf_counter() past which it is not run
    decode_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    decode: str | None = None
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, clf, *, max_batch: int, max_delay_s: float, max_queue: int, decode_pool_: ThreadPoolExecutor,
                 decode: DecodeOptions, on_batch=None):
        self.clf, self.max_batch, self.max_delay_s, self.max_queue = clf, max_batch, max_delay_s, max_queue
        self.spec = clf.contract.preprocess
        self.decode, self._pool, self._on_batch = decode, decode_pool_, on_batch
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._admitted = 0  # images admitted and not yet answered (decoding, queued or inferring)
        self._decoding = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="edge-serve-infer", daemon=True)
        self._thread.start()

    # --- admission -------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Images admitted and not yet answered."""
        return self._admitted

    def admit(self, n: int) -> None:
        """Reserve room for ``n`` images, or raise ``Busy``; every admitted image is released
        when its future is done (answered, failed or cancelled)."""
        with self._cond:
            if self._stopping:
                raise Busy("the server is shutting down")
            if self._admitted + n > self.max_queue:
                raise Busy(f"{self._admitted} image(s) queued, room for {self.max_queue}")
            self._admitted += n

    def _release(self, _future=None) -> None:
        with self._cond:
            self._admitted -= 1

    def _future(self) -> Future:
        f: Future = Future()
        f.add_done_callback(self._release)
        return f

    # --- inputs ----------------------------------------------------------------------
    def submit_encoded(self, blobs: list[bytes], timeout_s: float) -> list[Future]:
        """Encoded images (admitted first): decoded, resized and normalised on the pool; not
        run once ``timeout_s`` has passed."""
        deadline = time.perf_counter() + timeout_s
        futures = [self._future() for _ in blobs]
        with self._cond:
            self._decoding += len(blobs)
        for blob, f in zip(blobs, futures):
            self._pool.submit(self._decode, blob, f, deadline)
        return futures

    def submit_tensor(self, rows: np.ndarray, timeout_s: float) -> list[Future]:
        """Rows of the model's own input tensor (admitted first), queued as they are."""
        deadline = time.perf_counter() + timeout_s
        futures = [self._future() for _ in range(len(rows))]
        with self._cond:
            self._queue.extend(_Item(r, f, deadline) for r, f in zip(rows, futures))
            self._cond.notify()
        return futures

    def _decode(self, blob: bytes, f: Future, deadline: float) -> None:
        item = None
        try:
            if not f.cancelled():
                p = decode_pool.prepare(blob, self.spec, self.decode)
                if p.error is not None:
                    _fail(f, InputError(p.error))
                else:
                    x = preprocess.normalize(p.image[None], self.spec)[0]
                    item = _Item(x, f, deadline, p.decode_ms, p.notes, p.decode)
        except Exception as exc:  # never lose a future: a bug here is this image's 500
            _fail(f, exc)
        finally:
            with self._cond:
                self._decoding -= 1
                if item is not None:
                    self._queue.append(item)
                self._cond.notify()

    # --- the inference thread --------------------------------------------------------
    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None  # stopping, nothing left
            until = time.perf_counter() + self.max_delay_s
            while len(self._queue) < self.max_batch and self._decoding and not self._stopping:
                left = until - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            t0 = time.perf_counter()
            for it in items:
                if t0 > it.deadline:
                    _fail(it.future, Expired())
            # (cancelled: its request gave up; done: expired just now)
            items = [it for it in items if not it.future.done() and it.future.set_running_or_notify_cancel()]
            if not items:
                continue
            try:
                probs = self.clf.run(np.stack([it.x for it in items]))
            except Exception as exc:
                for it in items:
                    _fail(it.future, exc)
                continue
            t_inf = (time.perf_counter() - t0) * 1e3
            if self._on_batch is not None:
                self._on_batch(len(items))
            for it, p in zip(items, probs):
                timings = {"decode": round(it.decode_ms, 3), "queue": round((t0 - it.queued) * 1e3, 3),
                           "inference": round(t_inf, 3), "batch": len(items)}
                it.future.set_result(Scored(p, timings, it.notes, it.decode))

    def close(self, timeout: float | None = None) -> None:
        """Answer what is queued, then stop the inference thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)


def _fail(f: Future, exc: BaseException) -> None:
    if not f.done():
        try:
            f.set_exception(exc if isinstance(exc, (InputError, Expired)) else
                            RuntimeError(f"internal error: {type(exc).__name__}: {first_line(exc)}"))
        except Exception:  # cancelled meanwhile
            pass
