"""The Python API: Engine (owns memory spaces in shared memory) and Space.

    with engram.Engine(dim=384) as eng:
        mem = eng.space("default")
        ids = mem.remember(vectors, content=texts)
        mem.link(ids[0], ids[1], 0.8)
        res = mem.recall(query, k=10)

Another process reads a live engine with ``engram.attach(eng.name)``.
Every call validates all of its input before it changes anything, so a
rejected call leaves the store exactly as it was.
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engram.observe import hwcounters, metrics
from engram.cognition import interference, priming
from engram import kernels, validate
from engram.recall import ppr
from engram.store import snapshot
from engram.recall import pipeline as _recall
from engram.kernels.table import CsrGraph
from engram.errors import ClosedError, InvalidInputError, UnknownIdError
from engram.store.graph import FORGOTTEN, Graph
from engram.layout import schema
from engram.store.shm import EngineName, cleanup_stale, spaces_of, unlink_engine
from engram.cognition.fan import MODES as FAN_MODES
from engram.recall.pipeline import RecallConfig
from engram.cognition.reconsolidation import Reconsolidation
from engram.recall.spreading import AdaptiveBatcher, LatencyPredictor, topology
from engram.observe.metrics.spreading import SpreadingRecorder
from engram.observe.metrics.spreading import summary as spreading_summary
from engram.observe.tracing import KINDS, TraceConfig, Tracer
from engram.observe.tracing.process import next_trace_id as _next_trace_id, start_collector, stop_collector
from engram.workers.supervisor import WorkerError, WorkerPool
from engram.store.tables import TIER_DTYPE, TIER_NAMES, TIER_TABLE, SpaceStore

LIVE = schema.CONSTANTS["NODE_LIVE"]
TIER_LABEL = {v: k for k, v in TIER_NAMES.items()}
MAX_DIM = 65536
ROUTINGS = ("auto", "workers")
SCAN_CHUNK = 65536   # rows per kernel call while a budget is running: the check interval


@dataclass
class RecallResult:
    """What recall found, best first."""
    ids: np.ndarray                 # int64 memory ids
    scores: np.ndarray              # float32 ranking scores
    confidence: np.ndarray          # float32 confidence of each memory
    origin: np.ndarray              # "seed" (similarity) or "spread"
    hops: np.ndarray                # int8: 0 for seeds, hop count for spread results
    content: list                   # the memories' content (None where absent)
    partial: bool = False           # a stage stopped early to meet the budget
    fallback: bool = False          # answered from similarity alone (the spread would not fit)
    activation: np.ndarray = None   # float32 activation after spreading (seeds: sigmoid of cosine)
    similarity: np.ndarray = None   # float32 cosine to the query; NaN if reached only by spreading
    timings: dict = field(default_factory=dict)   # milliseconds per stage
    spreading: dict = field(default_factory=dict)  # hops run, nodes touched, predicted vs taken ms

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __iter__(self):
        return iter(zip(self.ids.tolist(), self.scores.tolist(), self.content))


@dataclass
class Memories:
    """Memories fetched by get(), in the order asked."""
    ids: np.ndarray
    vectors: np.ndarray             # float32 (n, dim); warm-tier rows widened from f16
    content: list
    confidence: np.ndarray
    strength: np.ndarray
    tier: list                      # "hot" | "warm"
    created_ns: np.ndarray
    last_access_ns: np.ndarray
    access_count: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class SpaceView:
    """Read access to a memory space (an attached reader, or the owner's base)."""

    def __init__(self, store: SpaceStore, kern=None, closed_check=None):
        self._store = store
        self._graph = Graph(store)
        self._kern = kern or kernels.backend()
        self._closed_check = closed_check
        self.name = store.space
        self.dim = store.dim
        self._recall_cfg = RecallConfig()
        self._spread_params = self._recall_cfg.spread_params()
        self._predictor = LatencyPredictor()
        self._batcher = AdaptiveBatcher(topology())
        self._graph_cache = None
        self._graph_generation = None
        self.clock = time.time_ns         # wall-clock ns of creation, access, retention, priming and
                                          # reconsolidation; tests inject one into the owner's Space
        self._metrics = None           # this process's SpreadingRecorder (owner and workers)
        self._rec = metrics.recorder(None, 0, store.space)   # readers record nothing (no-ops)
        self._tracing = False             # set by the owner (or a worker) that has a trace ring
        self._trace = None                # its writer's emit
        self._trace_space = 0             # this space's label index

    def _open(self) -> SpaceStore:
        if self._closed_check is not None:
            self._closed_check()
        if not self._store.segs:
            raise ClosedError(f"memory space {self.name!r} is closed")
        if not self._store.writable:
            self._store.refresh()
        return self._store

    def __len__(self) -> int:
        return int(self._open().dir["n_live"][0])

    def _live_ids(self, ids) -> np.ndarray:
        st = self._open()
        a = validate.ids(ids)
        n = st.n_nodes
        bad = (a < 0) | (a >= n)
        if not bad.any():
            bad = (st.hot()["flags"][a] & FORGOTTEN) != 0
        if bad.any():
            wrong = a[bad][:5].tolist()
            raise UnknownIdError(f"unknown or forgotten memory ids {wrong} in space {self.name!r} "
                                 f"(ids are 0..{n - 1}; forgotten ones are gone)")
        return a

    def get(self, ids) -> Memories:
        a = self._live_ids(ids)
        st = self._store
        rec = st.hot()[a]
        rows = st.views["nodes"]["node_row"][a]
        vecs = np.empty((a.shape[0], self.dim), np.float32)
        for tier, table in TIER_TABLE.items():
            sel = rec["tier"] == tier
            if sel.any():
                vecs[sel] = st.views[table]["rows"][rows[sel], :self.dim]
        return Memories(
            ids=a, vectors=vecs, content=[st.content_at(int(r)) for r in rec["content_ref"]],
            confidence=rec["confidence"].copy(), strength=rec["strength"].copy(),
            tier=[TIER_LABEL[int(t)] for t in rec["tier"]], created_ns=rec["created_ns"].copy(),
            last_access_ns=rec["last_access_ns"].copy(), access_count=rec["access_count"].copy())

    def neighbors(self, memory_id: int):
        """(ids, weights) of the memories this one links to."""
        a = self._live_ids(memory_id)
        if a.shape[0] != 1:
            raise InvalidInputError("neighbors takes one memory id")
        return self._graph.neighbors(int(a[0]))

    def _similar(self, q: np.ndarray, k: int, deadline_ns: int | None = None, hot_share: float = 0.5):
        """Exact top-k by cosine, hot tier (f32) first, then warm (f16): (ids, scores, warm share
        of the results, partial). With a deadline each tier has a time budget (the hot tier
        ``hot_share`` of it, the warm tier the rest); rows are scanned in chunks and a tier
        stops at the chunk that reaches its budget (partial)."""
        st = self._store
        found_ids, found_scores, found_tier = [], [], []
        partial = False
        t_start = time.perf_counter_ns()
        for tier in TIER_TABLE:
            rows, row_node, row_live, row_norm = st.tier_rows(tier)
            if deadline_ns is not None and tier == schema.CONSTANTS["TIER_HOT"]:
                tier_deadline = t_start + int(hot_share * (deadline_ns - t_start))
            else:
                tier_deadline = deadline_ns
            for a in range(0, rows.shape[0], SCAN_CHUNK):
                if tier_deadline is not None and a and time.perf_counter_ns() >= tier_deadline:
                    partial = True
                    break
                b = a + SCAN_CHUNK
                idx, sc = self._kern._topk("cosine", q, rows[a:b], k, row_live[a:b], row_norm[a:b])
                found_ids.append(row_node[a:b][idx].astype(np.int64))
                found_scores.append(sc)
                found_tier.append(np.full(idx.shape[0], tier, np.uint8))
        if not found_ids:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), 0.0, partial
        ids = np.concatenate(found_ids)
        scores = np.concatenate(found_scores)
        tiers = np.concatenate(found_tier)
        order = np.lexsort((ids, -scores))[:k]
        warm = np.count_nonzero(tiers[order] == schema.CONSTANTS["TIER_WARM"]) / max(order.size, 1)
        return ids[order], scores[order], warm, partial

    def _visible(self, ids: np.ndarray) -> np.ndarray:
        """Mask of ids that are published and not forgotten."""
        return self._graph._live(ids.astype(np.int64))

    def _spread_graph(self, fan: str = "none", walk: bool = False):
        """(CsrGraph, out-degree per node) of the compacted links, with the weights of a fan
        mode (engram/fan.py), or with those normalised per source for PageRank (walk=True),
        cached per CSR generation (the walk's weights also per in-place reweight, which
        the plain views see at once). ``_graph_generation`` is the generation returned."""
        st = self._store
        gen = st.generation("csr")
        if self._graph_cache is None or self._graph_cache[0] != gen:
            self._graph_cache = (gen, {})
        graphs = self._graph_cache[1]
        self._graph_generation = gen
        if (fan, False) not in graphs:
            csr = st.csr()
            w = csr["weights"] if fan == "none" else csr["fan"][FAN_MODES.index(fan) - 1]
            g = CsrGraph._trusted(csr["offsets"], csr["targets"], w)
            graphs[fan, False] = (g, np.diff(g.offsets).astype(np.int64))
        if not walk:
            return graphs[fan, False]
        version = int(st.csr()["header"]["weights_version"][0])
        if graphs.get((fan, True), (None,))[0] != version:
            g, degree = graphs[fan, False]
            graphs[fan, True] = (version, ppr.normalized(g), degree)
        return graphs[fan, True][1:]

    def recall(self, query, k: int = 10, spread: bool = True, budget_ms: float | None = 10.0) -> RecallResult:
        """The k memories that best answer ``query``: similarity seeds, then spreading
        activation along associations within ``budget_ms`` (None: no budget). See
        engram/recall.py for the pipeline and RecallResult for what comes back."""
        t0 = time.perf_counter_ns()
        st = self._open()
        q = kernels_query(query, self.dim)
        k = validate.positive_int(k, "k", 1)
        if not isinstance(spread, (bool, np.bool_)):
            raise InvalidInputError(f"spread must be True or False, got {spread!r}")
        if budget_ms is not None:
            budget_ms = validate.positive_float(budget_ms, "budget_ms")
        self._before_spread(spread)
        r = self._ranked(q, k, bool(spread), budget_ms, t0)
        rec = st.hot()[r.ids]
        self._after_recall(r)
        res = RecallResult(
            ids=r.ids, scores=r.scores, confidence=rec["confidence"].copy(),
            origin=np.where(r.hops == 0, "seed", "spread").astype("<U6"), hops=r.hops,
            content=[st.content_at(int(c)) for c in rec["content_ref"]], partial=r.partial,
            fallback=r.fallback, activation=r.activation, similarity=r.similarity, spreading=r.info)
        total_ns = time.perf_counter_ns() - t0
        r.timings["total_ms"] = total_ns / 1e6
        res.timings = r.timings
        rec_ = self._rec
        rec_.recalls_total.inc()
        rec_.recall_latency_seconds.observe_ns(total_ns)
        if r.partial:
            rec_.recall_partial_total.inc()
        if r.fallback:
            rec_.recall_fallback_total.inc()
        hops = (r.info or {}).get("hops", 0)
        if hops:
            rec_.spread_hops_total.inc(hops)
            rec_.spread_latency_seconds.observe_ns(int(r.timings.get("spread_ms", 0.0) * 1e6))
        if self._tracing:
            self._trace_recall(r, k, total_ns)
        return res

    def _trace_recall(self, r, k: int, total_ns: int) -> None:
        emit, sp, tid = self._trace, self._trace_space, _next_trace_id()
        emit(KINDS["recall"], sp, tid, k, int(r.ids.shape[0]), float(total_ns), 1.0)
        emit(KINDS["scan"], sp, tid, 0, 0, r.timings.get("scan_ms", 0.0) * 1e6, 1.0)
        if "spread_ms" in r.timings:
            info = r.info or {}
            emit(KINDS["spread"], sp, tid, info.get("hops", 0), info.get("touched", 0),
                 r.timings["spread_ms"] * 1e6, 1.0)
        for i, h, score in zip(r.ids.tolist(), r.hops.tolist(), r.scores.tolist()):
            emit(KINDS["result"], sp, tid, i, h, 0.0, score)

    def _ranked(self, q, k: int, spread: bool, budget_ms, t0: int):
        """The recall pipeline, run here (a reader, or an owner without workers)."""
        return _recall.recall(self, q, k, spread=spread, budget_ms=budget_ms, cfg=self._recall_cfg,
                              predictor=self._predictor, batcher=self._batcher, t_begin=t0)

    def spread(self, seeds, max_depth: int | None = None, decay: float | None = None,
               threshold: float | None = None, cycle_penalty: float | None = None, fan: str | None = None):
        """Spreading alone: ``ids, activation = mem.spread({seed_id: 1.0, ...})``.

        seeds: a {id: activation} mapping, or ids (activation 1.0 each). Parameters
        left None take the space's recall configuration; fan: "none" | "source" |
        "target" | "both" (engram/fan.py). Returns every memory
        touched, most active first (ties by id), as int64 ids and float32 activations.
        """
        self._open()
        if isinstance(seeds, dict):
            ids = self._live_ids(list(seeds.keys()))
            act = validate.per_item(list(seeds.values()), ids.shape[0], "seed activation", 1.0, 0.0, 1.0)
        else:
            ids = self._live_ids(seeds)
            act = np.ones(ids.shape[0], np.float32)
        given = {"max_depth": max_depth, "decay": decay, "threshold": threshold, "cycle_penalty": cycle_penalty}
        p = replace(self._recall_cfg.spread, **{k: v for k, v in given.items() if v is not None}).check()
        fan = self._recall_cfg.fan if fan is None else fan
        if fan not in FAN_MODES:
            raise InvalidInputError(f"fan must be one of {', '.join(FAN_MODES)}, got {fan!r}")
        self._before_spread(True)
        graph, _ = self._spread_graph(fan)
        inside = ids < graph.n_nodes
        nodes, a, _ = self._kern.spread_graph(graph, ids[inside], act[inside], max_depth=p.max_depth,
                                              decay=p.decay, threshold=p.threshold,
                                              cycle_penalty=p.cycle_penalty, prefetch_distance=p.prefetch_distance)
        nodes = np.concatenate([nodes, ids[~inside]])
        a = np.concatenate([a, np.minimum(act[~inside], 1.0).astype(np.float32)])
        live = self._visible(nodes)
        nodes, a = nodes[live], a[live]
        order = np.lexsort((nodes, -a))
        return nodes[order], a[order]

    def path(self, sources, target: int, max_hops: int = 4) -> list:
        """The associations that lead from any of ``sources`` to ``target``: the fewest hops
        (at most ``max_hops``), and among those the largest product of link weights (as
        recall spreads over them: with the configured fan discount), as a list of memory ids
        from a source to the target ([] if none within reach). This is the strongest way a
        spread result was reached: ``mem.path(seed_ids, res.ids[i])``."""
        self._open()
        src = self._live_ids(sources)
        tgt = int(self._live_ids(target)[0])
        hops = validate.positive_int(max_hops, "max_hops", 1)
        self._before_spread(True)
        graph, _ = self._spread_graph(self._recall_cfg.fan)
        return _strongest_path(graph, src, tgt, hops)

    def _before_spread(self, spread: bool) -> None:
        """Readers spread over the compacted links only; the owner compacts first."""

    def configure_recall(self, **changes) -> RecallConfig:
        """Change recall's tunables (see engram.recall.RecallConfig); returns the new config."""
        cfg = self._recall_cfg.with_changes(**changes)
        self._recall_cfg, self._spread_params = cfg, cfg.spread_params()
        return cfg

    def spreading_stats(self) -> dict:
        """The latency predictor's error distribution and the batcher's state."""
        p, b = self._predictor, self._batcher
        return {"prediction_error": p.stats.summary(), "spread_estimate_error": p.spread_stats.summary(),
                "hops_seen": p.hops_seen, "spreads_seen": p.spreads_seen,
                "batch_size": b.batch_size, "batch_changes": b.changes}

    def _after_recall(self, r) -> None:
        """Readers cannot record access or priming; the owner's Space does."""

    def stats(self) -> dict:
        st = self._open()
        d = st.dir[0]
        return {
            "space": self.name, "dim": self.dim, "memories": int(d["n_live"]),
            "ids_issued": int(d["next_id"]), "links": int(d["n_links"]),
            "csr_edges": self._graph.csr_edges(), "pending_links": st.count("delta"),
            "hot_rows": st.count("emb_hot"), "warm_rows": st.count("emb_warm"),
            "content_bytes": st.count("content"),
            "generations": {t: st.generation(t) for t in schema.TABLES},
            "kernels": f"{self._kern.name}/{self._kern.isa}",
        }

    def __repr__(self):
        return f"<engram space {self.name!r} dim={self.dim}>"


