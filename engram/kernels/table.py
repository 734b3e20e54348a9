"""The function table every backend offers, with one validating front end.

``KernelTable.cosine_topk`` / ``dot_topk`` check their inputs once, here, and
then call the backend's ``_topk`` with trusted arrays. Internal callers that
have already validated (the store) call ``_topk`` directly.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from engram.errors import DimensionError, InvalidInputError, NonFiniteError

ROW_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int8))
DTYPE_TAG = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.int8): "i8"}
METRICS = ("cosine", "dot")


def _finite_f32(a: np.ndarray, what: str) -> np.ndarray:
    """C-contiguous float32 of a numeric array with no NaN, inf or float32 overflow."""
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{what} contains NaN or infinity; remove or replace those values")
    with np.errstate(over="ignore"):
        a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{what} has values beyond the float32 range (|x| > 3.4e38)")
    return a


def as_query(query, dim: int | None = None, what: str = "query") -> np.ndarray:
    """A finite, contiguous f32 vector; raises a clear error otherwise."""
    q = np.asarray(query)
    if q.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be numeric, got dtype {q.dtype}")
    if q.ndim != 1:
        raise InvalidInputError(f"{what} must be a 1-D vector, got shape {q.shape}")
    if dim is not None and q.shape[0] != dim:
        raise DimensionError(f"{what} has {q.shape[0]} dimensions, expected {dim}")
    return _finite_f32(q, what)


def as_queries(queries, dim: int) -> np.ndarray:
    """A finite, C-contiguous (m, dim) float32 batch."""
    qs = np.asarray(queries)
    if qs.dtype.kind not in "fiu":
        raise InvalidInputError(f"queries must be numeric, got dtype {qs.dtype}")
    if qs.shape[1] != dim:
        raise DimensionError(f"queries have {qs.shape[1]} dimensions, expected {dim}")
    return _finite_f32(qs, "queries")


def as_rows(rows) -> np.ndarray:
    if not isinstance(rows, np.ndarray) or rows.ndim != 2:
        raise InvalidInputError("rows must be a 2-D numpy array (n, dim)")
    if rows.dtype not in ROW_DTYPES:
        raise InvalidInputError(f"rows must be float32, float16 or int8, got {rows.dtype}")
    if rows.shape[0] == 0:
        return rows   # numpy gives empty arrays arbitrary (even zero) strides: nothing to check
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
            raise InvalidInputError(f"max_depth must be an integer in [0, 255], got {self.max_depth!r}")
        for name, lo, hi, lo_open in (("decay", 0.0, 1.0, True), ("threshold", 0.0, 1.0, False),
                                      ("cycle_penalty", 0.0, 1.0, False)):
            v = getattr(self, name)
            interval = f"{'(' if lo_open else '['}{lo}, {hi}]"
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise InvalidInputError(f"{name} must be a number in {interval}, got {v!r}")
            try:
                fv = float(v)
            except OverflowError:
                raise InvalidInputError(f"{name} must be in {interval}, got {v!r}") from None
            if not np.isfinite(fv) or fv > hi or (fv <= lo if lo_open else fv < lo):
                raise InvalidInputError(f"{name} must be in {interval}, got {v!r}")
        if isinstance(self.prefetch_distance, bool) or not isinstance(self.prefetch_distance, (int, np.integer)) \
                or not 0 <= self.prefetch_distance <= 64:
            raise InvalidInputError(f"prefetch_distance must be an integer in [0, 64], got {self.prefetch_distance!r}")
        if 0 < self.threshold < F32_TINY:
            # kernels compare float32 contributions, which are 0 or >= F32_TINY:
            # a smaller positive threshold means "drop exactly the zeros"
            return replace(self, threshold=F32_TINY)
        return self


F32_TINY = float(np.nextafter(np.float32(0), np.float32(1)))   # smallest positive float32


class SpreadScratch(threading.local):
    """Per-thread spreading state, reused across spreads by bumping the epoch."""
    EPOCH_MAX = 0xFFFFFF

    def __init__(self):
        self.state = self.nodes = self.fire = None
        self.epoch = 0
        self.busy = False      # held by an unfinished SpreadRun of this thread
        self.acc = np.zeros(0, np.float32)     # gathering's accumulator (gather_acc)

    def take(self, n_nodes: int) -> "SpreadScratch":
        from engram.layout import SPREAD_STATE_DTYPE
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


DECAY_CURVES = {"exponential": (0, ("tau",)), "power": (1, ("beta",)),
                "two_component": (2, ("tau_fast", "tau_slow", "weight"))}


def decay_params(curve, params):
    """(kind, (p0, p1, p2)) for a curve and its named parameters, validated."""
    if curve not in DECAY_CURVES:
        raise InvalidInputError(f"unknown decay curve {curve!r}; choose one of {', '.join(DECAY_CURVES)}")
    kind, names = DECAY_CURVES[curve]
    extra = set(params) - set(names)
    missing = [n for n in names if n not in params]
    if extra or missing:
        raise InvalidInputError(f"curve {curve!r} takes {', '.join(names)}"
                                + (f"; unknown: {', '.join(sorted(extra))}" if extra else "")
                                + (f"; missing: {', '.join(missing)}" if missing else ""))
    vals = []
    for n in names:
        v = params[n]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise InvalidInputError(f"{n} must be a finite number, got {v!r}")
        ok = {"tau": v > 0, "tau_fast": v > 0, "tau_slow": v > 0, "beta": v >= 0, "weight": 0 <= v <= 1}[n]
        if not ok:
            rule = {"beta": ">= 0", "weight": "in [0, 1]"}.get(n, "> 0")
            raise InvalidInputError(f"{n} must be {rule}, got {v!r}")
        vals.append(float(v))
    return kind, tuple(vals + [0.0] * (3 - len(vals)))


def _int_array(x, what: str) -> np.ndarray:
    """A 1-D integer array, checked before any narrowing cast."""
    a = np.asarray(x)
    if a.size == 0 and a.dtype.kind == "f":       # [] arrives as float64
        a = a.astype(np.int64)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise InvalidInputError(f"{what} must be a 1-D array of integers (node ids or offsets), got {a.dtype} with shape {a.shape}")
    return a


def _float_array(x, what: str) -> np.ndarray:
    """A finite, non-negative float32 array (checked in place when it already is one)."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be numeric, got {a.dtype}")
    if a.dtype == np.float32:                    # the common case: no conversion, one pass each
        if not np.isfinite(a).all():
            raise NonFiniteError(f"{what} must be finite")
        if (a < 0).any():
            raise InvalidInputError(f"{what} must be >= 0")
        return np.ascontiguousarray(a)
    a64 = a.astype(np.float64)
    if not np.isfinite(a64).all():
        raise NonFiniteError(f"{what} must be finite")
    if (a64 < 0).any():
        raise InvalidInputError(f"{what} must be >= 0")
    with np.errstate(over="ignore"):
        a32 = np.ascontiguousarray(a64, dtype=np.float32)
    if not np.isfinite(a32).all():
        raise NonFiniteError(f"{what} has values beyond the float32 range")
    return a32


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


