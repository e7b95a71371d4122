"""Decoding ahead of inference: images are decoded and resized on a small thread pool
(OpenCV releases the GIL) while the previous batch runs, and handed over in batches, in
input order. Nothing one image does ends the run: its failure is its own ``error``.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..errors import InputError, first_line
from ..model.contract import PreprocessSpec
from . import preprocess
from .preprocess import DecodeOptions, ImageInput


@dataclass
class Prepared:
    source: str  # how the input is named in results (preprocess.describe)
    image: np.ndarray | None  # resized to the contract's input size; None on error
    error: str | None = None
    decode_ms: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the decoder said of an image it still decoded
    decode: str | None = None  # which decode ran: "exact", "fast 1/N"; None for arrays (preprocess.Decoded)


def default_threads() -> int:
    """Decoding threads when the caller does not say: the cores this process may use, at most 4."""
    from ..host.cpu import usable_cores

    return max(1, min(4, usable_cores()))


def prepare(source: ImageInput, spec: PreprocessSpec, options: DecodeOptions) -> Prepared:
    name = preprocess.describe(source)
    t0 = time.perf_counter()
    try:
        d = preprocess.load_decoded(source, options, spec.input_size)
        img = preprocess.resize(d.image, spec)
    except InputError as exc:
        return Prepared(name, None, exc.message)
    except MemoryError:
        return Prepared(name, None, "out of memory while decoding this image")
    except Exception as exc:  # nothing one image does may end the run: a bug, reported per image
        return Prepared(name, None, f"internal error while decoding: {type(exc).__name__}: {first_line(exc)}")
    return Prepared(name, img, None, (time.perf_counter() - t0) * 1e3, d.notes, d.decode)


def batches(sources: Iterator[ImageInput], spec: PreprocessSpec, options: DecodeOptions, batch_size: int,
            workers: int) -> Iterator[list[Prepared]]:
    """Batches of up to ``batch_size`` prepared images, with a bounded read-ahead: at most
    two batches decoded ahead of the one the caller is running."""
    with ThreadPoolExecutor(workers, thread_name_prefix="edge-decode") as pool:
        pending: deque = deque()
        limit = 2 * batch_size + workers
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                try:
                    pending.append(pool.submit(prepare, next(sources), spec, options))
                except StopIteration:
                    exhausted = True
            if not pending:
                return
            n = min(batch_size, len(pending))
            yield [pending.popleft().result() for _ in range(n)]