def _strongest_path(graph, sources: np.ndarray, target: int, max_hops: int) -> list:
    """Breadth-first over the CSR, level by level; each newly reached node keeps the
    parent that reaches it with the largest weight product."""
    n = graph.n_nodes
    if target in set(sources.tolist()):
        return [target]
    off, tg, w = graph.offsets.astype(np.int64), graph.targets, graph.weights
    parent = {}
    frontier = np.unique(sources[sources < n])
    score = np.ones(frontier.shape[0])
    seen = np.zeros(n, bool)
    seen[frontier] = True
    for _ in range(max_hops):
        if frontier.size == 0:
            break
        deg = off[frontier + 1] - off[frontier]
        owner = np.repeat(np.arange(frontier.shape[0]), deg)
        edge = np.repeat(off[frontier] - np.cumsum(deg) + deg, deg) + np.arange(int(deg.sum()))
        v = tg[edge].astype(np.int64)
        sc = score[owner] * w[edge]
        fresh = ~seen[v]
        v, sc, owner = v[fresh], sc[fresh], owner[fresh]
        best = np.lexsort((-sc, v))                         # by node, strongest first
        keep = best[np.r_[True, v[best][1:] != v[best][:-1]]] if best.size else best
        for node, u in zip(v[keep].tolist(), frontier[owner[keep]].tolist()):
            parent[node] = u
        frontier, score = v[keep], sc[keep]
        seen[frontier] = True
        if target in parent:
            out = [target]
            while out[-1] in parent:
                out.append(parent[out[-1]])
            return out[::-1]
    return []


