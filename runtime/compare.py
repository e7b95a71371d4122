"""Compare two models' probabilities: the parity check used by export, tests and benchmarks.

Reports the figures (max / mean abs difference, top-k agreement) and, like Polygraphy's
comparator, the tolerance that *would* have passed, so a failure says how far off it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # fraction of images whose top-1 class is identical
    topk: int
    topk_identical: float  # fraction whose top-k lists are identical in order
    topk_tie_aware: float  # ... allowing swaps of classes whose reference probs differ <= atol
    atol: float
    passed: bool
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["failures"] = list(self.failures)
        return d

    def summary(self) -> str:
        return (
            f"max|dp|={self.max_abs_diff:.3g} mean|dp|={self.mean_abs_diff:.3g} "
            f"top-1 {self.top1_agreement:.0%} top-{self.topk} {self.topk_identical:.0%} "
            f"over {self.images} image(s)"
        )


def topk_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """Top-k class indices per row, highest first; ties broken by lower index (stable)."""
    k = min(k, probs.shape[-1])
    return np.argsort(-probs, axis=-1, kind="stable")[..., :k]


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    atol: float,
    topk: int = 5,
    require: str = "topk",
) -> ParityReport:
    """Compare probabilities of shape (N, classes).

    ``require`` says what must hold besides ``max_abs_diff <= atol``: ``"topk"`` (every
    image's top-k identical, up to swaps of classes tied within atol in the reference),
    ``"top1"`` (top-1 identical) or ``"none"``.
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
    max_diff = float(diff.max()) if diff.size else 0.0
    failures = []
    if max_diff > atol:
        failures.append(f"max abs probability difference {max_diff:.3g} > tolerance {atol:.3g}")
    if require == "topk" and not tie_ok.all():
        failures.append(f"top-{topk} differs on {int((~tie_ok).sum())} of {len(ref)} image(s)")
    if require == "top1" and not top1.all():
        failures.append(f"top-1 differs on {int((~top1).sum())} of {len(ref)} image(s)")
    return ParityReport(
        images=len(ref),
        max_abs_diff=max_diff,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        top1_agreement=float(top1.mean()),
        topk=topk,
        topk_identical=float(identical.mean()),
        topk_tie_aware=float(tie_ok.mean()),
        atol=atol,
        passed=not failures,
        failures=tuple(failures),
    )
