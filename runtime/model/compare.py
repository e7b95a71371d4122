"""One comparison of two models' probabilities, for every place that compares them.

The export gate against Keras, INT8 and BF16 fidelity against FP32 and the benchmarks'
|dp| against Keras all call ``compare`` and get a ``Comparison``: max / mean abs
difference, top-1 agreement, top-5 overlap, top-k identity (tie-aware) and, like
Polygraphy's comparator, the failures that say how far off a failed gate is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# The keys of a fidelity figure (INT8 / BF16 vs FP32) as stored in a model's contract.
FIDELITY_KEYS = ("images", "top1_agreement", "top5_overlap", "max_abs_diff", "mean_abs_diff")


@dataclass(frozen=True)
class Comparison:
    images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # fraction of images whose top-1 class is identical
    top5_overlap: float  # mean fraction of the reference's top-5 classes also in the candidate's top-5
    topk: int
    topk_identical: float  # fraction whose top-k lists are identical in order
    topk_tie_aware: float  # ... allowing swaps of classes whose reference probs differ <= atol
    atol: float
    passed: bool
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["failures"] = list(self.failures)
        if math.isinf(self.atol):  # JSON has no infinity: a comparison without a tolerance
            d["atol"] = None
        return d

    def fidelity(self) -> dict:
        """The short figure a reduced precision's contract carries (see FIDELITY_KEYS)."""
        return {k: getattr(self, k) for k in FIDELITY_KEYS}

    def summary(self) -> str:
        return (
            f"max|dp|={self.max_abs_diff:.3g} mean|dp|={self.mean_abs_diff:.3g} "
            f"top-1 {self.top1_agreement:.0%} top-{self.topk} {self.topk_identical:.0%} "
            f"over {self.images} image(s)"
        )


ParityReport = Comparison  # the name export's parity gate used


def topk_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """Top-k class indices per row, highest first; ties broken by lower index (stable)."""
    k = min(k, probs.shape[-1])
    return np.argsort(-probs, axis=-1, kind="stable")[..., :k]


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    atol: float = math.inf,
    topk: int = 5,
    require: str = "none",
    min_top1: float | None = None,
) -> Comparison:
    """Compare probabilities of shape (N, classes).

    What must hold for ``passed``: ``max_abs_diff <= atol``; ``require`` ``"topk"`` (every
    image's top-k identical, up to swaps of classes tied within atol in the reference),
    ``"top1"`` (top-1 identical) or ``"none"``; and top-1 agreement >= ``min_top1`` if given.
    Without any of these (a fidelity measurement), it always passes.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"shape mismatch: {ref.shape} vs {cand.shape}")
    diff = np.abs(ref - cand)
    tr, tc = topk_indices(ref, topk), topk_indices(cand, topk)
    identical = np.all(tr == tc, axis=1)
    # A swap between two classes whose reference probabilities are within atol is noise.
    rows = np.arange(len(ref))[:, None]
    tie_ok = np.all((tr == tc) | (np.abs(ref[rows, tr] - ref[rows, tc]) <= atol), axis=1)
    top1 = tr[:, 0] == tc[:, 0]
    t5r, t5c = topk_indices(ref, 5), topk_indices(cand, 5)
    overlap = [len(set(a) & set(b)) / t5r.shape[1] for a, b in zip(t5r, t5c)]
    max_diff = float(diff.max()) if diff.size else 0.0
    agreement = float(top1.mean()) if len(ref) else 1.0
    failures = []
    if max_diff > atol:
        failures.append(f"max abs probability difference {max_diff:.3g} > tolerance {atol:.3g}")
    if require == "topk" and not tie_ok.all():
        failures.append(f"top-{topk} differs on {int((~tie_ok).sum())} of {len(ref)} image(s)")
    if require == "top1" and not top1.all():
        failures.append(f"top-1 differs on {int((~top1).sum())} of {len(ref)} image(s)")
    if min_top1 is not None and agreement < min_top1:
        failures.append(f"top-1 agreement {agreement:.3f} < {min_top1}")
    return Comparison(
        images=len(ref),
        max_abs_diff=max_diff,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        top1_agreement=agreement,
        top5_overlap=float(np.mean(overlap)) if overlap else 1.0,
        topk=topk,
        topk_identical=float(identical.mean()) if len(ref) else 1.0,
        topk_tie_aware=float(tie_ok.mean()) if len(ref) else 1.0,
        atol=atol,
        passed=not failures,
        failures=tuple(failures),
    )
