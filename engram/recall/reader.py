"""SpaceReader: a read-only view of one memory space, the same in every process.

The owner, each worker and an attached process build one from the space's
segments (a SpaceStore) and a kernel table; recall, spreading and PageRank read
the space only through it. It takes trusted arguments: the public Space checks
its input before it calls here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engram.config import FAN_MODES
from engram.kernels.spreadrun import CsrGraph
from engram.layout import NODE_HOT_DTYPE, schema
from engram.recall import ann, ppr
from engram.results import Memories
from engram.store.graph import Graph
from engram.store.tables import FORGOTTEN, TIER_LABEL, TIER_TABLE, SpaceStore

#: while a budget runs, the scan checks the clock after each chunk of about this many bytes
#: (~0.2 ms at the ~10 GB/s one core scans; a chunk of 65,536 rows was 100 MB at 384-d f32)
SCAN_CHUNK_BYTES = 2 << 20
NEWEST_BLOCK_CHUNKS = 16    # a budgeted scan goes back from the newest rows this many chunks at a time
FLAGS_AT = NODE_HOT_DTYPE.fields["flags"][1]      # where spreading's driver reads a memory's flags
TIER_AT = NODE_HOT_DTYPE.fields["tier"][1]
# the re-scoring kernel finds a tier's table at the tier's code: codes 0, 1, 2 in order
assert list(TIER_TABLE) == list(range(len(TIER_TABLE))), TIER_TABLE
TIER_WARM = schema.CONSTANTS["TIER_WARM"]
TIER_HOT = schema.CONSTANTS["TIER_HOT"]
#: a budgeted scan's time per tier after the hot one: each may use this share of the time
#: left when it starts (the hot tier's is RecallConfig.hot_budget_share), cold last
TIER_SHARE = {TIER_WARM: 0.6, schema.CONSTANTS["TIER_COLD"]: 1.0}


def scan_chunk(rows: np.ndarray) -> int:
    """Rows per chunk of a budgeted scan of ``rows``."""
    return max(SCAN_CHUNK_BYTES // max(rows.strides[0], 1), 1)


def newest_first(kern, q: np.ndarray, rows: np.ndarray, k: int, live, norm, until: int):
    """(row indices, scores, rows scanned): the budgeted top k of a tier's rows, scanned
    from the newest chunk back in blocks of NEWEST_BLOCK_CHUNKS chunks, best first, equal
    scores by lower row. A scan the budget cuts misses the oldest rows (which the index
    takes first), not the memories stored a moment ago, which recall must find at once
    (during heavy ingest the cut used to fall on exactly those)."""
    n, chunk = rows.shape[0], scan_chunk(rows)
    found_i, found_s, scanned, hi = [], [], 0, n
    while hi > 0:                  # the newest chunk alone first: a block runs oldest chunk first
        lo = max(hi - (chunk if hi == n else chunk * NEWEST_BLOCK_CHUNKS), 0)
        idx, sc, got = kern._topk_until("cosine", q, rows[lo:hi], k, live[lo:hi], norm[lo:hi], until, chunk)
        found_i.append(idx + lo)
        found_s.append(sc)
        scanned += got
        if got < hi - lo or time.perf_counter_ns() >= until:     # each call runs a chunk at least
            break
        hi = lo
    if len(found_i) == 1:
        return found_i[0], found_s[0], scanned
    idx, sc = np.concatenate(found_i), np.concatenate(found_s)
    order = np.lexsort((idx, -sc))[:k]
    return idx[order], sc[order], scanned


@dataclass(frozen=True)
class Links:
    """The compacted links as spreading reads them: weights of one fan mode (or normalised
    per source, for a walk), each node's out-degree, and the CSR generation they are of."""
    csr: CsrGraph
    degree: np.ndarray      # int64 out-degree per node
    generation: int


@dataclass(frozen=True)
class Similar:
    """The exact top-k by cosine over both tiers, best first (ties by id)."""
    ids: np.ndarray         # int64
    scores: np.ndarray      # float32 cosine
    warm_share: float       # share of them in the warm (f16) tier: a feature of the latency model
    partial: bool           # the scan stopped at the deadline


