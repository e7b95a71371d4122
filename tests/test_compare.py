"""The parity comparator: figures, gates and tie handling."""

from __future__ import annotations

import numpy as np
import pytest

from edge_classify.runtime.model.compare import compare


def probs(rows):
    return np.asarray(rows, dtype=np.float32)


def test_identical_passes():
    p = probs([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    r = compare(p, p.copy(), atol=1e-6, topk=2)
    assert r.passed and r.max_abs_diff == 0 and r.top1_agreement == 1 and r.topk_identical == 1


def test_difference_beyond_tolerance_fails_and_says_by_how_much():
    a = probs([[0.1, 0.6, 0.3]])
    b = probs([[0.1, 0.59, 0.31]])
    r = compare(a, b, atol=1e-3, topk=2)
    assert not r.passed
    assert r.max_abs_diff == pytest.approx(0.01, abs=1e-6)
    assert "tolerance" in r.failures[0]
    assert compare(a, b, atol=0.02, topk=2).passed


def test_topk_order_change_fails_unless_tied():
    a = probs([[0.40, 0.35, 0.25]])
    b = probs([[0.35, 0.40, 0.25]])
    r = compare(a, b, atol=0.1, topk=2)
    assert r.top1_agreement == 0 and r.topk_identical == 0
    assert r.topk_tie_aware == 1  # 0.40 vs 0.35 is within atol=0.1: a tie, not a disagreement
    assert r.passed
    strict = compare(a, b, atol=0.06, topk=2, require="top1")
    assert not strict.passed and "top-1" in strict.failures[-1]


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        compare(np.zeros((2, 3)), np.zeros((3, 3)), atol=1)
