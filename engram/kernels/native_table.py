"""The C and Zig backends' function table: each kernel bound by address once, then called
through the Cython drivers (engram/kernels/_cy/) with raw pointers and without the GIL."""
from __future__ import annotations

import numpy as np

from engram.kernels.checks import DTYPE_TAG, METRICS, checked
from engram.kernels.table import KernelTable


class NativeTable(KernelTable):
    """C or Zig kernels of one ISA variant, called through the Cython driver."""

    def __init__(self, name: str, lib, isa: str):
        from engram.kernels._cy.scan import SketchKernel, TopKKernel, TopKManyKernel
        from engram.kernels._cy.spread import SpreadGatherKernel, SpreadHopKernel, SpreadKernel, SpreadMergeKernel
        from engram.kernels._cy.stream import CrcKernel, DecayKernel
        from engram.kernels.native import Arena
        super().__init__()
        self.name, self.lib, self.isa = name, lib, isa
        self.path = lib.path
        self.arena = Arena(lib) if "eg_arena_stats" in lib.fns else None   # Zig only
        self._spread_fn = SpreadKernel(lib.address_of("eg_spread"))
        self._hop_fn = SpreadHopKernel(lib.address_of("eg_spread_hop"), lib.address_of("eg_spread_fire"))
        self._gather_fn = SpreadGatherKernel(lib.address_of("eg_spread_gather"))
        self._merge_fn = SpreadMergeKernel(lib.address_of("eg_spread_merge"))
        self._decay_fn = DecayKernel(lib.address("decay_f32", isa))
        self._crc_fn = CrcKernel(lib.address("crc32c", isa))
        self._sketch_fn = SketchKernel(lib.address("sketch_topk", isa))
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
        got = checked(self._fns[metric, rows.dtype](q, rows, mask, idx, score, norms),
                      f"{self.name}/{self.isa} {metric}_topk")
        return idx[:got], score[:got]

    def _sketch_topk(self, q, rows, scale, k):
        k = min(k, rows.shape[0])
        idx = np.empty(k, np.int64)
        score = np.empty(k, np.float32)
        got = checked(self._sketch_fn(q, rows, scale, idx, score), f"{self.name}/{self.isa} sketch_topk")
        return idx[:got], score[:got]

    def _rescore(self, metric, q, ids, hot, tier_at: int, flags_at: int, forgotten: int, node_row, tables):
        from engram.kernels._cy.scan import rescore
        specs = tuple(None if spec is None else (self._fns[metric, spec[0].dtype], *spec) for spec in tables)
        out_ids = np.empty(ids.shape[0], np.int64)
        out_score = np.empty(ids.shape[0], np.float32)
        out_tier = np.empty(ids.shape[0], np.uint8)
        got = checked(rescore(q, np.ascontiguousarray(ids, np.int64), hot, tier_at, flags_at, forgotten, node_row,
                              specs, out_ids, out_score, out_tier), f"{self.name}/{self.isa} {metric}_topk")
        return out_ids[:got], out_score[:got], out_tier[:got]

    def _topk_until(self, metric, q, rows, k, mask, norms, deadline_ns: int, chunk: int):
        k = min(k, rows.shape[0])
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), rows.shape[0]
        idx = np.empty(k, np.int64)
        score = np.empty(k, np.float32)
        got, scanned = self._fns[metric, rows.dtype].until(q, rows, mask, idx, score, norms, deadline_ns, chunk)
        checked(got, f"{self.name}/{self.isa} {metric}_topk")
        return idx[:got], score[:got], scanned

    def _spread_all(self, sc, g, seeds, seed_act, p):
        got = self._seed(sc, g, seeds, seed_act, p, p.max_depth)
        return got, sc.fire[:got]        # eg_spread leaves each touched node's activation in fire

    def _spread_live(self, g, seeds, seed_act, p, hot, flags_offset: int, hidden: int):
        sc = self._take_scratch(g[0].shape[0] - 1)
        out = self._spread_fn.ranked(g[0], g[1], g[2], seeds, seed_act, p.max_depth, p.decay, p.threshold,
                                     p.cycle_penalty, p.prefetch_distance, sc.epoch, sc.state, sc.nodes, sc.fire,
                                     hot, flags_offset, hidden)
        if isinstance(out, int):
            checked(out, f"{self.name} spread")
        return out

    def _seed(self, sc, g, seeds, seed_act, p, max_depth: int = 0) -> int:
        """eg_spread: seeding, then max_depth hops in one call (0: seeding only)."""
        return checked(self._spread_fn(g[0], g[1], g[2], seeds, seed_act, max_depth, p.decay, p.threshold,
                                       p.cycle_penalty, p.prefetch_distance, sc.epoch, sc.state, sc.nodes, sc.fire),
                       f"{self.name} spread")

    def _hop(self, sc, g, p, hop, begin, end, count) -> int:
        return checked(self._hop_fn(g[0], g[1], g[2], hop, p.decay, p.threshold, p.cycle_penalty,
                                    p.prefetch_distance, sc.epoch, sc.state, sc.nodes, sc.fire, begin, end, count),
                       f"{self.name} spread_hop")

    def _budgeted(self, sc, g, p, begin, end, count, hop, hops, model, batch_size, tier_mix, deadline_ns,
                  split_edges, log):
        return self._hop_fn.budgeted(g[0], g[1], g[2], p.decay, p.threshold, p.cycle_penalty, p.prefetch_distance,
                                     sc.epoch, sc.state, sc.nodes, sc.fire, begin, end, count, hop, hops, model,
                                     batch_size, tier_mix, -1 if deadline_ns is None else deadline_ns, split_edges,
                                     log)

    def _fire(self, sc, g, p, hop, begin, end, count, ceiling) -> int:
        return self._hop_fn(g[0], g[1], g[2], hop, p.decay, p.threshold, p.cycle_penalty, p.prefetch_distance,
                            sc.epoch, sc.state, sc.nodes, sc.fire, begin, end, count, ceiling)

    def _gather(self, g, p, nodes, fire, acc, out_v, out_s) -> int:
        return self._gather_fn(g[0], g[1], g[2], p.decay, p.threshold, p.prefetch_distance, nodes, fire, acc,
                               out_v, out_s)

    def _merge(self, sc, p, hop, v, s, count, n_nodes, ceiling) -> int:
        return self._merge_fn(n_nodes, hop, p.cycle_penalty, ceiling, sc.epoch, sc.state, v, s, sc.nodes, count)

    def _topk_many(self, metric, qs, rows, k, mask, norms=None):
        k = min(k, rows.shape[0])
        m = qs.shape[0]
        idx = np.empty((m, k), np.int64)
        score = np.empty((m, k), np.float32)
        count = np.empty(m, np.int64)
        got = checked(self._many[metric, rows.dtype](qs, rows, mask, idx, score, count, norms),
                      f"{self.name}/{self.isa} {metric}_topk_mn")
        return idx[:, :got], score[:, :got]

    def _decay(self, s, a, kind, p):
        out = np.empty_like(s)
        checked(self._decay_fn(s, a, kind, p[0], p[1], p[2], out), f"{self.name} decay")
        return out

    def _crc32c(self, view, crc):
        return self._crc_fn(view, crc)
