"""Dynamic batching's rules (runtime/serve/batcher.py), with a stand-in classifier whose
batches the test can hold and count: concurrent images share a batch up to the maximum, a
lone image is not held back by the queue delay, the queue's bound is exact and always
returns to zero, and an image whose request expired or gave up is never run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import encode
from PIL import Image

from edge_classify.runtime.errors import InputError
from edge_classify.runtime.images.preprocess import DEFAULT_DECODE
from edge_classify.runtime.model.contract import PreprocessSpec
from edge_classify.runtime.serve.batcher import Batcher, Busy, Expired

SPEC = PreprocessSpec.keras("caffe", (8, 8))


class HeldClassifier:
    """``run`` waits for ``gate`` and records each batch's size; a row's 'probabilities' are
    its first three input values, so each answer can be traced to its image."""

    def __init__(self):
        self.contract = SimpleNamespace(preprocess=SPEC)
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.batches: list[int] = []

    def run(self, x):
        self.started.set()
        assert self.gate.wait(30), "the test never released the batch"
        self.batches.append(len(x))
        return x.reshape(len(x), -1)[:, :3].copy()


@pytest.fixture
def pool():
    with ThreadPoolExecutor(2) as p:
        yield p


def make(clf, pool, **kw):
    args = dict(max_batch=4, max_delay_s=0.005, max_queue=16, decode_pool_=pool, decode=DEFAULT_DECODE)
    return Batcher(clf, **{**args, **kw})


def rows(n, start=0):
    return np.stack([np.full(SPEC.input_shape(), start + k, np.float32) for k in range(n)])


def test_concurrent_images_share_batches_up_to_the_maximum(pool):
    clf = HeldClassifier()
    b = make(clf, pool)
    clf.gate.clear()
    b.admit(1)
    first = b.submit_tensor(rows(1), 30)
    assert clf.started.wait(30)  # the first batch is running (held): the rest queue behind it
    futures = []
    for k in range(6):
        b.admit(1)
        futures += b.submit_tensor(rows(1, start=10 + k), 30)
    clf.gate.set()
    got = [f.result(30).probabilities[0] for f in first + futures]
    assert got == [0, 10, 11, 12, 13, 14, 15]  # each answer is its own image's
    assert clf.batches == [1, 4, 2]
    b.close(30)
    assert b.depth == 0


def test_a_lone_image_does_not_wait_for_the_queue_delay(pool):
    clf = HeldClassifier()
    b = make(clf, pool, max_delay_s=120.0)  # were the delay applied, the result would take 2 minutes
    b.admit(2)
    futures = b.submit_tensor(rows(2), 300)
    assert [f.result(30).probabilities[0] for f in futures] == [0, 1]
    assert clf.batches == [2]
    b.close(30)


def test_the_queue_bound_is_exact_and_returns_to_zero(pool):
    clf = HeldClassifier()
    b = make(clf, pool, max_queue=3)
    clf.gate.clear()
    b.admit(3)
    with pytest.raises(Busy):
        b.admit(1)
    futures = b.submit_tensor(rows(3), 30)
    clf.gate.set()
    for f in futures:
        f.result(30)
    b.close(30)
    assert b.depth == 0
    with pytest.raises(Busy, match="shutting down"):
        b.admit(1)


def test_expired_and_abandoned_images_are_never_run(pool):
    clf = HeldClassifier()
    b = make(clf, pool)
    clf.gate.clear()
    b.admit(1)
    running = b.submit_tensor(rows(1), 30)
    assert clf.started.wait(30)
    b.admit(3)
    expired = b.submit_tensor(rows(1, start=5), 0.0)  # its deadline has passed before its batch forms
    abandoned = b.submit_tensor(rows(1, start=6), 30)
    kept = b.submit_tensor(rows(1, start=7), 30)
    assert abandoned[0].cancel()  # its request gave up (timeout, disconnect)
    clf.gate.set()
    with pytest.raises(Expired):
        expired[0].result(30)
    assert kept[0].result(30).probabilities[0] == 7 and running[0].result(30).probabilities[0] == 0
    assert clf.batches == [1, 1]  # the second batch held only the kept image
    b.close(30)
    assert b.depth == 0


def test_encoded_images_are_decoded_and_a_bad_one_fails_alone(pool, photos):
    clf = HeldClassifier()
    b = make(clf, pool, max_delay_s=30.0)  # the batch waits while the other is decoding; it fails there
    jpeg = encode(Image.open(photos[1]).convert("RGB"), "JPEG", quality=90)
    b.admit(2)
    good, bad = b.submit_encoded([jpeg, b"not an image"], 30)
    with pytest.raises(InputError):
        bad.result(30)
    scored = good.result(30)
    assert scored.timings_ms["batch"] == 1 and scored.timings_ms["decode"] > 0
    b.close(30)
    assert b.depth == 0


def test_close_answers_what_is_queued(pool):
    clf = HeldClassifier()
    b = make(clf, pool)
    clf.gate.clear()
    b.admit(5)
    futures = b.submit_tensor(rows(5), 30)
    assert clf.started.wait(30)
    closer = threading.Thread(target=b.close, args=(30,))
    closer.start()
    clf.gate.set()
    closer.join(60)
    assert [f.result(0).probabilities[0] for f in futures] == [0, 1, 2, 3, 4]
