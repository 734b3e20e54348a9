"""The function table every backend offers, with one validating front end.

``KernelTable.cosine_topk`` / ``dot_topk`` check their inputs once, here, and
then call the backend's ``_topk`` with trusted arrays. Internal callers that
have already validated (the store) call ``_topk`` directly.
"""
from __future__ import annotations

import numpy as np

from ..errors import DimensionError, InvalidInputError, NonFiniteError

ROW_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
METRICS = ("cosine", "dot")


def as_query(query, dim: int | None = None, what: str = "query") -> np.ndarray:
    """A finite, contiguous f32 vector; raises a clear error otherwise."""
    q = np.asarray(query)
    if q.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be numeric, got dtype {q.dtype}")
    if q.ndim != 1:
        raise InvalidInputError(f"{what} must be a 1-D vector, got shape {q.shape}")
    if dim is not None and q.shape[0] != dim:
        raise DimensionError(f"{what} has {q.shape[0]} dimensions, expected {dim}")
    q = np.ascontiguousarray(q, dtype=np.float32)
    if not np.isfinite(q).all():
        raise NonFiniteError(f"{what} contains NaN or infinity; remove or replace those values")
    return q


def as_rows(rows) -> np.ndarray:
    if not isinstance(rows, np.ndarray) or rows.ndim != 2:
        raise InvalidInputError("rows must be a 2-D numpy array (n, dim)")
    if rows.dtype not in ROW_DTYPES:
        raise InvalidInputError(f"rows must be float32 or float16, got {rows.dtype}")
    if rows.shape[1] > 1 and rows.strides[1] != rows.itemsize:
        raise InvalidInputError("rows must be contiguous along the last axis (use np.ascontiguousarray)")
    if rows.shape[0] > 1 and rows.strides[0] % rows.itemsize:
        raise InvalidInputError("rows' row stride must be a multiple of the element size")
    if rows.shape[0] > 1 and rows.strides[0] < 0:
        raise InvalidInputError("rows must have a positive row stride")
    return rows


def as_mask(mask, n: int):
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != (n,):
        raise InvalidInputError(f"mask must have shape ({n},), got {m.shape}")
    if m.dtype != np.uint8:
        if m.dtype != np.bool_:
            raise InvalidInputError(f"mask must be bool or uint8, got {m.dtype}")
        m = m.view(np.uint8)
    return np.ascontiguousarray(m)


class KernelTable:
    """One backend's kernels. Subclasses implement ``_topk``."""

    name = "?"
    isa = "-"

    def cosine_topk(self, query, rows, k: int = 10, mask=None):
        """Top-k rows by cosine similarity to query: (indices int64, scores f32), best first."""
        return self._checked_topk("cosine", query, rows, k, mask)

    def dot_topk(self, query, rows, k: int = 10, mask=None):
        """Top-k rows by dot product with query: (indices int64, scores f32), best first."""
        return self._checked_topk("dot", query, rows, k, mask)

    def _checked_topk(self, metric, query, rows, k, mask):
        rows = as_rows(rows)
        q = as_query(query, rows.shape[1])
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InvalidInputError(f"k must be a non-negative integer, got {k!r}")
        return self._topk(metric, q, rows, int(k), as_mask(mask, rows.shape[0]))

    def _topk(self, metric, q, rows, k, mask):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"<engram kernels {self.name} isa={self.isa}>"


class NativeTable(KernelTable):
    """C or Zig kernels of one ISA variant, called through the Cython driver."""

    def __init__(self, name: str, lib, isa: str):
        from .._cy.scan import TopKKernel
        self.name, self.lib, self.isa = name, lib, isa
        self.path = lib.path
        self._fns = {}
        for metric in METRICS:
            for dt, size in ((np.float32, 4), (np.float16, 2)):
                op = f"{metric}_topk_{np.dtype(dt).name.replace('float', 'f')}"
                self._fns[metric, np.dtype(dt)] = TopKKernel(lib.address(op, isa), size)

    def _topk(self, metric, q, rows, k, mask):
        k = min(k, rows.shape[0])
        idx = np.empty(k, np.int64)
        score = np.empty(k, np.float32)
        got = self._fns[metric, rows.dtype](q, rows, mask, idx, score)
        if got < 0:
            from ..errors import KernelError
            raise KernelError(f"{self.name}/{self.isa} {metric}_topk returned error {got}")
        return idx[:got], score[:got]
