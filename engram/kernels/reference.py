"""The numpy backend: the oracle every other backend is tested against.

Computed in float64 from the exact input values (f16 rows are widened
exactly), so its only error is float64 rounding. Clarity over speed.
"""
from __future__ import annotations

import numpy as np

from engram.kernels import spread_steps
from engram.kernels.table import KernelTable


def scores(metric: str, q: np.ndarray, rows: np.ndarray, norms=None) -> np.ndarray:
    """Exact float64 scores of every row (cosine with the given row norms, if any)."""
    r = rows.astype(np.float64)
    qq = q.astype(np.float64)
    # an elementwise product and a per-row sum, not BLAS: BLAS may round two
    # identical rows differently by position, which would break the tie rule
    dots = (r * qq).sum(axis=1)
    if metric == "dot":
        return dots
    rn = np.linalg.norm(r, axis=1) if norms is None else norms.astype(np.float64)
    den = rn * np.linalg.norm(qq)
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
    _steps = spread_steps      # split hops (gather/merge) in plain Python, float32

    def _topk(self, metric, q, rows, k, mask, norms=None):
        idx, s = select_topk(scores(metric, q, rows, norms), k, mask)
        return idx, s.astype(np.float32)

    def _decay(self, s, a, kind, p):
        return decay(s, a, kind, p).astype(np.float32)

    def _crc32c(self, view, crc):
        return crc32c(bytes(view), crc)

    # step-wise spreads (spread_run) follow the same rules in float32, in plain Python
    def _seed(self, sc, g, seeds, seed_act, p):
        return spread_steps.seed(seeds, seed_act, sc.epoch, sc.state["mark"], sc.state["act"], sc.nodes)

    def _spread(self, g, seeds, seed_act, p):
        nodes, act, hops = spread(g[0], g[1], g[2], seeds, seed_act, p.max_depth, p.decay, p.threshold,
                                  p.cycle_penalty)
        return nodes, act.astype(np.float32), hops


def spread(offsets, targets, weights, seeds, seed_act, max_depth, decay, threshold, cycle_penalty,
           compared: list | None = None):
    """The spreading oracle, in float64 (csrc/kernels/spread.c states the same rules).

    Returns (nodes in first-touch order, activations, hop of first touch). Given a
    list as ``compared``, appends to it every contribution it compares with the
    threshold (the differential tests find the near-ties of float32 kernels with it).
    """
    act: dict = {}
    hop_of: dict = {}
    order: list = []
    for s, a in zip(seeds.tolist(), seed_act.tolist()):
        if s not in act:
            act[s], hop_of[s] = 0.0, 0
            order.append(s)
        act[s] = min(1.0, act[s] + a)
    begin, end = 0, len(order)
    for hop in range(1, max_depth + 1):
        if begin == end:
            break
        fire = [act[u] for u in order[begin:end]]
        ceiling = decay * max(fire)         # an echo never lifts a node above this (the hop's)
        for u, a_u in zip(order[begin:end], fire):
            for e in range(int(offsets[u]), int(offsets[u + 1])):
                c = a_u * decay * float(weights[e])
                if compared is not None:
                    compared.append(c)
                if c < threshold:
                    continue
                v = int(targets[e])
                if v not in act:
                    act[v], hop_of[v] = 0.0, hop
                    order.append(v)
                elif hop_of[v] < hop:       # fired already: the echo, up to the ceiling
                    if act[v] < ceiling:
                        act[v] = min(ceiling, 1.0, act[v] + c * cycle_penalty)
                    continue
                act[v] = min(1.0, act[v] + c)
        begin, end = end, len(order)
    nodes = np.array(order, dtype=np.int64)
    return nodes, np.array([act[v] for v in order]), np.array([hop_of[v] for v in order], dtype=np.uint8)


def decay(strength, age, kind: int, p) -> np.ndarray:
    """Forgetting curves in float64 (kind: 0 exponential, 1 power, 2 two-component)."""
    s = strength.astype(np.float64)
    a = age.astype(np.float64)
    if kind == 0:
        return s * np.exp(-a / p[0])
    if kind == 1:
        return s * (1.0 + a) ** -p[0]
    return s * (p[2] * np.exp(-a / p[0]) + (1.0 - p[2]) * np.exp(-a / p[1]))


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


CRC_TABLE = _crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C, one byte at a time (RFC 3720 appendix B.4)."""
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ CRC_TABLE[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF
