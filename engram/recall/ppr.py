"""Personalized PageRank from the similarity seeds: recall's mode="ppr".

HippoRAG's retrieval (Gutierrez et al. 2024): the query's seeds personalise a
random walk with restart over the association graph, and the stationary
probability of each memory ranks it:

    p = restart * s + (1 - restart) * P^T p         s: seed activations, summing to 1
                                                    P: weights normalised per source

It is computed as the series p = restart * sum_t y_t with y_0 = s and
y_{t+1} = (1 - restart) P^T y_t: each step is one gather over the CSR through
the kernels (eg_spread_gather, with decay = 1 - restart and the normalised
weights), so it runs in every backend. The mass still walking after t steps
is at most (1 - restart)^t; the series stops when it falls below
``tolerance``, after ``iterations`` steps, or when the next step would end
past the deadline (partial). Contributions below ``epsilon`` are dropped, which
keeps the support local (the push approximation of Andersen, Chung and Lang
2006 bounds the error the same way). Normalising per source cancels a source
fan discount (fan="source" walks like "none"); the target fan still counts.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from engram.kernels.spreadrun import CsrGraph, SpreadParams

UNTOUCHED = 255


def normalized(graph: CsrGraph) -> CsrGraph:
    """The same CSR with each source's out-weights scaled to sum to 1 (P of the walk)."""
    deg = np.diff(graph.offsets.astype(np.int64))
    src = np.repeat(np.arange(deg.size), deg)
    total = np.bincount(src, weights=graph.weights, minlength=deg.size)
    w = (graph.weights / total[src]).astype(np.float32)
    return CsrGraph._trusted(graph.offsets, graph.targets, w)


class _Scratch(threading.local):
    """Per-thread dense buffers over the nodes, cleared where touched after each query."""

    def __init__(self):
        self.n = -1

    def take(self, n: int):
        if self.n < n:
            self.p = np.zeros(n, np.float32)
            self.first = np.full(n, UNTOUCHED, np.uint8)
            self.v = np.empty(1024, np.uint32)
            self.s = np.empty(1024, np.float32)
            self.n = n
        return self

    def out(self, need: int):
        if self.v.shape[0] < need:
            self.v = np.empty(need, np.uint32)
            self.s = np.empty(need, np.float32)
        return self.v, self.s


_scratch = _Scratch()


@dataclass
class PprOutcome:
    nodes: np.ndarray           # uint32, in order of first reach (seeds first)
    mass: np.ndarray            # float32, PageRank probability
    hops: np.ndarray            # uint8, the step that first reached each (0: seeds)
    partial: bool
    steps: int
    walking: float              # mass still walking when the series stopped


def personalized_pagerank(kern, graph: CsrGraph, degree: np.ndarray, seeds: np.ndarray, weight: np.ndarray, *,
                          restart: float, iterations: int, tolerance: float, epsilon: float,
                          deadline_ns: int | None = None) -> PprOutcome:
    """PageRank personalised on ``seeds`` (weights > 0, normalised here) over ``graph``,
    whose weights must already be normalised per source (normalized())."""
    sc = _scratch.take(graph.n_nodes)
    g = (graph.offsets, graph.targets, graph.weights)
    params = SpreadParams(1, 1.0 - restart, epsilon, 0.0, 8)
    seeds = np.asarray(seeds, np.int64)
    uniq, first, inv = np.unique(seeds, return_index=True, return_inverse=True)   # every support is distinct
    keep = np.sort(first)                       # the seeds in the order given (recall relies on it)
    y = (np.bincount(inv, weights=weight)[inv[keep]] / max(float(weight.sum()), 1e-30)).astype(np.float32)
    ids = seeds[keep].astype(np.uint32)
    order = [seeds[keep]]
    sc.first[ids] = 0
    partial, steps, last_ns = False, 0, 0
    try:
        while True:
            sc.p[ids] += np.float32(restart) * y
            walking = float(y.sum()) * (1.0 - restart)
            if steps >= iterations or walking < tolerance or ids.size == 0:
                break
            t0 = time.perf_counter_ns()
            if deadline_ns is not None and t0 + last_ns > deadline_ns:
                partial = True
                break
            v, s = sc.out(min(int(degree[ids].sum()), graph.n_nodes))   # distinct targets: at most n
            got = kern._gather(g, params, ids, y, kern.gather_acc(graph.n_nodes), v, s)
            if got < 0:
                from engram.errors import KernelError
                raise KernelError(f"{kern.name} spread_gather returned error {got} in personalized PageRank")
            ids, y = v[:got].copy(), s[:got].copy()
            steps += 1
            new = ids[sc.first[ids] == UNTOUCHED]
            sc.first[new] = min(steps, UNTOUCHED - 1)
            order.append(new.astype(np.int64))
            last_ns = time.perf_counter_ns() - t0
        nodes = np.concatenate(order)
        mass, hops = sc.p[nodes].copy(), sc.first[nodes].copy()
        nodes = nodes.astype(np.uint32)
    finally:
        touched = np.concatenate(order)
        sc.p[touched] = 0.0
        sc.first[touched] = UNTOUCHED
    return PprOutcome(nodes, mass, hops, partial, steps, walking)
