"""Spreading's shapes: the rules (SpreadParams), a graph checked once (CsrGraph), the
per-thread scratch, and SpreadRun, a spread that advances one hop at a time."""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from engram.errors import InvalidInputError, shown
from engram.kernels.checks import ENOSPACE, as_csr, checked
from engram.layout import SPREAD_STATE_DTYPE

DONE, DEADLINE, SPLIT = 0, 1, 2     # how SpreadRun.budgeted stopped

try:                     # the Cython drivers (built by pip install)
    from engram.kernels._cy.rank import gather_touched
except ImportError:      # pragma: no cover - numpy's spelling of the same gather
    def gather_touched(nodes, state):
        st = state[nodes]
        return st["act"].copy(), (st["mark"] & 0xFF).astype(np.uint8)


@dataclass(frozen=True)
class SpreadParams:
    max_depth: int = 4
    decay: float = 0.7
    threshold: float = 0.01
    cycle_penalty: float = 0.5
    prefetch_distance: int = 8

    def check(self) -> "SpreadParams":
        if isinstance(self.max_depth, bool) or not isinstance(self.max_depth, (int, np.integer)) \
                or not 0 <= self.max_depth <= 255:
            raise InvalidInputError(f"max_depth must be an integer in [0, 255], got {shown(self.max_depth)}")
        for name, lo, hi, lo_open in (("decay", 0.0, 1.0, True), ("threshold", 0.0, 1.0, False),
                                      ("cycle_penalty", 0.0, 1.0, False)):
            v = getattr(self, name)
            interval = f"{'(' if lo_open else '['}{lo}, {hi}]"
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise InvalidInputError(f"{name} must be a number in {interval}, got {shown(v)}")
            try:
                fv = float(v)
            except OverflowError:
                raise InvalidInputError(f"{name} must be in {interval}, got {shown(v)}") from None
            if not np.isfinite(fv) or fv > hi or (fv <= lo if lo_open else fv < lo):
                raise InvalidInputError(f"{name} must be in {interval}, got {shown(v)}")
        if isinstance(self.prefetch_distance, bool) or not isinstance(self.prefetch_distance, (int, np.integer)) \
                or not 0 <= self.prefetch_distance <= 64:
            raise InvalidInputError("prefetch_distance must be an integer in [0, 64], "
                                    f"got {shown(self.prefetch_distance)}")
        if 0 < self.threshold < F32_TINY:
            # kernels compare float32 contributions, which are 0 or >= F32_TINY:
            # a smaller positive threshold means "drop exactly the zeros"
            return replace(self, threshold=F32_TINY)
        return self


F32_TINY = float(np.nextafter(np.float32(0), np.float32(1)))   # smallest positive float32


def echo_ceiling(fire: np.ndarray, decay: float) -> np.float32:
    """A hop's echo ceiling (csrc/kernels/spread.c): decay x the largest activation its
    whole frontier fires, in float32 as the kernels compute it."""
    top = np.float32(fire.max()) if fire.size else np.float32(0.0)
    return np.float32(top * np.float32(decay))


class SpreadScratch(threading.local):
    """Per-thread spreading state, reused across spreads by bumping the epoch."""
    EPOCH_MAX = 0xFFFFFF

    def __init__(self):
        self.state = self.nodes = self.fire = None
        self.epoch = 0
        self.busy = False      # held by an unfinished SpreadRun of this thread
        self.acc = np.zeros(0, np.float32)     # gathering's accumulator (gather_acc)

    def take(self, n_nodes: int) -> "SpreadScratch":
        if self.state is None or self.state.shape[0] < n_nodes:
            cap = max(n_nodes, 1024)
            self.state = np.zeros(cap, SPREAD_STATE_DTYPE)
            self.nodes = np.empty(cap, np.uint32)
            self.fire = np.empty(cap, np.float32)
            self.epoch = 0
        self.epoch += 1
        if self.epoch > self.EPOCH_MAX:       # marks of old epochs could alias: start clean
            self.state["mark"] = 0
            self.epoch = 1
        return self


