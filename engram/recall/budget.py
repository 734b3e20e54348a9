"""The latency budget's machinery: the LatencyPredictor that decides whether the next hop
fits, and the AdaptiveBatcher that sizes the units of hop work from the CPU topology.

Before each hop the predictor estimates its cost from the frontier it will fire; a
hop that would overrun the remaining budget is not started, and the result is
marked partial. Before spreading starts, a request-level estimate larger than
FALLBACK_FACTOR x the budget means recall answers from similarity alone (a
fallback). Both models learn online from every hop and spread they time.
"""
from __future__ import annotations

import functools
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engram.errors import InvalidInputError, shown

FALLBACK_FACTOR = 1.5       # fallback when the estimate exceeds the budget by more than 50%
NO_MODEL = np.zeros(0)
OUTLIER = 2.0               # a hop slower than this x its prediction trains as this x (see observe_hop)


# --- CPU topology and the batch size ----------------------------------------------------------

@dataclass(frozen=True)
class Topology:
    """What the batch size is computed from: logical cores and per-core cache sizes (bytes)."""
    cores: int
    l1d: int
    l2: int
    l3: int

    @classmethod
    def probe(cls, root: str = "/sys/devices/system/cpu/cpu0/cache") -> "Topology":
        """Read /sys; anything missing takes a conservative default (32K/1M/8M)."""
        sizes = {}
        for idx in sorted(Path(root).glob("index*")):
            try:
                level = int((idx / "level").read_text())
                kind = (idx / "type").read_text().strip()
                sizes[(level, kind)] = _size_bytes((idx / "size").read_text())
            except (OSError, ValueError):
                continue
        return cls(cores=len(os.sched_getaffinity(0)),
                   l1d=sizes.get((1, "Data"), 32 << 10),
                   l2=sizes.get((2, "Unified"), 1 << 20),
                   l3=sizes.get((3, "Unified"), 8 << 20))


@functools.lru_cache(maxsize=1)
def topology() -> Topology:
    """This machine's topology, probed once."""
    return Topology.probe()


def _size_bytes(text: str) -> int:
    t = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    return int(t.rstrip("KMG")) * mult


class AdaptiveBatcher:
    """Frontier nodes per unit of hop work (what a worker takes at once).

    The topology gives a target: the geometric mean of what fits in half of
    L2 (each frontier node touches its 64-byte record plus, per edge, 8 bytes
    of target and weight and the 8-byte state of the target), what fits in
    L1d, and 64 per core, as a power of two in [16, 4096]. History adjusts it:
    the measured out-degree of what spreads fire (an EWMA) sets the bytes per
    node. The size starts at the topology's target and moves toward a new
    target by EWMA in log2 space with damping 0.5, snapping once within half
    a power of two (so a 4x shift converges in 3 steps and then holds), and
    it steps at most once per ``interval`` spreads, so it cannot oscillate.
    """

    def __init__(self, topology: Topology | None = None, damping: float = 0.5, interval: int = 500,
                 initial: int | None = None):
        if not 0.0 < damping <= 1.0:
            raise InvalidInputError(f"damping must be in (0, 1], got {shown(damping)}")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise InvalidInputError(f"interval must be an integer >= 1, got {shown(interval)}")
        self.topology = topology or Topology.probe()
        self.damping, self.interval = float(damping), int(interval)
        self._edges_per_node = 8.0        # EWMA of out-degree over the nodes spreads fire
        self.batch_size = self.target() if initial is None else _pow2(initial)
        self._log = math.log2(self.batch_size)
        self.changes = 0
        self._since = 0
        self._lock = threading.Lock()

    def target(self, edges_per_node: float | None = None) -> int:
        """The batch size the topology recommends for nodes of this out-degree."""
        e = self._edges_per_node if edges_per_node is None else max(float(edges_per_node), 0.0)
        node_bytes = 64 + 16 * e
        l2_nodes = (self.topology.l2 / 2) / node_bytes
        l1_nodes = self.topology.l1d / node_bytes
        core_nodes = 64 * max(self.topology.cores, 1)
        return _pow2((l2_nodes * l1_nodes * core_nodes) ** (1 / 3))

    def update(self) -> int:
        """One damped step toward the target; returns the (possibly new) batch size."""
        with self._lock:
            goal = math.log2(self.target())
            self._log = (1 - self.damping) * self._log + self.damping * goal
            if abs(self._log - goal) < 0.5:
                self._log = goal
            new = _pow2(2.0 ** self._log)
            if new != self.batch_size:
                self.batch_size = new
                self.changes += 1
            return self.batch_size

    def observe(self, frontier_nodes: int, frontier_edges: int) -> int:
        """Record one spread's work; every ``interval`` spreads, take one step."""
        with self._lock:
            if frontier_nodes > 0:
                self._edges_per_node = 0.9 * self._edges_per_node + 0.1 * (frontier_edges / frontier_nodes)
            self._since += 1
            due = self._since >= self.interval
            if due:
                self._since = 0
        return self.update() if due else self.batch_size