class SpaceReader:
    """Reads one space. ``refresh()`` first: a reader's view of the counts is a snapshot
    taken then (the owner reads its live counts)."""

    def __init__(self, store: SpaceStore, kern, derive=None):
        """derive: the owner's rule for the CSR's fan-weighted copies (see Graph); readers
        never compact, and pass none."""
        self.store, self.kern = store, kern
        self.name, self.dim = store.space, store.dim
        self.graph = Graph(store, derive)
        self.ann = ann.AnnView(store.engine, store.space, store.dim)
        self._graphs = (None, {})       # (CSR generation, {(fan, walk): Links or (version, ...)})

    def refresh(self) -> None:
        if not self.store.writable:
            self.store.refresh()

    @property
    def n_nodes(self) -> int:
        return self.store.n_nodes

    def __len__(self) -> int:
        return self.store.n_live

    def hot(self) -> np.ndarray:
        """The published node records (64 bytes each), indexed by memory id."""
        return self.store.hot()

    def unknown(self, ids: np.ndarray) -> np.ndarray:
        """Mask of ids that name no live memory (never issued, or forgotten)."""
        bad = (ids < 0) | (ids >= self.n_nodes)
        if not bad.any() and self.store.n_forgotten:
            bad = ~self.visible(ids)
        return bad

    def visible(self, ids: np.ndarray) -> np.ndarray:
        """Mask of ids that are published and not forgotten."""
        return self.graph.live(ids.astype(np.int64, copy=False))

    def memories(self, ids: np.ndarray) -> Memories:
        st = self.store
        vecs = st.vectors_of(ids)
        rec = st.hot()[ids]
        return Memories(
            ids=ids, vectors=vecs, content=self.content(rec["content_ref"]),
            confidence=rec["confidence"].copy(), strength=rec["strength"].copy(),
            tier=[TIER_LABEL[int(t)] for t in rec["tier"]], created_ns=rec["created_ns"].copy(),
            last_access_ns=rec["last_access_ns"].copy(), access_count=rec["access_count"].copy())

    def content(self, refs) -> list:
        return [self.store.content_at(int(r)) for r in refs]

    def similar(self, q: np.ndarray, k: int, deadline_ns: int | None = None, hot_share: float = 0.5,
                breadth: int | None = None) -> Similar:
        """Exact top-k by cosine, hot tier (f32) first, then warm (f16), then cold (int8). With
        a deadline the hot tier may use ``hot_share`` of the time left and each other tier its
        TIER_SHARE of the time left when it starts; each is scanned in chunks
        (scan_chunk) so the deadline is checked between them, newest rows first (newest_first);
        a scan cut short is partial.
        When the space has an index (engram/recall/ann.py) only each tier's tail past it is
        scanned, and the index's candidates, scored exactly, join the scan's. The index is
        searched at least as broadly as the owner's audit says (engram/recall/audit.py), or
        not used when it says EXACT; when it says SKETCH, the candidates come from a scan of
        the index's quantised sketch instead (engram/recall/sketch.py). ``breadth`` overrides
        that (the audit's own trials)."""
        st = self.store
        state, index = self.ann.current(st.dir)
        if breadth is None:          # a recall's own search (not an audit's trial): it may be audited
            breadth = state.breadth
            if index is not None and self.ann.audit is not None:
                self.ann.audit.offer(q)
        sketch = self.ann.sketch        # (another thread's current() may replace the attribute)
        if breadth == ann.EXACT or (breadth == ann.SKETCH and sketch is None):
            state, index = ann.NO_INDEX, None
        found_ids, found_scores, found_tier = [], [], []
        if index is not None:
            ids, sc, tiers = self._candidates(sketch if breadth == ann.SKETCH else index, q,
                                              ann.wanted(k), k, deadline_ns, breadth)
            found_ids.append(ids)
            found_scores.append(sc)
            found_tier.append(tiers)
        partial = False
        for tier, table in TIER_TABLE.items():
            if st.count(table) <= state.rows[tier]:     # nothing past what the index holds (or no rows)
                continue
            rows, row_node, row_live, row_norm = st.tier_rows(tier)
            a = min(state.rows[tier], rows.shape[0])     # (a reader's snapshot may end before the index)
            if a:       # the tail: rows the index has not taken yet
                rows, row_node, row_live, row_norm = rows[a:], row_node[a:], row_live[a:], row_norm[a:]
            if not rows.shape[0]:
                continue
            if deadline_ns is None:
                idx, sc = self.kern._topk("cosine", q, rows, k, row_live, row_norm)
            else:     # in chunks, the clock checked between them, in one call without the GIL
                now = time.perf_counter_ns()
                until = now + int((hot_share if tier == TIER_HOT else TIER_SHARE[tier]) * (deadline_ns - now))
                idx, sc, scanned = newest_first(self.kern, q, rows, k, row_live, row_norm, until)
                partial = partial or scanned < rows.shape[0]
            ids = row_node[idx].astype(np.int64)
            if not st.writable and ids.shape[0] and ids.max() >= self.n_nodes:
                # a reader's snapshot counts nodes before rows, and the owner publishes a row
                # before its node: a row past the node count is not visible yet
                seen = ids < self.n_nodes
                ids, sc = ids[seen], sc[seen]
            found_ids.append(ids)
            found_scores.append(sc)
            found_tier.append(np.full(sc.shape[0], tier, np.uint8))
        if not found_ids:
            return Similar(np.zeros(0, np.int64), np.zeros(0, np.float32), 0.0, partial)
        if len(found_ids) == 1:      # one source: already best first, ties by row = by id
            top = found_tier[0][:k]
            return Similar(found_ids[0][:k], found_scores[0][:k],
                           np.count_nonzero(top == TIER_WARM) / top.shape[0] if top.shape[0] else 0.0, partial)
        ids = np.concatenate(found_ids)
        scores = np.concatenate(found_scores)
        tiers = np.concatenate(found_tier)
        order = np.lexsort((ids, -scores))
        if index is not None:        # a memory both a candidate and in the tail (a new row): once
            _, first = np.unique(ids[order], return_index=True)
            order = order[np.sort(first)]
        order = order[:k]
        warm = np.count_nonzero(tiers[order] == TIER_WARM) / max(order.size, 1)
        return Similar(ids[order], scores[order], warm, partial)

    def _candidates(self, index, q: np.ndarray, n: int, k: int, deadline_ns: int | None = None, breadth: int = 0):
        """(ids, exact cosine, tier) of the index's (or its sketch's) nearest live memories, best first: each
        scored from its stored row by the kernel the exact scan uses (one call: the kernel
        table's _rescore); a memory moving between tiers is in the tail instead. ``n``
        candidates are taken, and four times as many again while fewer than ``k`` of them
        are live: the index keeps forgotten memories until it is rebuilt, and when a
        query's nearest were forgotten its first candidates are all gone."""
        st = self.store
        nodes = st.views["nodes"]
        tables = tuple((st.views[table]["rows"][:, :self.dim], st.views[table]["row_node"],
                        st.views[table]["row_norm"], st.count(table)) for table in TIER_TABLE.values())
        while True:
            if breadth == ann.SKETCH:       # ``index`` is the sketch
                ids = index.candidates(self.kern, q, n)
            else:
                ids = ann.candidates(index, q, n, deadline_ns, self.ann.cost, breadth)
            taken = ids.shape[0]
            ids, sc, tiers = self.kern._rescore("cosine", q, ids, nodes["hot"][:self.n_nodes], TIER_AT, FLAGS_AT,
                                                FORGOTTEN, nodes["node_row"], tables)
            if ids.shape[0] >= k or taken < n or n >= len(index):
                break
            n = min(4 * n, len(index))
        order = np.lexsort((ids, -sc))
        return ids[order], sc[order], tiers[order]

    def links(self, fan: str = "none") -> Links:
        """The compacted links with the weights of a fan mode, cached per CSR generation."""
        graphs = self._cache()
        if (fan, False) not in graphs:
            st = self.store
            csr = st.csr()
            w = csr["weights"] if fan == "none" else csr["fan"][FAN_MODES.index(fan) - 1]
            g = CsrGraph._trusted(csr["offsets"], csr["targets"], w)
            graphs[fan, False] = Links(g, np.diff(g.offsets).astype(np.int64), self._graphs[0])
        return graphs[fan, False]

    def spread(self, fan: str, seeds: np.ndarray, act: np.ndarray, params):
        """Spreading alone from live seeds (int64 ids, f32 activations): (ids, activation, hops)
        of every live memory reached, most active first, ties by id. Seeds without links
        yet (outside the compacted graph) come back as they went in, capped at 1."""
        g = self.links(fan).csr
        return self.kern._spread_live((g.offsets, g.targets, g.weights), seeds, act, params, self.hot(),
                                      FLAGS_AT, self.hidden())

    def hidden(self) -> int:
        """The flag bits that hide a node record from spreading and ranking; 0 when nothing
        was ever forgotten, so no record need be read to know it is live."""
        return FORGOTTEN if self.store.n_forgotten else 0

    def walk_links(self, fan: str = "none") -> Links:
        """The same links normalised per source (PageRank's transition weights), rebuilt also
        after an in-place reweight (associative priming), which the plain views see at once."""
        plain = self.links(fan)
        graphs = self._graphs[1]
        version = int(self.store.csr()["header"]["weights_version"][0])
        cached = graphs.get((fan, True))
        if cached is None or cached[0] != version:
            cached = graphs[fan, True] = (version, Links(ppr.normalized(plain.csr), plain.degree,
                                                               plain.generation))
        return cached[1]

    def _cache(self) -> dict:
        gen = self.store.generation("csr")
        if self._graphs[0] != gen:
            self._graphs = (gen, {})
        return self._graphs[1]

    def neighbors(self, memory_id: int):
        """(ids, weights) of the memories this one links to (pending links included)."""
        return self.graph.neighbors(memory_id)

    def stats(self) -> dict:
        st = self.store
        d = st.dir[0]
        return {
            "space": self.name, "dim": self.dim, "memories": int(d["n_live"]),
            "ids_issued": int(d["next_id"]), "links": int(d["n_links"]),
            "csr_edges": self.graph.csr_edges(), "pending_links": st.count("delta"),
            "hot_rows": st.count("emb_hot"), "warm_rows": st.count("emb_warm"), "cold_rows": st.count("emb_cold"),
            "content_bytes": st.count("content"),
            "generations": {t: st.generation(t) for t in schema.TABLES},
            "kernels": f"{self.kern.name}/{self.kern.isa}",
            "index": self._index_stats(),
        }

    def _index_stats(self) -> dict:
        """The index as its directory tells, and in the owner the audit's figures behind its
        breadth (each rung's recall@10 and CPU ms, engram/recall/audit.py)."""
        st = self.store
        out = ann.describe(st.dir, st.tier_counts())
        if self.ann.audit is not None:
            out["audit"] = self.ann.audit.stats()
        return out