def kernels_query(query, dim: int) -> np.ndarray:
    from engram.kernels.table import as_query
    q = as_query(query, dim)
    if not q.any():
        raise InvalidInputError("query is all zeros: cosine similarity is undefined for it")
    return q


class Space(SpaceView):
    """A memory space owned by this process: read and write."""

    def __init__(self, store, kern, closed_check, workers=None, routing: str = "auto"):
        super().__init__(store, kern, closed_check)
        self._lock = threading.RLock()   # one writer at a time within the owner
        self._workers = workers          # engram.workers.WorkerPool, or None: recall in-process
        self._routing = routing
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._interference = interference.InterferenceConfig()
        self._labile = Reconsolidation(self.dim)
        self._primer = priming.Primer()

    @property
    def _splitter(self):
        """Idle workers gather batches of this process's large hops too (engram/stealing.py)."""
        return self._workers.splitter() if self._workers is not None else None

    def _ranked(self, q, k: int, spread: bool, budget_ms, t0: int):
        # "auto": a lone caller runs the pipeline in its own thread (a round trip to a
        # worker costs more than it saves); callers beyond the first go to the workers,
        # so concurrent recalls run in parallel instead of taking turns at the GIL.
        with self._inflight_lock:
            busy = self._inflight
            self._inflight += 1
        try:
            if self._workers is not None and (busy or self._routing == "workers"):
                r = self._workers.recall(self.name, q, k, spread, budget_ms, self._recall_cfg, t0)
                if r is not None:        # None: workers starting, broken, or every slot busy
                    return r
            return super()._ranked(q, k, spread, budget_ms, t0)
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    def remember(self, vectors, content=None, confidence=None, tier: str = "hot") -> np.ndarray:
        """Store memories; returns their int64 ids. ``tier``: "hot" (f32) or "warm" (f16)."""
        t_call = time.perf_counter_ns()
        if tier not in TIER_NAMES:
            raise InvalidInputError(f"tier must be 'hot' or 'warm', got {tier!r}")
        t = TIER_NAMES[tier]
        v = validate.vectors(vectors, self.dim, f16=(tier == "warm"))
        n = v.shape[0]
        texts = validate.contents(content, n)
        conf = validate.per_item(confidence, n, "confidence", 1.0, 0.0, 1.0)
        with self._lock:
            st = self._open()
            hit = interference.find(st, self._kern, v, self._interference)
            table = TIER_TABLE[t]
            st.reserve("nodes", n)
            st.reserve(table, n)
            refs = st.append_content(texts)
            first, row0 = st.n_nodes, st.count(table)
            ids = np.arange(first, first + n, dtype=np.int64)
            if hit is not None:     # weakens conf (not yet stored) and the old memories' records
                interfered = interference.apply(hit, self._interference, conf, first, st.hot())
            rows = np.arange(row0, row0 + n, dtype=np.uint32)
            tv = st.views[table]
            stored = v.astype(TIER_DTYPE[t], copy=False)
            tv["rows"][row0:row0 + n, :self.dim] = stored
            with np.errstate(over="ignore"):      # a norm past float32 is inf: the kernel then recomputes
                tv["row_norm"][row0:row0 + n] = np.linalg.norm(stored.astype(np.float64), axis=1)
            tv["row_node"][row0:row0 + n] = ids
            tv["row_live"][row0:row0 + n] = 1
            st.publish(table, row0 + n)
            now = self.clock()
            rec = st.views["nodes"]["hot"][first:first + n]
            rec["id"] = ids
            rec["activation"] = 0.0
            rec["confidence"] = conf
            rec["tier"] = t
            rec["flags"] = LIVE
            rec["refractory"] = 0
            rec["primed_s"] = 0
            rec["edge_begin"] = 0
            rec["edge_count"] = 0
            rec["strength"] = 1.0
            rec["access_count"] = 0
            rec["created_ns"] = now
            rec["last_access_ns"] = now
            rec["content_ref"] = refs
            st.views["nodes"]["node_row"][first:first + n] = rows
            st.publish("nodes", first + n)          # nodes last: publishes the whole memory
            st.dir["next_id"] = first + n
            st.dir["n_live"] += n
            st.bump()
        self._rec.remembered_total.inc(n)
        self._rec.remember_latency_seconds.observe_ns(time.perf_counter_ns() - t_call)
        self._rec.memories.set(int(st.dir["n_live"][0]))
        if self._tracing:
            self._trace(KINDS["remember"], self._trace_space, 0, first, n, 0.0, 1.0)
        if hit is not None:
            self._record_interference(*interfered)
        return ids

    def _record_interference(self, *kinds) -> None:
        # trace: node_a the weakened memory, node_b its closest competitor (newer than
        # node_a for retroactive interference, older for proactive), value its confidence
        # after, strength their cosine
        for name, (weakened, partner, conf, sim) in zip(("proactive", "retroactive"), kinds):
            if weakened.size:
                self._rec.interference_total[name].inc(int(weakened.size))
            if self._tracing:
                for a, b, c, s in zip(weakened.tolist(), partner.tolist(), conf.tolist(), sim.tolist()):
                    self._trace(KINDS["interference"], self._trace_space, 0, a, b, c, s)

    def _settings(self) -> dict:
        """What configure_recall/_interference/_reconsolidation set, as saved with a snapshot."""
        cfg = self._recall_cfg
        recall = {**dataclasses.asdict(cfg.spread), **{f: getattr(cfg, f) for f in _recall.OWN_SETTINGS}}
        return {"recall": recall, "interference": dataclasses.asdict(self._interference),
                "reconsolidation": dataclasses.asdict(self._labile.config)}

    def _apply_settings(self, saved: dict) -> None:
        """Settings of a snapshot, back in force; a setting this engram does not know is skipped."""
        for kind, configure, current in (("recall", self.configure_recall, self._settings()["recall"]),
                                         ("interference", self.configure_interference, None),
                                         ("reconsolidation", self.configure_reconsolidation, None)):
            known = current if current is not None else dataclasses.asdict(configure())
            changes = {k: v for k, v in saved.get(kind, {}).items() if k in known}
            if changes:
                configure(**changes)

    def configure_interference(self, **changes) -> interference.InterferenceConfig:
        """Switch and tune interference at remember time (engram/interference.py): proactive,
        retroactive, threshold, proactive_rate, retroactive_rate, floor, competitors."""
        with self._lock:
            self._interference = self._interference.with_changes(**changes)
            return self._interference

    def configure_reconsolidation(self, **changes):
        """Tune the reconsolidation window and plasticity (engram/reconsolidation.py):
        opens_after_s, closes_after_s, min_age_s, peak_plasticity, history."""
        with self._lock:
            return self._labile.configure(**changes)

    def reconsolidate(self, memory_id, vector=None, content=None, confidence=None) -> float:
        """Update a memory inside the window its last recall opened (engram/reconsolidation.py),
        weighted by the plasticity there, which is returned. The replaced version is kept
        (versions()); outside the window a ReconsolidationWindowError says why."""
        with self._lock:
            current = self.get(self._one_id(memory_id))
            p = self._labile.update(self._store, current, vector, content, confidence, self.clock())
            self._store.bump()
        i = int(current.ids[0])
        self._rec.reconsolidation_total.inc()
        if self._tracing:   # node_a the memory, node_b versions kept, strength the plasticity
            self._trace(KINDS["reconsolidation"], self._trace_space, 0, i, len(self._labile.versions(i)), 0.0, p)
        return p

    def versions(self, memory_id) -> list:
        """The memory's versions replaced by reconsolidation, oldest first (Version records)."""
        with self._lock:
            return self._labile.versions(self._one_id(memory_id))

    def _one_id(self, memory_id) -> int:
        a = self._live_ids(memory_id)
        if a.shape[0] != 1:
            raise InvalidInputError(f"pass one memory id, got {a.shape[0]}")
        return int(a[0])

    def link(self, src, dst, weights=1.0) -> int:
        """Associate src -> dst with weight in (0, 1]; scalars broadcast. Returns links added."""
        with self._lock:
            s = self._live_ids(src)
            d = self._live_ids(dst)
            if s.shape[0] != d.shape[0]:
                if s.shape[0] == 1:
                    s = np.repeat(s, d.shape[0])
                elif d.shape[0] == 1:
                    d = np.repeat(d, s.shape[0])
                else:
                    raise InvalidInputError(f"src has {s.shape[0]} ids and dst {d.shape[0]}: pass equal lengths or one id")
            w = validate.per_item(weights, s.shape[0], "weights", 1.0, 0.0, 1.0, lo_open=True)
            self._primer.forget_pending(s, d)
            return self._link_trusted(s, d, w)

    def _link_trusted(self, s: np.ndarray, d: np.ndarray, w: np.ndarray) -> int:
        """link() for ids and weights already checked (priming's co-recall links)."""
        with self._lock:
            self._graph.append(s.astype(np.uint32), d.astype(np.uint32), w)
            self._store.bump()
        self._rec.links_total.inc(int(s.shape[0]))
        if self._tracing:
            self._trace(KINDS["link"], self._trace_space, 0, int(s[0]), int(d[0]), float(s.shape[0]), float(w[0]))
        return int(s.shape[0])

    def forget(self, ids) -> int:
        """Forget memories (all or none): they leave recall, get and links. Returns how many."""
        with self._lock:
            a = np.unique(self._live_ids(ids))
            st = self._store
            rec = st.hot()
            rows = st.views["nodes"]["node_row"][a]
            tiers = rec["tier"][a]
            for tier, table in TIER_TABLE.items():
                st.views[table]["row_live"][rows[tiers == tier]] = 0
            rec["flags"][a] = FORGOTTEN
            st.dir["n_live"] -= a.shape[0]
            st.bump()
        self._rec.forgotten_total.inc(int(a.shape[0]))
        self._rec.memories.set(int(st.dir["n_live"][0]))
        if self._tracing:
            self._trace(KINDS["forget"], self._trace_space, 0, int(a[0]), int(a.shape[0]), 0.0, 1.0)
        return int(a.shape[0])

    def _before_spread(self, spread: bool) -> None:
        # spreading runs over the CSR: merge pending links first (once per batch of links)
        if spread and self._store.count("delta"):
            with self._lock:
                if self._store.count("delta"):
                    self._graph.compact()

    def compact(self) -> int:
        """Merge pending links into the CSR now; returns the number of live links."""
        with self._lock:
            self._open()
            self._primer.flush(self)
            return self._graph.compact()

    def _after_recall(self, r) -> None:
        # The scan itself runs without the lock (the kernels release the GIL,
        # so concurrent recalls overlap); only the access update is serialised.
        ids = r.ids
        if ids.shape[0]:
            with self._lock:
                rec = self._store.hot()
                now = self.clock()
                rec["last_access_ns"][ids] = now
                rec["access_count"][ids] += 1
                cfg = self._recall_cfg
                if cfg.fan != "none" and not r.fallback and r.info and r.info.get("hops"):
                    # fan interference: each directly matched memory whose several associations
                    # divided its activation among them (ACT-R's fan effect, engram/fan.py)
                    fanned = int(np.count_nonzero(rec["edge_count"][ids[r.hops == 0]] > 1))
                    if fanned:
                        self._rec.interference_total["fan"].inc(fanned)
                if cfg.priming and r.primed is not None:
                    counts = self._primer.record(self, ids, r.primed, now, cfg)
                    for code, (kind, n) in enumerate(counts.items()):
                        if n:
                            self._rec.priming_total[kind].inc(n)
                            if self._tracing:     # node_b: 0 repetition, 1 semantic, 2 associative
                                self._trace(KINDS["priming"], self._trace_space, 0, int(ids[0]), code,
                                            float(n), 1.0)