_CSR_INDEX = {np.dtype(t) for t in (np.int32, np.int64, np.uint32, np.uint64)}
_CSR_ERRORS = {
    1: "offsets must start at 0",
    2: "offsets must never decrease (offsets[{i}] < offsets[{i_1}])",
    3: "offsets must end at len(targets)",
    5: "weights must be finite (weights[{i}] is not)",
    6: "weights must be >= 0 (weights[{i}] is negative)",
    7: "targets and weights must be equal in length",
}


def _csr_checker():
    try:
        from engram.kernels._cy.spread import csr_check
    except ImportError:          # the Cython drivers are not built: the numpy checks below
        return None
    return csr_check


_csr_check = _csr_checker()


def as_csr(offsets, targets, weights):
    """Validated CSR arrays (u64 offsets[n+1], u32 targets[m], f32 weights[m])."""
    o = _int_array(offsets, "offsets")
    t = _int_array(targets, "targets")
    if o.shape[0] < 1:
        raise InvalidInputError("offsets must have n_nodes + 1 entries (at least one)")
    n = o.shape[0] - 1
    w = np.asarray(weights)
    if (_csr_check is not None and n < 2**31 and o.dtype in _CSR_INDEX and t.dtype in _CSR_INDEX and w.dtype == np.float32
            and o.flags.c_contiguous and t.flags.c_contiguous and w.flags.c_contiguous and w.ndim == 1):
        code, i = _csr_check(o, t, w)           # one typed pass over each array
        if code == 4:
            raise InvalidInputError(f"targets[{i}] names node {int(t[i])}, but the graph has {n} nodes (ids 0..{n - 1})")
        if code == 5:
            raise NonFiniteError(_CSR_ERRORS[code].format(i=i))
        if code:
            if code == 7:
                raise InvalidInputError(f"{_CSR_ERRORS[7]}, got {t.shape} and {w.shape}")
            raise InvalidInputError(_CSR_ERRORS[code].format(i=i, i_1=i - 1))
    else:
        w = _float_array(w, "weights")
        if w.shape != t.shape:
            raise InvalidInputError(f"targets and weights must be equal in length, got {t.shape} and {w.shape}")
        if o[0] != 0 or int(o[-1]) != t.shape[0] or (np.diff(o.astype(np.int64)) < 0).any():
            raise InvalidInputError("offsets must start at 0, never decrease, and end at len(targets)")
        if t.size and int(t.max()) >= n:
            raise InvalidInputError(f"targets name node {int(t.max())}, but the graph has {n} nodes (ids 0..{n - 1})")
        if t.size and int(t.min()) < 0:
            raise InvalidInputError(f"targets name node {int(t.min())}: node ids are >= 0")
    return (np.ascontiguousarray(o, dtype=np.uint64), np.ascontiguousarray(t, dtype=np.uint32), w)


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

    # --- one hop in batches (work stealing: engram/stealing.py) --------------------------
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
        return nodes, fire

    def gather(self, nodes, fire, acc, out_v, out_s) -> int:
        """Gather one batch through this run's kernels (acc: float32[n] of -1)."""
        got = self._table._gather(self._g, self.params, nodes, fire, acc, out_v, out_s)
        if got < 0 and got != -2:
            from engram.errors import KernelError
            raise KernelError(f"{self._table.name} spread_gather returned error {got}")
        return got

    def fire_part(self, lo: int, hi: int) -> None:
        """Frontier positions [lo, hi) of a split hop fire here, in place (the owner's share)."""
        got = self._table._fire(self._sc, self._g, self.params, self.hop, self.begin + lo, self.begin + hi,
                                self.count)
        if got < 0:
            from engram.errors import KernelError
            raise KernelError(f"{self._table.name} spread_fire returned error {got}")
        self.count = got

    def merge(self, v, s) -> None:
        """Apply one gathered batch (targets, summed contributions) to this hop."""
        got = self._table._merge(self._sc, self.params, self.hop, v, s, self.count, self.graph.n_nodes)
        if got < 0:
            from engram.errors import KernelError
            raise KernelError(f"{self._table.name} spread_merge returned error {got}")
        self.count = got

    def end_split(self) -> int:
        """Close a split hop; returns the size of the new frontier."""
        self.begin, self.end = self.end, self.count
        return self.end - self.begin

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