def _pow2(x: float) -> int:
    x = min(max(float(x), 16.0), 4096.0)
    return 1 << int(round(math.log2(x)))


# --- latency prediction -----------------------------------------------------------------------

class OnlineLinear:
    """Least squares y ~ w . x, learned online: observations are buffered and
    every ``refit`` of them folded into the sufficient statistics (X'X, X'y,
    old ones fading by ``forget`` per sample, since the machine is shared and
    its speed drifts) and the weights re-solved (ridge-regularised, so they are
    defined from the first samples on). predict() is a short dot product."""

    def __init__(self, n_features: int, refit: int = 16, ridge: float = 1e-7, forget: float = 0.999):
        self.n = n_features
        self.refit, self.ridge, self.forget = refit, ridge, forget
        self.xtx = np.zeros((n_features, n_features))
        self.xty = np.zeros(n_features)
        self.w = (0.0,) * n_features
        self.weights = np.zeros(n_features)     # the same, as an array for the C hop loop
        self.count = 0
        self._buf: list = []

    def predict(self, x) -> float:
        return sum(a * b for a, b in zip(self.w, x))

    def observe(self, x, y: float) -> None:
        self._buf.append((*x, y))
        self.count += 1
        if len(self._buf) >= self.refit or self.count <= 4:
            self._fold()

    def observe_rows(self, rows: np.ndarray) -> None:
        """Several observations at once: rows of (features..., y)."""
        self._buf.extend(rows.tolist())
        self.count += rows.shape[0]
        if len(self._buf) >= self.refit or self.count - rows.shape[0] < 4:     # as observe() does
            self._fold()

    def _fold(self) -> None:
        a = np.asarray(self._buf, dtype=np.float64)
        self._buf.clear()
        x, y = a[:, :self.n], a[:, self.n]
        fade = self.forget ** a.shape[0]
        self.xtx = self.xtx * fade + x.T @ x
        self.xty = self.xty * fade + x.T @ y
        scale = np.maximum(np.diag(self.xtx), 1e-12)
        try:
            w = np.linalg.solve(self.xtx + self.ridge * np.diag(scale), self.xty)
            self.w, self.weights = tuple(w.tolist()), w
        except np.linalg.LinAlgError:
            pass