def _shutdown(engine: EngineName, workers) -> None:
    if os.getpid() == engine.pid:   # never from a forked child
        if workers is not None:
            workers.close()
        unlink_engine(engine)


class Engine:
    """Owner of memory spaces in shared memory.

    path: None keeps everything in shared memory only (ephemeral). A
    directory keeps a snapshot there: loaded at start, written by save() and
    close(). Changes since the last save are lost if the process dies (the
    write-ahead log that makes every remember durable is a later layer).
    dim: embedding dimension of every space. workers: recall worker
    processes (None: CPU count; 0: recall runs in the calling thread). They
    start on the first recall; see engram/workers.py. trace: None (off), True,
    or an engram.tracing.TraceConfig (with collect_to=DIR, a collector process
    writes the events there). routing: "auto" (a lone
    caller recalls in its own thread, concurrent callers go to the workers) or
    "workers" (every recall goes to a worker once they are up).
    """

    def __init__(self, path=None, dim: int = 768, workers=None, routing: str = "auto", trace=None):
        self.dim = validate.positive_int(dim, "dim", 1)
        if self.dim > MAX_DIM:
            raise InvalidInputError(f"dim {dim} is larger than the maximum {MAX_DIM}")
        self.workers = (os.cpu_count() or 1) if workers is None else validate.positive_int(workers, "workers")
        if routing not in ROUTINGS:
            raise InvalidInputError(f"routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
        self.routing = routing
        if trace is True:
            trace = TraceConfig()
        if trace is not None and not isinstance(trace, TraceConfig):
            raise InvalidInputError(f"trace must be None, True or an engram.tracing.TraceConfig, got {trace!r}")
        self.trace_config = trace.check() if trace is not None else None
        self.path = None if path is None else Path(path)
        self.cleaned = cleanup_stale()
        self._name = EngineName.new()
        self._kern = kernels.backend()
        self._spaces: dict = {}
        self._lock = threading.Lock()
        self._closed = False
        self._path_lock = None
        self._metrics_seg = metrics.MetricsSegment.create(self._name)
        self._metrics_slot = self._metrics_seg.claim(metrics.ROLE_OWNER)
        hw = hwcounters.probe()[0]
        metrics.recorder(self._metrics_seg, self._metrics_slot, "").spreading_hw_counters.set(int(hw))
        self._spreading = SpreadingRecorder(self._metrics_seg, self._metrics_slot, hw)
        self._tracer = Tracer(self._name if self.trace_config else None, self.trace_config, worker=0)
        self._collector = None
        self._workers = WorkerPool(self._name, self.dim, self.workers) if self.workers else None
        self._finalizer = weakref.finalize(self, _shutdown, self._name, self._workers)
        if self.trace_config is not None and self.trace_config.collect_to:
            self._collector = start_collector(self._name, self.trace_config)
        if self.path is not None:
            self._path_lock = snapshot.PathLock(self.path)
            try:
                for name, arrs in snapshot.load(self.path, self.dim).items():
                    sp = self.space(name)
                    snapshot.restore(sp._store, arrs)
                    if "settings" in arrs:       # snapshots from before settings were kept have none
                        sp._apply_settings(json.loads(str(arrs["settings"])))
                    sp._labile.restore(arrs)
                    sp._rec.memories.set(len(sp))
            except BaseException:
                self._path_lock.release()
                self.close()
                raise

    @property
    def name(self) -> str:
        """The engine's name, for ``engram.attach`` and the attach tools."""
        return str(self._name)

    def _check_open(self):
        if self._closed:
            raise ClosedError("this engram.Engine is closed; create a new one")

    def space(self, name: str = "default") -> Space:
        """The memory space ``name``, created on first use."""
        self._check_open()
        validate.space_name(name)
        with self._lock:
            sp = self._spaces.get(name)
            if sp is None:
                store = SpaceStore(self._name, name, self.dim, create=True)
                sp = self._spaces[name] = Space(store, self._kern, self._check_open, self._workers, self.routing)
                sp._metrics = self._spreading
                sp._rec = metrics.recorder(self._metrics_seg, self._metrics_slot, name, assign=True)
                sp._tracing, sp._trace = self._tracer.enabled, self._tracer.emit
                sp._trace_space = self._metrics_seg.space_index(name)
            return sp

    def spaces(self) -> list:
        self._check_open()
        return sorted(self._spaces)

    def spreading_metrics(self) -> dict:
        """Spreading metrics summed over the owner and every worker (shared memory):
        prediction error, cache miss rate (or "not supported"), pool use and hit rate."""
        self._check_open()
        pool = self._workers.pool.stats() if self._workers is not None and self._workers.started else None
        return spreading_summary(self._metrics_seg, pool)

    def start_workers(self, timeout: float = 30.0) -> bool:
        """Start the worker processes now (they otherwise start on the first recall, which
        then runs in-process until they are up) and wait until they take tasks."""
        self._check_open()
        if self._workers is None:
            return False
        if not self._workers.wait_ready(timeout):
            raise WorkerError(f"the worker processes did not start within {timeout} s"
                              + (f": {self._workers.broken}" if self._workers.broken else ""))
        return True

    def configure_workers(self, steal_min_edges: int | None = None, steal_min_batch: int | None = None) -> dict:
        """Work stealing (docs/workers.md): a worker splits a hop that fires at least
        ``steal_min_edges`` edges among idle workers (0: never split), in batches of at
        least ``steal_min_batch`` frontier nodes (0: the AdaptiveBatcher's size). Takes
        effect at once; returns the settings now in force."""
        self._check_open()
        for name, v in (("steal_min_edges", steal_min_edges), ("steal_min_batch", steal_min_batch)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32):
                raise InvalidInputError(f"{name} must be an integer in [0, 2^32), got {v!r}")
        if self._workers is None:
            raise InvalidInputError("this engine runs without workers (workers=0): there is nothing to configure")
        return self._workers.configure_stealing(steal_min_edges, steal_min_batch)

    def worker_stats(self) -> dict:
        """The worker processes: alive, requests served, failed, retried, restarts, the record pool."""
        self._check_open()
        return {"workers": 0} if self._workers is None else self._workers.stats()

    def save(self):
        """Write a snapshot of every space to ``path`` (compacting links first); returns its directory."""
        self._check_open()
        if self.path is None:
            raise InvalidInputError("this engine has no path: create it with engram.Engine(path=...) to save")
        with self._lock:
            for sp in self._spaces.values():
                sp.compact()
            return snapshot.save(self.path, self.dim, {n: sp._store for n, sp in self._spaces.items()},
                                 {n: {**sp._labile.arrays(sp._store), "settings": np.array(json.dumps(sp._settings()))}
                                  for n, sp in self._spaces.items()})

    def close(self) -> None:
        """Save (with a path), then remove every segment of this engine. Safe to call twice."""
        if self._closed:
            return
        try:
            if self._path_lock is not None and self._path_lock.fd >= 0:
                self.save()
        finally:
            self._closed = True
            if self._workers is not None:
                self._workers.close()        # before the segments they read go away
            self._tracer.close()
            if self._collector is not None:  # it drains every ring before the segments go
                stop_collector(self._collector)
            for sp in self._spaces.values():
                sp._store.close(unlink=True)
            if self._path_lock is not None:
                self._path_lock.release()
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else f"{len(self._spaces)} spaces"
        return f"<engram.Engine {self.name} dim={self.dim} {state}>"


class Attached:
    """A live engine opened read-only from another process."""

    def __init__(self, name: str):
        self._name = EngineName.parse(name)
        self._views: dict = {}

    @property
    def name(self) -> str:
        return str(self._name)

    def spaces(self) -> list:
        return spaces_of(self._name)

    def space(self, name: str = "default") -> SpaceView:
        validate.space_name(name)
        if name not in self._views:
            self._views[name] = SpaceView(SpaceStore(self._name, name, create=False))
        return self._views[name]

    def close(self) -> None:
        for v in self._views.values():
            v._store.close(unlink=False)
        self._views.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def attach(name: str) -> Attached:
    """Open a running engine by name (``Engine.name``), read-only."""
    return Attached(name)