class KernelTable:
    """One backend's kernels. Subclasses implement ``_topk``, ``_seed``/``_hop`` (and
    may override ``_spread`` with a one-call kernel), ``_decay`` and ``_crc32c``."""

    name = "?"
    isa = "-"
    arena = None    # the Zig backend's scratch arena (engram._kernels.native.Arena)

    def __init__(self):
        self._scratch = SpreadScratch()

    def spread(self, offsets, targets, weights, seeds, seed_act=None, *, max_depth: int = 4,
               decay: float = 0.7, threshold: float = 0.01, cycle_penalty: float = 0.5,
               prefetch_distance: int = 8):
        """Spread activation from seeds over a CSR graph.

        Returns (nodes int64, activation f32, hop u8), in first-touch order;
        seeds are hop 0. Rules: csrc/kernels/spread.c.
        """
        return self.spread_graph(CsrGraph(offsets, targets, weights), seeds, seed_act, max_depth=max_depth,
                                 decay=decay, threshold=threshold, cycle_penalty=cycle_penalty,
                                 prefetch_distance=prefetch_distance)

    def spread_graph(self, graph: "CsrGraph", seeds, seed_act=None, *, max_depth: int = 4,
                     decay: float = 0.7, threshold: float = 0.01, cycle_penalty: float = 0.5,
                     prefetch_distance: int = 8):
        """spread() over a graph validated once (CsrGraph): only the seeds are checked per call."""
        if not isinstance(graph, CsrGraph):
            raise InvalidInputError(f"graph must be an engram.kernels.CsrGraph, got {type(graph).__name__}")
        s, a = self._check_seeds(graph.n_nodes, seeds, seed_act)
        p = SpreadParams(max_depth, decay, threshold, cycle_penalty, prefetch_distance).check()
        return self._spread((graph.offsets, graph.targets, graph.weights), s, a, p)

    @staticmethod
    def _check_seeds(n: int, seeds, seed_act):
        s = _int_array(np.atleast_1d(np.asarray(seeds)), "seeds")
        if s.size and (int(s.min()) < 0 or int(s.max()) >= n):
            raise InvalidInputError(f"seed ids must be in [0, {n}), got {s.min()}..{s.max()}")
        a = np.ones(s.shape[0], np.float32) if seed_act is None else _float_array(np.atleast_1d(
            np.asarray(seed_act)), "seed_act")
        if a.shape != s.shape:
            raise InvalidInputError(f"seed_act must have one value per seed ({s.shape[0]}), got {a.shape}")
        return np.ascontiguousarray(s, dtype=np.uint32), np.ascontiguousarray(a)

    def spread_run(self, graph: "CsrGraph", seeds, seed_act=None, *, decay: float = 0.7,
                   threshold: float = 0.01, cycle_penalty: float = 0.5, prefetch_distance: int = 8) -> SpreadRun:
        """Start spreading from seeds over a CsrGraph; advance it with run.step() (see SpreadRun)."""
        if not isinstance(graph, CsrGraph):
            raise InvalidInputError(f"graph must be an engram.kernels.CsrGraph, got {type(graph).__name__}")
        s, a = self._check_seeds(graph.n_nodes, seeds, seed_act)
        p = SpreadParams(255, decay, threshold, cycle_penalty, prefetch_distance).check()
        return SpreadRun(self, graph, s, a, p)

    def gather_acc(self, n_nodes: int) -> np.ndarray:
        """This thread's accumulator for _gather: float32[>= n_nodes] of -1, which every
        gather leaves as it found it (work stealing's takers and PageRank share it)."""
        sc = self._scratch
        if sc.acc.shape[0] < n_nodes:
            sc.acc = np.full(n_nodes, -1.0, np.float32)
        return sc.acc

    def _take_scratch(self, n_nodes: int, hold: bool = False) -> SpreadScratch:
        """This thread's scratch, or a private one while a SpreadRun holds it."""
        sc = self._scratch if not self._scratch.busy else SpreadScratch()
        sc.take(n_nodes)
        sc.busy = hold
        return sc

    def _spread(self, g, seeds, seed_act, p):
        """Seeding and then one hop at a time; backends with a one-call kernel override this."""
        sc = self._take_scratch(g[0].shape[0] - 1)
        count = self._seed(sc, g, seeds, seed_act, p)
        begin, end = 0, count
        for hop in range(1, p.max_depth + 1):
            if begin == end:
                break
            count = self._hop(sc, g, p, hop, begin, end, count)
            begin, end = end, count
        nodes = sc.nodes[:count].astype(np.int64)
        st = sc.state[nodes]
        return nodes, st["act"].copy(), (st["mark"] & 0xFF).astype(np.uint8)

    def _seed(self, sc, g, seeds, seed_act, p) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hop(self, sc, g, p, hop, begin, end, count) -> int:
        """What the frontier fires, then _fire (native backends have it in one kernel)."""
        sc.fire[begin:end] = sc.state["act"][sc.nodes[begin:end]]
        return self._fire(sc, g, p, hop, begin, end, count)

    # a hop split into batches (work stealing, engram/stealing.py): gather each batch
    # (anywhere: it reads only the graph), merge each into the spread's own state
    def _fire(self, sc, g, p, hop, begin, end, count) -> int:
        """Part [begin, end) of a split hop's frontier fires in place (what it fires was taken)."""
        return self._steps.fire_range(g[0], g[1], g[2], hop, np.float32(p.decay), np.float32(p.threshold),
                                      np.float32(p.cycle_penalty), sc.epoch, sc.state["mark"], sc.state["act"],
                                      sc.nodes, sc.fire, begin, end, count)

    def _gather(self, g, p, nodes, fire, acc, out_v, out_s) -> int:
        """Distinct targets of one batch, their summed contributions in out_s; -2: out of
        space, -1: an id outside the graph (as the native kernels return)."""
        return self._steps.gather(g[0], g[1], g[2], np.float32(p.decay), np.float32(p.threshold), nodes, fire,
                                  acc, out_v, out_s)

    def _merge(self, sc, p, hop, v, s, count, n_nodes) -> int:
        return self._steps.merge(hop, np.float32(p.cycle_penalty), sc.epoch, sc.state["mark"], sc.state["act"],
                                 v, s, sc.nodes, count, n_nodes)

    def decay(self, strength, age, curve: str = "exponential", **params) -> np.ndarray:
        """strength * forgetting_curve(age), elementwise, as float32.

        curve="exponential": tau (> 0)              s * exp(-age / tau)
        curve="power":       beta (>= 0)            s * (1 + age) ** -beta
        curve="two_component": tau_fast, tau_slow (> 0), weight in [0, 1]
                             s * (weight * exp(-age/tau_fast) + (1 - weight) * exp(-age/tau_slow))
        Ages are >= 0, in the same unit as the time constants.
        """
        kind, p = decay_params(curve, params)
        s = np.asarray(strength)
        a = np.asarray(age)
        if s.shape != a.shape:
            raise InvalidInputError(f"strength and age must have the same shape, got {s.shape} and {a.shape}")
        if s.dtype.kind not in "fiu" or a.dtype.kind not in "fiu":
            raise InvalidInputError("strength and age must be numeric")
        s32 = np.ascontiguousarray(s, dtype=np.float32).reshape(-1)
        a32 = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
        if not (np.isfinite(s32).all() and np.isfinite(a32).all()):
            raise NonFiniteError("strength and age must be finite (within float32 range)")
        if (a32 < 0).any():
            raise InvalidInputError("age must be >= 0")
        return self._decay(s32, a32, kind, p).reshape(s.shape)

    def _decay(self, s, a, kind, p):  # pragma: no cover - abstract
        raise NotImplementedError

    def crc32c(self, data, crc: int = 0) -> int:
        """CRC32C (Castagnoli) of a bytes-like object, continuing from ``crc``."""
        if type(crc) is not int or not 0 <= crc <= 0xFFFFFFFF:
            if isinstance(crc, bool) or not isinstance(crc, (int, np.integer)) or not 0 <= crc <= 0xFFFFFFFF:
                raise InvalidInputError(f"crc must be an integer in [0, 2**32), got {crc!r}")
            crc = int(crc)
        if type(data) is bytes:          # the common case (a WAL record): no view to build or check
            return self._crc32c(data, crc)
        try:
            view = memoryview(data)
        except TypeError:
            raise InvalidInputError(f"data must be bytes-like (bytes, bytearray, memoryview, ndarray), "
                                    f"got {type(data).__name__}") from None
        if not view.c_contiguous:
            raise InvalidInputError("data must be contiguous")
        return self._crc32c(view.cast("B") if view.ndim != 1 or view.format != "B" else view, int(crc))

    def _crc32c(self, view, crc):  # pragma: no cover - abstract
        raise NotImplementedError

    def cosine_topk(self, query, rows, k: int = 10, mask=None, norms=None):
        """Top-k rows (f32, f16 or int8) by cosine similarity to query: (indices int64, scores f32), best first.

        A 2-D query (m, dim) is a batch: the results are (m, k) arrays, and
        native backends read each row once for all m queries. ``norms``: the
        rows' L2 norms, precomputed (float32, one per row), so the scan reads
        only what the dot product needs; they are used as given.
        """
        return self._checked_topk("cosine", query, rows, k, mask, norms)

    def dot_topk(self, query, rows, k: int = 10, mask=None):
        """Top-k rows by dot product with query: (indices int64, scores f32), best first."""
        return self._checked_topk("dot", query, rows, k, mask)

    def _checked_topk(self, metric, query, rows, k, mask, norms=None):
        rows = as_rows(rows)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InvalidInputError(f"k must be a non-negative integer, got {k!r}")
        mask = as_mask(mask, rows.shape[0])
        norms = None if norms is None else _float_array(norms, "norms")
        if norms is not None and norms.shape != (rows.shape[0],):
            raise InvalidInputError(f"norms must have one value per row ({rows.shape[0]}), got shape {norms.shape}")
        if np.ndim(query) == 2:       # a batch of queries: M:N, each row read once for all
            qs = as_queries(query, rows.shape[1])
            if rows.shape[0] == 0 or k == 0 or qs.shape[0] == 0:
                return np.zeros((qs.shape[0], 0), np.int64), np.zeros((qs.shape[0], 0), np.float32)
            return self._topk_many(metric, qs, rows, int(k), mask, norms)
        q = as_query(query, rows.shape[1])
        if rows.shape[0] == 0 or k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return self._topk(metric, q, rows, int(k), mask, norms)

    def _topk_many(self, metric, qs, rows, k, mask, norms=None):
        """Backends without an M:N kernel answer query by query."""
        res = [self._topk(metric, q, rows, k, mask, norms) for q in qs]
        return np.stack([r[0] for r in res]), np.stack([r[1] for r in res])

    def _topk(self, metric, q, rows, k, mask, norms=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"<engram kernels {self.name} isa={self.isa}>"


class NativeTable(KernelTable):
    """C or Zig kernels of one ISA variant, called through the Cython driver."""

    def __init__(self, name: str, lib, isa: str):
        from engram.kernels._cy.scan import TopKKernel, TopKManyKernel
        from engram.kernels._cy.spread import SpreadGatherKernel, SpreadHopKernel, SpreadKernel, SpreadMergeKernel
        from engram.kernels._cy.stream import CrcKernel, DecayKernel
        from engram.kernels.native import Arena
        super().__init__()
        self.name, self.lib, self.isa = name, lib, isa
        self.path = lib.path
        self.arena = Arena(lib) if "eg_arena_stats" in lib.fns else None   # Zig only
        self._spread_fn = SpreadKernel(lib.address_of("eg_spread"))
        self._hop_fn = SpreadHopKernel(lib.address_of("eg_spread_hop"))
        self._fire_fn = SpreadHopKernel(lib.address_of("eg_spread_fire"))     # the same arguments as a hop
        self._gather_fn = SpreadGatherKernel(lib.address_of("eg_spread_gather"))
        self._merge_fn = SpreadMergeKernel(lib.address_of("eg_spread_merge"))
        self._decay_fn = DecayKernel(lib.address("decay_f32", isa))
        self._crc_fn = CrcKernel(lib.address("crc32c", isa))
        self._fns = {}
        self._many = {}
        for metric in METRICS:
            for dt, tag in DTYPE_TAG.items():
                self._fns[metric, dt] = TopKKernel(lib.address(f"{metric}_topk_{tag}", isa), dt.itemsize)
                self._many[metric, dt] = TopKManyKernel(lib.address(f"{metric}_topk_mn_{tag}", isa), dt.itemsize)

    def _topk(self, metric, q, rows, k, mask, norms=None):
        k = min(k, rows.shape[0])
        idx = np.empty(k, np.int64)
        score = np.empty(k, np.float32)
        got = self._fns[metric, rows.dtype](q, rows, mask, idx, score, norms)
        if got < 0:
            from engram.errors import KernelError
            raise KernelError(f"{self.name}/{self.isa} {metric}_topk returned error {got}")
        return idx[:got], score[:got]

    def _spread(self, g, seeds, seed_act, p):
        sc = self._take_scratch(g[0].shape[0] - 1)
        got = self._seed(sc, g, seeds, seed_act, p, p.max_depth)
        nodes = sc.nodes[:got].astype(np.int64)       # int64 indexes gather ~3x faster than uint32
        return nodes, sc.fire[:got].copy(), (sc.state["mark"][nodes] & 0xFF).astype(np.uint8)

    def _seed(self, sc, g, seeds, seed_act, p, max_depth: int = 0) -> int:
        """eg_spread: seeding, then max_depth hops in one call (0: seeding only)."""
        got = self._spread_fn(g[0], g[1], g[2], seeds, seed_act, max_depth, p.decay, p.threshold,
                              p.cycle_penalty, p.prefetch_distance, sc.epoch, sc.state, sc.nodes, sc.fire)
        if got < 0:
            from engram.errors import KernelError
            raise KernelError(f"{self.name} spread returned error {got}")
        return got

    def _hop(self, sc, g, p, hop, begin, end, count) -> int:
        got = self._hop_fn(g[0], g[1], g[2], hop, p.decay, p.threshold, p.cycle_penalty, p.prefetch_distance,
                           sc.epoch, sc.state, sc.nodes, sc.fire, begin, end, count)
        if got < 0:
            from engram.errors import KernelError
            raise KernelError(f"{self.name} spread_hop returned error {got}")
        return got

    def _fire(self, sc, g, p, hop, begin, end, count) -> int:
        return self._fire_fn(g[0], g[1], g[2], hop, p.decay, p.threshold, p.cycle_penalty, p.prefetch_distance,
                             sc.epoch, sc.state, sc.nodes, sc.fire, begin, end, count)

    def _gather(self, g, p, nodes, fire, acc, out_v, out_s) -> int:
        return self._gather_fn(g[0], g[1], g[2], p.decay, p.threshold, p.prefetch_distance, nodes, fire, acc,
                               out_v, out_s)

    def _merge(self, sc, p, hop, v, s, count, n_nodes) -> int:
        return self._merge_fn(n_nodes, hop, p.cycle_penalty, sc.epoch, sc.state, v, s, sc.nodes, count)

    def _topk_many(self, metric, qs, rows, k, mask, norms=None):
        k = min(k, rows.shape[0])
        m = qs.shape[0]
        idx = np.empty((m, k), np.int64)
        score = np.empty((m, k), np.float32)
        count = np.empty(m, np.int64)
        got = self._many[metric, rows.dtype](qs, rows, mask, idx, score, count, norms)
        if got < 0:
            from engram.errors import KernelError
            raise KernelError(f"{self.name}/{self.isa} {metric}_topk_mn returned error {got}")
        return idx[:, :got], score[:, :got]

    def _decay(self, s, a, kind, p):
        out = np.empty_like(s)
        got = self._decay_fn(s, a, kind, p[0], p[1], p[2], out)
        if got < 0:
            from engram.errors import KernelError
            raise KernelError(f"{self.name} decay returned error {got}")
        return out

    def _crc32c(self, view, crc):
        return self._crc_fn(view, crc)
