"""Oracles for the numpy backend, written here from the kernels' stated rules and
sharing no code with it.

The numpy backend (engram/kernels/reference.py) is the oracle the native
backends are tested against, so comparing it with itself proves nothing: a bug
in the reference would pass as the expected answer. These are plain Python in
float64 (math.fsum, dicts, sorted), organised differently from the reference,
so a bug shared by the reference and the numpy backend shows as a mismatch.
"""
from __future__ import annotations

import math

import numpy as np

from .tolerance import TOLERANCE


def spread(offsets, targets, weights, seeds, seed_act, max_depth, decay, threshold, cycle_penalty,
           prefetch_distance=0):
    """Spreading by the rules csrc/kernels/spread.c states, hop by hop over adjacency lists:
    seeds (duplicates summed, clamped to 1) are hop 0; at hop h every node first touched at
    hop h-1 fires the activation it had when the hop began, to each out-edge: a * decay * w,
    dropped below threshold, times cycle_penalty for a target touched at an earlier hop;
    a target's gains are summed and its activation clamped to 1, and a target touched at an
    earlier hop (an echo) ends the hop at no more than the larger of what it had and
    decay x the largest activation fired in the hop (prefetching only moves memory).
    Returns (nodes in first-touch order, activations, hops), as lists."""
    off = [int(x) for x in np.asarray(offsets).tolist()]
    out = {u: list(zip((int(v) for v in np.asarray(targets)[off[u]:off[u + 1]].tolist()),
                       (float(w) for w in np.asarray(weights)[off[u]:off[u + 1]].tolist())))
           for u in range(len(off) - 1)}
    activation, first_hop, touched = {}, {}, []
    for s, a in zip(np.asarray(seeds).tolist(), np.asarray(seed_act, np.float64).tolist()):
        if s not in first_hop:
            first_hop[s], activation[s] = 0, 0.0
            touched.append(s)
        activation[s] = min(1.0, activation[s] + a)
    frontier = list(touched)
    for hop in range(1, int(max_depth) + 1):
        if not frontier:
            break
        firing = [(u, activation[u]) for u in frontier]
        ceiling = float(decay) * max(a for _, a in firing)
        gains, new = {}, []
        for u, a in firing:
            for v, w in out[u]:
                c = a * float(decay) * w
                if c < threshold:
                    continue
                if v not in first_hop:
                    first_hop[v], activation[v] = hop, 0.0
                    new.append(v)
                    touched.append(v)
                if first_hop[v] < hop:
                    c *= cycle_penalty
                gains[v] = gains.get(v, 0.0) + c
        for v, g in gains.items():
            if first_hop[v] < hop:           # an echo: up to the hop's ceiling, never down
                activation[v] = max(activation[v], min(ceiling, 1.0, activation[v] + g))
            else:
                activation[v] = min(1.0, activation[v] + g)
        frontier = new
    return touched, [activation[v] for v in touched], [first_hop[v] for v in touched]


def check_spread(got, want, what=""):
    """The numpy backend's (nodes, act, hops) against spread() above: nodes and hops
    exactly, activations within the float32 rounding of a float64 value (summation
    order aside, both are float64)."""
    nodes, act, hops = got
    w_nodes, w_act, w_hops = want
    assert nodes.tolist() == w_nodes, f"{what}: touched {nodes.tolist()} != independent {w_nodes}"
    assert hops.tolist() == w_hops, f"{what}: hops {hops.tolist()} != independent {w_hops}"
    rel, ab = TOLERANCE["oracle spread"]
    for v, a, b in zip(w_nodes, act.tolist(), w_act):
        assert abs(a - b) <= rel * b + ab, f"{what}: node {v}: {a} != independent {b}"


