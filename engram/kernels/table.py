"""The function table every backend offers, with one validating front end.

``KernelTable.cosine_topk`` / ``dot_topk`` / ``spread`` check their inputs once, here
(engram/kernels/checks.py), and then call the backend's ``_topk``, ``_seed``, ``_hop``...
with trusted arrays. Internal callers that have already validated (the store, recall)
call those directly.
"""
from __future__ import annotations

import time

import numpy as np

from engram.errors import InvalidInputError, NonFiniteError, shown
from engram.kernels.checks import (
    as_mask,
    as_queries,
    as_query,
    as_rows,
    decay_params,
    float_array,
    int_array,
)
from engram.kernels.spreadrun import CsrGraph, SpreadParams, SpreadRun, SpreadScratch, echo_ceiling

try:                     # the Cython drivers (built by pip install); without them only numpy/numba load
    from engram.kernels._cy.rank import rank_touched
except ImportError:      # pragma: no cover
    rank_touched = None


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
        s = int_array(np.atleast_1d(np.asarray(seeds)), "seeds")
        if s.size and (int(s.min()) < 0 or int(s.max()) >= n):
            raise InvalidInputError(f"seed ids must be in [0, {n}), got {s.min()}..{s.max()}")
        a = np.ones(s.shape[0], np.float32) if seed_act is None else float_array(np.atleast_1d(
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
        """(nodes int64, activation f32, hop u8) in first-touch order."""
        sc = self._take_scratch(g[0].shape[0] - 1)
        count, act = self._spread_all(sc, g, seeds, seed_act, p)
        nodes = sc.nodes[:count].astype(np.int64)       # int64 indexes gather ~3x faster than uint32
        return nodes, act.copy(), (sc.state["mark"][nodes] & 0xFF).astype(np.uint8)

    def _spread_live(self, g, seeds, seed_act, p, hot, flags_offset: int, hidden: int):
        """Space.spread's whole spread from seeds (int64 ids, f32 activations; seeds outside
        the graph come back as they are, capped at 1): (ids int64, activation f32, hop u8) of
        the memories it touched whose node record in ``hot`` has none of the ``hidden`` flag
        bits, most active first, ties by id; the filtering and ordering run in the Cython
        driver (rank_touched), and native backends spread in the same call."""
        n = g[0].shape[0] - 1
        inside = seeds < n
        sc = self._take_scratch(n)
        count, act = self._spread_all(sc, g, seeds[inside].astype(np.uint32), seed_act[inside], p)
        return rank_touched(sc.nodes[:count], act, sc.state, n, hot, flags_offset, hidden, seeds[~inside],
                            seed_act[~inside])

    def _spread_all(self, sc, g, seeds, seed_act, p):
        """Seeding and every hop into the scratch: (touched count, activation per touched
        position f32). One hop at a time here; backends with a one-call kernel override it."""
        count = self._seed(sc, g, seeds, seed_act, p)
        begin, end = 0, count
        for hop in range(1, p.max_depth + 1):
            if begin == end:
                break
            count = self._hop(sc, g, p, hop, begin, end, count)
            begin, end = end, count
        return count, sc.state["act"][sc.nodes[:count]]

    def _budgeted(self, sc, g, p, begin, end, count, hop, hops, model, batch_size, tier_mix, deadline_ns,
                  split_edges, log):
        """Native backends run priced hops in one call (SpreadRun.budgeted); here: None, the
        caller runs each hop itself."""
        return None

    def _seed(self, sc, g, seeds, seed_act, p) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hop(self, sc, g, p, hop, begin, end, count) -> int:
        """What the frontier fires and its echo ceiling, then _fire (native backends have it
        in one kernel)."""
        sc.fire[begin:end] = sc.state["act"][sc.nodes[begin:end]]
        return self._fire(sc, g, p, hop, begin, end, count, echo_ceiling(sc.fire[begin:end], p.decay))

    # a hop split into batches (work stealing, engram/workers/stealing.py): gather each batch
    # (anywhere: it reads only the graph), merge each into the spread's own state
    def _fire(self, sc, g, p, hop, begin, end, count, ceiling) -> int:
        """Part [begin, end) of a split hop's frontier fires in place (what it fires was taken,
        and the whole frontier's echo ceiling)."""
        return self._steps.fire_range(g[0], g[1], g[2], hop, np.float32(p.decay), np.float32(p.threshold),
                                      np.float32(p.cycle_penalty), np.float32(ceiling), sc.epoch, sc.state["mark"],
                                      sc.state["act"], sc.nodes, sc.fire, begin, end, count)

    def _gather(self, g, p, nodes, fire, acc, out_v, out_s) -> int:
        """Distinct targets of one batch, their summed contributions in out_s; -2: out of
        space, -1: an id outside the graph (as the native kernels return)."""
        return self._steps.gather(g[0], g[1], g[2], np.float32(p.decay), np.float32(p.threshold), nodes, fire,
                                  acc, out_v, out_s)

    def _merge(self, sc, p, hop, v, s, count, n_nodes, ceiling) -> int:
        return self._steps.merge(hop, np.float32(p.cycle_penalty), np.float32(ceiling), sc.epoch, sc.state["mark"],
                                 sc.state["act"], v, s, sc.nodes, count, n_nodes)

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
                raise InvalidInputError(f"crc must be an integer in [0, 2**32), got {shown(crc)}")
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
            raise InvalidInputError(f"k must be a non-negative integer, got {shown(k)}")
        mask = as_mask(mask, rows.shape[0])
        norms = None if norms is None else float_array(norms, "norms")
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

    def _topk_until(self, metric, q, rows, k, mask, norms, deadline_ns: int, chunk: int):
        """(idx, scores, rows scanned): the top k of ``rows`` scanned in chunks of ``chunk``
        rows up to the first chunk boundary at or past ``deadline_ns`` (perf_counter_ns; the
        first chunk always runs), best first, equal scores by lower row. The native tables
        run this loop in one call without the GIL (TopKKernel.until)."""
        n = rows.shape[0]
        idx, score, a = np.zeros(0, np.int64), np.zeros(0, np.float32), 0
        while a < n and not (a and time.perf_counter_ns() >= deadline_ns):
            b = min(a + chunk, n)
            ci, cs = self._topk(metric, q, rows[a:b], k, None if mask is None else mask[a:b],
                                None if norms is None else norms[a:b])
            idx, score = np.concatenate([idx, ci + a]), np.concatenate([score, cs])
            order = np.lexsort((idx, -score))[:k]
            idx, score, a = idx[order], score[order], b
        return idx, score, a

    def sketch_topk(self, query, rows, row_scale, k: int = 10):
        """Top-k rows of a 4-bit sketch (engram/recall/sketch.py): each row is ``rows.shape[1]``
        bytes of two codes in [0, 15], byte b's low nibble element b and its high nibble
        element ``rows.shape[1] + b``, each worth its code - 8; a row's score is the exact
        integer dot product of the int8 ``query`` (twice the rows' bytes long, element order)
        with those values, times the row's ``row_scale`` (f32): (indices int64, scores f32),
        best first, equal scores by lower row."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InvalidInputError(f"k must be a non-negative integer, got {shown(k)}")
        rows, q, scale = np.asarray(rows), np.asarray(query), np.asarray(row_scale)
        if rows.ndim != 2 or rows.dtype != np.uint8 or rows.shape[1] == 0:
            raise InvalidInputError(f"sketch rows must be a 2-D uint8 array of at least one byte a row, got "
                                    f"{rows.dtype} with shape {rows.shape}")
        if q.dtype != np.int8 or q.shape != (2 * rows.shape[1],):
            raise InvalidInputError(f"the sketch's query must be int8 of length {2 * rows.shape[1]} (two elements a "
                                    f"byte of a row), got {q.dtype} with shape {q.shape}")
        if scale.dtype != np.float32 or scale.shape != (rows.shape[0],):
            raise InvalidInputError(f"row_scale must be float32 with one value per row ({rows.shape[0]}), got "
                                    f"{scale.dtype} with shape {scale.shape}")
        if rows.shape[0] == 0 or k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if rows.shape[1] > 1 and rows.strides[1] != 1:
            rows = np.ascontiguousarray(rows)
        return self._sketch_topk(np.ascontiguousarray(q), rows, np.ascontiguousarray(scale), int(k))

    def _sketch_topk(self, q, rows, scale, k):
        """numpy: the oracle of the native kernels (int32 dot products are exact; the f32
        product with the scale rounds as theirs), in blocks so memory stays bounded."""
        half = rows.shape[1]
        q_lo, q_hi = q[:half].astype(np.int32), q[half:].astype(np.int32)
        bias = 8 * int(q.astype(np.int32).sum())
        score = np.concatenate([((rows[a:a + 4096] & 15).astype(np.int32) @ q_lo
                                 + (rows[a:a + 4096] >> 4).astype(np.int32) @ q_hi - bias).astype(np.float32)
                                * scale[a:a + 4096] for a in range(0, rows.shape[0], 4096)])
        order = np.lexsort((np.arange(score.shape[0]), -score))[:k]
        return order.astype(np.int64), score[order]

    def _rescore(self, metric, q, ids, hot, tier_at: int, flags_at: int, forgotten: int, node_row, tables):
        """(ids, scores, tiers) of candidate memories ``ids`` (int64) scored exactly from their
        stored rows, in the order of ``ids``, by the kernel the scan uses. Skipped: ids past
        the node records ``hot``, records flagged ``forgotten``, and records whose row in
        their tier is not theirs (row_node: a memory moving between tiers). ``tier_at`` /
        ``flags_at``: the u8 fields' byte offsets in a record; tables: per tier code, None or
        (rows, row_node, row_norm, count). The native tables do it in one call without the GIL."""
        raw = hot.view(np.uint8).reshape(hot.shape[0], hot.dtype.itemsize)
        ids = ids[(ids >= 0) & (ids < min(hot.shape[0], node_row.shape[0]))]
        ids = ids[(raw[ids, flags_at] & forgotten) == 0]
        tier_of, row_of = raw[ids, tier_at], node_row[ids].astype(np.int64)
        score = np.zeros(ids.shape[0], np.float32)
        keep = np.zeros(ids.shape[0], bool)
        for t, spec in enumerate(tables):
            sel = np.flatnonzero(tier_of == t)
            if spec is None or not sel.size:
                continue
            rows, row_node, row_norm, count = spec
            r = row_of[sel]
            n = min(rows.shape[0], count, row_node.shape[0], row_norm.shape[0])
            ok = r < n
            ok[ok] = row_node[r[ok]] == ids[sel[ok]]
            sel, r = sel[ok], r[ok]
            for i, at in zip(sel, r):     # one row at a time: the scan's own kernel on that row
                _, sc = self._topk(metric, q, rows[at:at + 1], 1, None, row_norm[at:at + 1])
                score[i], keep[i] = sc[0], True
        return ids[keep], score[keep], tier_of[keep]

    def __repr__(self):
        return f"<engram kernels {self.name} isa={self.isa}>"