@dataclass
class PredictionStats:
    """Relative errors |predicted - actual| / actual of whole spreads."""
    capacity: int = 4096
    errors: list = field(default_factory=list)

    def add(self, predicted_ns: float, actual_ns: float) -> None:
        if actual_ns > 0:
            if len(self.errors) >= self.capacity:
                del self.errors[: self.capacity // 2]
            self.errors.append(abs(predicted_ns - actual_ns) / actual_ns)

    def summary(self) -> dict:
        if not self.errors:
            return {"requests": 0}
        e = np.asarray(self.errors)
        return {"requests": int(e.size), "p50": float(np.percentile(e, 50)), "p95": float(np.percentile(e, 95)),
                "p99": float(np.percentile(e, 99)), "within_20pct": float((e < 0.2).mean())}


class LatencyPredictor:
    """Online linear models of spreading time, in nanoseconds.

    hop model, asked before each hop: features (1, batch_size, hop, tier_mix,
    frontier nodes, frontier edges, shared edges), where tier_mix is the warm
    fraction of the seeds, frontier edges (the out-degree sum of what will
    fire) is what a hop's time mostly follows, and shared edges is the part
    idle workers gather when the hop is split (0 otherwise).
    spread model, asked before spreading starts (for the fallback): features
    (1, seeds, seed edges, max_depth, tier_mix, batch_size).
    Until ``warmup`` spreads have been seen it predicts nothing (0), so the
    first requests are never refused for want of history.
    """

    HOP_FEATURES = 7
    SPREAD_FEATURES = 6

    def __init__(self, warmup: int = 20):
        self.hop = OnlineLinear(self.HOP_FEATURES, forget=0.995)
        self.spread = OnlineLinear(self.SPREAD_FEATURES)
        self.warmup = warmup
        self.stats = PredictionStats()          # per request: the hop predictions vs those hops' time
        self.spread_stats = PredictionStats()   # per request: the up-front estimate vs the spread's time
        self.hops_seen = 0
        self.spreads_seen = 0
        self._lock = threading.Lock()

    @staticmethod
    def hop_features(batch_size, hop, tier_mix, frontier_nodes, frontier_edges, helpers: int = 0):
        # the last: the edges that idle workers would gather instead (a split hop, engram/workers/stealing.py)
        shared = frontier_edges * helpers / (helpers + 1)
        return (1.0, float(batch_size), float(hop), float(tier_mix), float(frontier_nodes), float(frontier_edges),
                float(shared))

    @staticmethod
    def spread_features(seeds, seed_edges, max_depth, tier_mix, batch_size):
        return (1.0, float(seeds), float(seed_edges), float(max_depth), float(tier_mix), float(batch_size))

    @property
    def ready(self) -> bool:
        return self.spreads_seen >= self.warmup

    def predict_hop(self, x) -> float:
        return max(self.hop.predict(x), 0.0) if self.ready else 0.0

    def hop_model(self) -> np.ndarray:
        """The hop model's weights over hop_features (empty until ready: no prediction), for
        a hop loop that prices hops itself (the native backends' SpreadRun.budgeted)."""
        return self.hop.weights if self.ready else NO_MODEL

    def predict_spread(self, x) -> float:
        return max(self.spread.predict(x), 0.0) if self.ready else 0.0

    def observe_hop(self, x, ns: float, predicted: float = 0.0) -> None:
        """Learn from one hop. A hop that took more than OUTLIER x its prediction was
        preempted or stalled (the machine is shared): it teaches the model only
        OUTLIER x the prediction, so one stall does not inflate every estimate."""
        self.observe_hops(np.array([[*x, ns, predicted]], np.float64))

    def observe_hops(self, log: np.ndarray) -> None:
        """Learn from several hops (a C loop's log): rows of (7 features, ns, prediction),
        each stall clipped as in observe_hop, in the rows themselves."""
        ns, guess = log[:, 7], log[:, 8]
        np.minimum(ns, np.where(guess > 0, OUTLIER * guess, np.inf), out=ns)
        with self._lock:
            self.hop.observe_rows(log[:, :8])
            self.hops_seen += log.shape[0]

    def observe_spread(self, x, ns: float, predicted_ns: float | None) -> None:
        with self._lock:
            self.spread.observe(x, ns)
            self.spreads_seen += 1
            if predicted_ns is not None and self.spreads_seen > self.warmup:
                self.spread_stats.add(predicted_ns, ns)

    def observe_request(self, predicted_ns: float, hop_ns: float) -> None:
        """One request's sum of per-hop predictions against the time those hops took."""
        if self.ready and predicted_ns > 0:
            with self._lock:
                self.stats.add(predicted_ns, hop_ns)