class CsrGraph:
    """A CSR graph validated once, for repeated spreads: ``k.spread_graph(g, seeds)``.

    Holds u64 offsets[n+1], u32 targets[m] and f32 weights[m]; treat them as
    read-only (the spreads trust what was checked here).
    """
    __slots__ = ("offsets", "targets", "weights")

    def __init__(self, offsets, targets, weights):
        self.offsets, self.targets, self.weights = as_csr(offsets, targets, weights)

    @classmethod
    def _trusted(cls, offsets, targets, weights) -> "CsrGraph":
        """A graph from arrays the engine wrote itself (u64, u32, f32, valid by
        construction): no O(n + m) check. Never for caller-supplied arrays."""
        g = cls.__new__(cls)
        g.offsets, g.targets, g.weights = offsets, targets, weights
        return g

    @property
    def n_nodes(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def n_edges(self) -> int:
        return self.targets.shape[0]

    def __iter__(self):
        return iter((self.offsets, self.targets, self.weights))

    def __repr__(self):
        return f"<CsrGraph {self.n_nodes} nodes, {self.n_edges} edges>"


class SpreadRun:
    """Spreading one hop at a time, so a caller can stop between hops (a latency
    budget) and keep what it has: ``run = k.spread_run(graph, seeds)``, then
    ``run.step()`` per hop and ``run.result()``. Same rules and results as spread().

    A run holds its thread's spreading scratch until result() or close().
    """

    def __init__(self, table, graph, seeds, seed_act, params):
        self._table, self.graph, self.params = table, graph, params
        self._g = (graph.offsets, graph.targets, graph.weights)
        self._sc = table._take_scratch(graph.n_nodes, hold=True)
        self.count = table._seed(self._sc, self._g, seeds, seed_act, params)
        self.begin, self.end, self.hop = 0, self.count, 0
        self._ceiling = np.float32(0.0)       # the echo ceiling of the hop begin_split opened

    @property
    def frontier(self) -> int:
        """Nodes that fire at the next step."""
        return self.end - self.begin

    def frontier_nodes(self) -> np.ndarray:
        """The ids (u32) of the nodes that fire at the next step: a view, valid until it runs."""
        return self._sc.nodes[self.begin:self.end]

    def step(self) -> int:
        """Run one hop; returns the size of the new frontier (0: spreading is over)."""
        if self._sc is None:
            raise InvalidInputError("this SpreadRun is closed")
        if self.begin == self.end or self.hop >= 255:
            return 0
        self.hop += 1
        new = self._table._hop(self._sc, self._g, self.params, self.hop, self.begin, self.end, self.count)
        self.begin, self.end, self.count = self.end, new, new
        return self.end - self.begin

    def budgeted(self, hops: int, model: np.ndarray, batch_size: float, tier_mix: float, deadline_ns: int,
                 split_edges: int, log: np.ndarray):
        """Up to ``hops`` hops in one call where the backend can (the native ones: priced by
        the latency model, stopped at the deadline or before a hop to split; see
        SpreadHopKernel.budgeted); returns (hops run, status) with status 0 (done), 1 (the
        deadline), 2 (the caller runs the next hop: one to split, or a backend without it)."""
        if self._sc is None:
            raise InvalidInputError("this SpreadRun is closed")
        got = self._table._budgeted(self._sc, self._g, self.params, self.begin, self.end, self.count, self.hop,
                                    hops, model, batch_size, tier_mix, deadline_ns, split_edges, log)
        if got is None:
            return 0, SPLIT
        self.begin, self.end, self.count, self.hop, ran, status = got
        if status < 0:
            checked(status, f"{self._table.name} spread_hop")
        return ran, status

    # --- one hop in batches (work stealing: engram/workers/stealing.py) ------------------
    def begin_split(self):
        """Start the next hop without running it: returns (frontier ids u32, what each
        fires f32), to be gathered in batches (gather(), here or in another process)
        and applied with merge(); end_split() closes the hop. Same result as step(),
        up to float summation order."""
        if self._sc is None:
            raise InvalidInputError("this SpreadRun is closed")
        self.hop += 1
        nodes = self._sc.nodes[self.begin:self.end]
        fire = self._sc.fire[self.begin:self.end]
        fire[:] = self._sc.state["act"][nodes]      # what each fires: its act as the hop begins
        self._ceiling = echo_ceiling(fire, self.params.decay)    # the whole frontier's, for every part
        return nodes, fire

    def gather(self, nodes, fire, acc, out_v, out_s) -> int:
        """Gather one batch through this run's kernels (acc: float32[n] of -1)."""
        got = self._table._gather(self._g, self.params, nodes, fire, acc, out_v, out_s)
        return got if got == ENOSPACE else checked(got, f"{self._table.name} spread_gather")

    def fire_part(self, lo: int, hi: int) -> None:
        """Frontier positions [lo, hi) of a split hop fire here, in place (the owner's share)."""
        self.count = checked(self._table._fire(self._sc, self._g, self.params, self.hop, self.begin + lo,
                                               self.begin + hi, self.count, self._ceiling),
                             f"{self._table.name} spread_fire")

    def merge(self, v, s) -> None:
        """Apply one gathered batch (targets, summed contributions) to this hop."""
        self.count = checked(self._table._merge(self._sc, self.params, self.hop, v, s, self.count, self.graph.n_nodes,
                                                self._ceiling), f"{self._table.name} spread_merge")

    def end_split(self) -> int:
        """Close a split hop; returns the size of the new frontier."""
        self.begin, self.end = self.end, self.count
        return self.end - self.begin

    def touched(self):
        """(nodes u32, activation f32, hop u8) of every node touched so far, in first-touch
        order: what recall's ranking reads (the nodes are a copy; the run stays open)."""
        if self._sc is None:
            raise InvalidInputError("this SpreadRun is closed")
        nodes = self._sc.nodes[:self.count].copy()
        return (nodes, *gather_touched(nodes, self._sc.state))

    def result(self, close: bool = True):
        """(nodes int64, activation f32, hop u8) in first-touch order, as spread() returns."""
        if self._sc is None:
            raise InvalidInputError("this SpreadRun is closed")
        nodes = self._sc.nodes[:self.count].astype(np.int64)
        st = self._sc.state[nodes]
        out = nodes, st["act"].copy(), (st["mark"] & 0xFF).astype(np.uint8)
        if close:
            self.close()
        return out

    def close(self) -> None:
        if self._sc is not None:
            self._sc.busy = False
            self._sc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
