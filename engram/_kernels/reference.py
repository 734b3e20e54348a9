"""The numpy backend: the oracle every other backend is tested against.

Computed in float64 from the exact input values (f16 rows are widened
exactly), so its only error is float64 rounding. Clarity over speed.
"""
from __future__ import annotations

import numpy as np

from .table import KernelTable


def scores(metric: str, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact float64 scores of every row."""
    r = rows.astype(np.float64)
    qq = q.astype(np.float64)
    dots = r @ qq
    if metric == "dot":
        return dots
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(qq)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, dots / np.where(den > 0, den, 1.0), 0.0)


def select_topk(s: np.ndarray, k: int, mask=None):
    """Indices of the k best scores, best first, ties by lower index."""
    idx = np.arange(s.shape[0])
    if mask is not None:
        keep = mask.astype(bool)
        idx, s = idx[keep], s[keep]
    order = np.lexsort((idx, -s))[:k]
    return idx[order].astype(np.int64), s[order]


class NumpyTable(KernelTable):
    name = "numpy"
    isa = "float64"

    def _topk(self, metric, q, rows, k, mask):
        idx, s = select_topk(scores(metric, q, rows), k, mask)
        return idx, s.astype(np.float32)
