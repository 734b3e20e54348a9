"""Associations: a CSR adjacency in shared memory plus a delta log of new links.

``link`` appends to the delta log (cheap, visible at once); ``compact``
merges the log into a new CSR generation. Links are directed; linking the
same (src, dst) again replaces the weight (the last write wins). Links that
touch a forgotten memory are hidden at once and dropped at compaction.
"""
from __future__ import annotations

import numpy as np

from engram.store.tables import FORGOTTEN, SpaceStore

MIN_COMPACT = 4096   # delta entries before an automatic compaction


def _last_per_key(src, dst, w):
    """Keep the last (src, dst) occurrence; return arrays sorted by (src, dst)."""
    key = (src.astype(np.uint64) << np.uint64(32)) | dst.astype(np.uint64)
    rev = key[::-1]
    uniq, first = np.unique(rev, return_index=True)   # sorted keys, last write wins
    pick = (key.shape[0] - 1) - first
    return src[pick], dst[pick], w[pick]


class Graph:
    """The links of one space: read by anyone, written by the owner. ``derive(offsets,
    targets, weights) -> float32[3, m]``: the weights in each fan mode, kept in the CSR
    at compaction (the owner's rule, engram/cognition/fan.py; readers never compact)."""

    def __init__(self, store: SpaceStore, derive=None):
        self.store = store
        self.derive = derive

    def append(self, src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> None:
        """Owner: append validated links to the delta log and publish them."""
        st = self.store
        n = src.shape[0]
        st.reserve("delta", n)
        used = st.count("delta")
        log = st.views["delta"]["log"]
        seq0 = int(st.dir["n_links"][0])
        log["src"][used:used + n] = src
        log["dst"][used:used + n] = dst
        log["weight"][used:used + n] = w
        log["seq"][used:used + n] = (np.arange(seq0, seq0 + n) & 0xFFFFFFFF).astype(np.uint32)
        st.publish("delta", used + n)
        st.dir["n_links"] += n
        if used + n >= max(MIN_COMPACT, self.csr_edges() // 4):
            self.compact()

    def csr_edges(self) -> int:
        return int(self.store.csr()["header"]["n_edges"][0])

    def edges(self):
        """Every live edge (src, dst, weight), last write per pair, sorted by (src, dst)."""
        st = self.store
        csr = st.csr()
        off = csr["offsets"]
        counts = np.diff(off.astype(np.int64))
        src = np.repeat(np.arange(counts.shape[0], dtype=np.uint32), counts)
        d = st.delta()
        src = np.concatenate([src, d["src"]])
        dst = np.concatenate([csr["targets"], d["dst"]])
        w = np.concatenate([csr["weights"], d["weight"]])
        if src.size:
            src, dst, w = _last_per_key(src, dst, w)
            live = self.live(src) & self.live(dst)
            src, dst, w = src[live], dst[live], w[live]
        return src, dst, w

    def live(self, ids: np.ndarray) -> np.ndarray:
        """Mask of ids that are visible (a reader's snapshot may predate some) and not forgotten."""
        flags = self.store.hot()["flags"]
        ok = ids < flags.shape[0]
        ok[ok] = (flags[ids[ok]] & FORGOTTEN) == 0
        return ok

    def neighbors(self, node: int):
        """(target ids, weights) of one memory's outgoing links, sorted by target."""
        st = self.store
        csr = st.csr()
        off = csr["offsets"]
        if node + 1 < off.shape[0]:
            a, b = int(off[node]), int(off[node + 1])
            dst, w = csr["targets"][a:b], csr["weights"][a:b]
        else:
            dst, w = np.zeros(0, np.uint32), np.zeros(0, np.float32)
        d = st.delta()
        mine = d["src"] == node
        if mine.any():
            dst = np.concatenate([dst, d["dst"][mine]])
            w = np.concatenate([w, d["weight"][mine]])
            _, dst, w = _last_per_key(np.full(dst.shape, node, np.uint32), dst, w)
        live = self.live(dst)
        return dst[live].astype(np.int64), w[live].copy()

    def reweight(self, src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Owner: set the weight of links already in the CSR, in place (the plain weights and
        the fan-discounted ones, which scale with them); returns the mask of pairs found.
        Readers see each new weight at once (a 4-byte store); the CSR's weights_version
        tells caches of derived weights (PageRank's normalised ones) to rebuild."""
        csr = self.store.csr()
        off, targets = csr["offsets"], csr["targets"]
        found = np.zeros(src.shape[0], bool)
        n = off.shape[0] - 1
        for i, (a, b) in enumerate(zip(src.tolist(), dst.tolist())):
            if a >= n:
                continue
            lo, hi = int(off[a]), int(off[a + 1])
            e = lo + int(np.searchsorted(targets[lo:hi], b))        # rows are sorted by target
            if e < hi and targets[e] == b:
                old = float(csr["weights"][e])
                csr["weights"][e] = w[i]
                csr["fan"][:, e] *= np.float32(w[i] / old)
                found[i] = True
        if found.any():
            csr["header"]["weights_version"] += 1
        return found

    def compact(self) -> int:
        """Owner: merge the delta log into a new CSR generation; returns the edge count."""
        st = self.store
        src, dst, w = self.edges()
        n = st.n_nodes
        offsets = np.zeros(n + 1, np.uint64)
        np.cumsum(np.bincount(src, minlength=n), out=offsets[1:])
        st.begin_update()
        targets, weights = dst.astype(np.uint32), w.astype(np.float32)
        st.replace_csr(offsets, targets, weights, self.derive(offsets, targets, weights), st.count("delta"))
        st.reset_delta()
        hot = st.hot()
        hot["edge_begin"] = offsets[:-1].astype(np.uint32)
        hot["edge_count"] = np.diff(offsets).astype(np.uint32)
        st.end_update()
        return int(dst.shape[0])
