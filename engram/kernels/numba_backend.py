"""The numba backend: the same kernels JIT-compiled from Python.

numba has no float16 on the CPU, so f16 rows are read as uint16 and widened
through a 65,536-entry lookup table (exact, 256 KiB, stays in L2).
"""
from __future__ import annotations

from types import SimpleNamespace

import numba
import numpy as np

from engram.kernels import spread_steps
from engram.kernels.table import KernelTable

HALF_TO_FLOAT = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@numba.njit(cache=True, inline="always")
def _worse(sa, ia, sb, ib):
    return sa < sb or (sa == sb and ia > ib)


@numba.njit(cache=True)
def _sift_down(score, idx, i, size):
    s, x = score[i], idx[i]
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and _worse(score[c + 1], idx[c + 1], score[c], idx[c]):
            c += 1
        if not _worse(score[c], idx[c], s, x):
            break
        score[i], idx[i] = score[c], idx[c]
        i = c
    score[i], idx[i] = s, x


@numba.njit(cache=True)
def _push(score, idx, size, k, s, x):
    """Push (s, x) into the bounded heap; returns the new size."""
    if size < k:
        i = size
        while i > 0:
            p = (i - 1) // 2
            if not _worse(s, x, score[p], idx[p]):
                break
            score[i], idx[i] = score[p], idx[p]
            i = p
        score[i], idx[i] = s, x
        return size + 1
    if _worse(score[0], idx[0], s, x):
        score[0], idx[0] = s, x
        _sift_down(score, idx, 0, size)
    return size


@numba.njit(cache=True)
def _finish(score, idx, size):
    end = size
    while end > 1:
        score[0], score[end - 1] = score[end - 1], score[0]
        idx[0], idx[end - 1] = idx[end - 1], idx[0]
        _sift_down(score, idx, 0, end - 1)
        end -= 1
    return size


SAFE_LO, SAFE_HI = np.float32(1e-28), np.float32(1e28)


@numba.njit(cache=True)
def _cosine_exact(q, qn, rows, lut, i):
    """Cosine in float64, for rows whose squares overflow or underflow float32."""
    dot = 0.0
    rr = 0.0
    for j in range(q.shape[0]):
        if lut is None:
            x = np.float64(rows[i, j])
        else:
            x = np.float64(lut[rows[i, j]])
        dot += np.float64(q[j]) * x
        rr += x * x
    den = qn * np.sqrt(rr)
    return np.float32(dot / den) if den > 0 else np.float32(0.0)


@numba.njit(cache=True)
def _topk(q, rows, lut, mask, use_mask, norms, use_norms, cosine, out_idx, out_score):
    # lut is None for f32 rows: numba prunes the branch at compile time
    n, dim = rows.shape
    k = out_idx.shape[0]
    size = 0
    qn = 1.0
    if cosine:
        acc = 0.0
        for j in range(dim):
            acc += np.float64(q[j]) * q[j]
        qn = np.sqrt(acc)
    q_extreme = cosine and qn > 0 and (qn < 1e-14 or qn > 1e14)
    for i in range(n):
        if use_mask and mask[i] == 0:
            continue
        dot = np.float32(0.0)
        rr = np.float32(0.0)
        for j in range(dim):
            if lut is None:
                x = np.float32(rows[i, j])
            else:
                x = lut[rows[i, j]]
            dot += q[j] * x
            rr += x * x
        s = dot
        if cosine and use_norms:
            rr = norms[i] * norms[i]
        if cosine:
            if q_extreme or not (rr > SAFE_LO and rr < SAFE_HI) or not (abs(dot) < SAFE_HI):
                s = _cosine_exact(q, qn, rows, lut, i)
            else:
                den = np.float32(qn) * np.float32(np.sqrt(rr))
                s = dot / den if den > 0 else np.float32(0.0)
        size = _push(out_score, out_idx, size, k, np.float32(s), i)
    return _finish(out_score, out_idx, size)


class NumbaTable(KernelTable):
    name = "numba"
    isa = "llvm-jit"

    @property
    def _steps(self):          # split hops: spread_steps' gather/merge, compiled (defined below)
        return _split_steps

    def _topk(self, metric, q, rows, k, mask, norms=None):
        k = min(k, rows.shape[0])
        idx = np.empty(k, np.int64)
        score = np.empty(k, np.float32)
        f16 = rows.dtype == np.float16
        r = rows.view(np.uint16) if f16 else rows
        m = mask if mask is not None else np.empty(0, np.uint8)
        nr = norms if norms is not None else np.empty(0, np.float32)
        got = _topk(q, r, HALF_TO_FLOAT if f16 else None, m, mask is not None, nr, norms is not None,
                    metric == "cosine", idx, score) if k else 0
        return idx[:got], score[:got]

    def _decay(self, s, a, kind, p):
        out = np.empty_like(s)
        _decay(s, a, kind, np.float32(p[0]), np.float32(p[1]), np.float32(p[2]), out)
        return out

    def _crc32c(self, view, crc):
        return int(_crc32c(np.frombuffer(view, np.uint8), crc, CRC_TABLE))

    def _seed(self, sc, g, seeds, seed_act, p):
        return _seed(seeds, seed_act, sc.epoch, sc.state["mark"], sc.state["act"], sc.nodes)


_seed = numba.njit(cache=True)(spread_steps.seed)
_split_steps = SimpleNamespace(gather=numba.njit(cache=True)(spread_steps.gather),
                               merge=numba.njit(cache=True)(spread_steps.merge),
                               fire_range=numba.njit(cache=True)(spread_steps.fire_range))


@numba.njit(cache=True, inline="always")
def _exp(x):
    # 0 below -87, like the C and Zig kernels: subnormal results are slow to compute with
    return np.exp(x) if x > -87.0 else np.float32(0.0)


@numba.njit(cache=True)
def _decay(s, a, kind, p0, p1, p2, out):
    for i in range(s.shape[0]):
        if kind == 0:
            out[i] = s[i] * _exp(-a[i] / p0)
        elif kind == 1:
            out[i] = s[i] * _exp(-p0 * np.log1p(a[i]))
        else:
            out[i] = s[i] * (p2 * _exp(-a[i] / p0) + (np.float32(1.0) - p2) * _exp(-a[i] / p1))


CRC_TABLE = np.zeros(256, np.uint32)
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    CRC_TABLE[_i] = _c


@numba.njit(cache=True)
def _crc32c(data, crc, table):
    c = np.uint32(crc) ^ np.uint32(0xFFFFFFFF)
    for i in range(data.shape[0]):
        c = (c >> np.uint32(8)) ^ table[(c ^ np.uint32(data[i])) & np.uint32(0xFF)]
    return c ^ np.uint32(0xFFFFFFFF)