def scores(metric: str, q, rows, norms=None) -> list:
    """Each row's score as a Python float: products of the float32/float16/int8 inputs
    are exact in float64, and math.fsum adds them exactly (rounded once)."""
    r = np.asarray(rows, np.float64)
    qq = np.asarray(q, np.float64)
    dots = [math.fsum(p) for p in (r * qq).tolist()]
    if metric == "dot":
        return dots
    q_norm = math.sqrt(math.fsum((qq * qq).tolist()))
    if norms is None:
        row_norms = [math.sqrt(math.fsum(p)) for p in (r * r).tolist()]
    else:
        row_norms = [float(x) for x in np.asarray(norms).tolist()]
    return [d / (n * q_norm) if n * q_norm > 0 else 0.0 for d, n in zip(dots, row_norms)]


def check_topk(metric, q, rows, k, mask, idx, sc, norms=None, what=""):
    """The numpy backend's top-k (idx, sc) against sorted() over scores() above: the
    same rows in the same order (best first, equal scores by lower index), except
    that two different rows whose scores are equal to float64 rounding may swap
    (numpy ranks by its own float64 scores); each score within float32 rounding of
    the exact one."""
    n = rows.shape[0]
    keep = [True] * n if mask is None else [bool(x) for x in np.asarray(mask).tolist()]
    exact = scores(metric, q, rows, norms)
    if metric == "dot":
        qn = math.sqrt(math.fsum((np.asarray(q, np.float64) ** 2).tolist()))
        scale = [max(1.0, qn * math.sqrt(math.fsum(p))) if keep[i] else 1.0
                 for i, p in enumerate((np.asarray(rows, np.float64) ** 2).tolist())]
    else:
        scale = [1.0] * n
    tol = TOLERANCE["oracle topk"]
    want = sorted((i for i in range(n) if keep[i]), key=lambda i: (-exact[i], i))[:int(k)]
    got = idx.tolist()
    assert len(got) == len(want), f"{what}: {len(got)} results, independent {len(want)}"
    for a, b in zip(got, want):
        if a != b:    # only a float64 near-tie may swap two rows; identical rows go lower index first
            assert keep[a] and rows[a].tobytes() != rows[b].tobytes() \
                and abs(exact[a] - exact[b]) <= tol["swap"] * max(scale[a], scale[b]), \
                f"{what}: row {a} (exact {exact[a]}) where the independent top-k has row {b} (exact {exact[b]})"
    for i, s in zip(got, sc.tolist()):
        e = exact[i]
        assert abs(s - e) <= tol["rel"] * abs(e) + tol["scale"] * scale[i] + tol["abs"], \
            f"{what}: row {i} scored {s}, exactly {e}"


def decay(strength, age, curve: str, params: dict) -> list:
    """The forgetting curves of docs/kernels.md, one value at a time:
    exponential s e^(-a/tau); power s (1 + a)^(-beta);
    two_component s (weight e^(-a/tau_fast) + (1 - weight) e^(-a/tau_slow))."""
    out = []
    for s, a in zip(np.asarray(strength, np.float64).ravel().tolist(), np.asarray(age, np.float64).ravel().tolist()):
        if curve == "exponential":
            f = math.exp(-a / params["tau"])
        elif curve == "power":
            f = math.pow(1.0 + a, -params["beta"])
        else:
            w = params["weight"]
            f = w * math.exp(-a / params["tau_fast"]) + (1.0 - w) * math.exp(-a / params["tau_slow"])
        out.append(s * f)
    return out


def check_decay(got, strength, age, curve: str, params: dict, x, what=""):
    """The numpy backend's decay against decay() above: within the float32 rounding of a
    float64 value, plus the float64 rounding of the exponent x (|x| per element), which
    numpy's exp and math.exp carry alike."""
    exact = np.array(decay(strength, age, curve, params)).reshape(np.shape(got))
    tol = TOLERANCE["oracle decay"]
    bound = tol["rel"] * exact + tol["exponent"] * (1 + np.asarray(x)) * exact + tol["abs"]
    assert (np.abs(got - exact) <= bound).all(), f"{what}: numpy {got.tolist()} != independent {exact.tolist()}"


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C bit by bit (reflected Castagnoli polynomial 0x82F63B78), without a table."""
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
    return c ^ 0xFFFFFFFF
