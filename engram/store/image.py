"""A space's tables as a snapshot keeps them: captured at a consistent point, restored into
a new, empty space.

``capture`` runs while the space's writers are held (the engine holds every
space's lock and the log's sequence for a moment). It copies what changes in
place (node records, row flags and norms, link weights, the delta log) and
takes the rest as views of shared memory: the embedding rows and the content
heap, written to disk after the writers go on. Both are append-only: a stored
row never changes (reconsolidation and tier migration write the new vector to a
new row at the end of a table, SpaceStore.rewrite_row) and content is never
rewritten, so the captured counts of rows and content bytes are the state at
the snapshot's LSN, whatever is appended meanwhile; later records are replayed
on top (docs/durability/wal-format.md, Checkpoints).
"""
from __future__ import annotations

import numpy as np

from engram.layout import EDGE_DELTA_DTYPE, NODE_HOT_DTYPE
from engram.store.tablecheck import row_parts
from engram.store.tables import TIER_DTYPE, TIER_TABLE

COUNTERS = ("next_id", "n_live", "n_links")
#: tables a snapshot may lack: written before the table existed (it was empty then)
NEWER = ("emb_cold",)


def capture(store) -> dict:
    """{name: array} of one space (call with its writers held)."""
    n = store.n_nodes
    out = {"hot": store.hot().copy(), "node_row": store.views["nodes"]["node_row"][:n].copy(),
           "content": store.views["content"]["heap"][:store.count("content")]}
    for table in TIER_TABLE.values():
        r, v = store.count(table), store.views[table]
        out[f"{table}_rows"] = v["rows"][:r, :store.dim]       # view: see the module docstring
        for part in row_parts(table):
            out[f"{table}_{part}"] = v[part][:r].copy()
    csr = store.csr()
    out["csr_offsets"], out["csr_targets"] = csr["offsets"], csr["targets"]    # a CSR generation never changes
    out["csr_weights"] = csr["weights"].copy()                                 # but priming reweights in place
    out["delta"] = store.delta().copy()
    d = store.dir[0]
    out["counters"] = np.array([d[c] for c in COUNTERS], np.uint64)
    return out


def restore(store, arrs: dict, derive) -> None:
    """Fill a new, empty SpaceStore from ``capture`` output (derive: as Graph's). The arrays
    were checked against their file; here only their agreement with each other is."""
    n = arrs["hot"].shape[0]
    store.reserve("nodes", n)
    store.views["nodes"]["hot"][:n] = arrs["hot"]
    store.views["nodes"]["node_row"][:n] = arrs["node_row"]
    for table in TIER_TABLE.values():
        if f"{table}_rows" not in arrs:     # an older snapshot (check() allowed it)
            continue
        rows = arrs[f"{table}_rows"]
        r = rows.shape[0]
        store.reserve(table, r)
        v = store.views[table]
        v["rows"][:r, :store.dim] = rows
        for part in row_parts(table):
            v[part][:r] = arrs[f"{table}_{part}"]
        store.publish(table, r)
    content = arrs["content"]
    store.reserve("content", content.shape[0])
    store.views["content"]["heap"][:content.shape[0]] = content
    store.publish("content", content.shape[0])
    off, tg, w = arrs["csr_offsets"], arrs["csr_targets"], arrs["csr_weights"]
    store.replace_csr(off, tg, w, derive(off, tg, w), 0)
    delta = arrs.get("delta")
    if delta is not None and delta.shape[0]:
        store.reserve("delta", delta.shape[0])
        store.views["delta"]["log"][:delta.shape[0]] = delta
        store.publish("delta", delta.shape[0])
    store.publish("nodes", n)
    for name, value in zip(COUNTERS, arrs["counters"].tolist()):
        store.dir[name] = value
    store.bump()


def check(arrs: dict, dim: int) -> str | None:
    """What is wrong with a space's arrays as a whole (each was checked against its file on
    its own), or None: a snapshot whose checksums hold can still be crafted."""
    need = ["hot", "node_row", "content", "csr_offsets", "csr_targets", "csr_weights", "counters"]
    need += [f"{t}_{p}" for t in TIER_TABLE.values() for p in ("rows", *row_parts(t))
             if not (t in NEWER and f"{t}_rows" not in arrs)]
    missing = [k for k in need if k not in arrs]
    if missing:
        return f"arrays {missing} are missing"
    hot = arrs["hot"]
    if hot.dtype != NODE_HOT_DTYPE or hot.ndim != 1:
        return f"node records are {hot.dtype} {hot.shape}, not NodeHot (n,)"
    n = hot.shape[0]
    if arrs["node_row"].shape != (n,) or arrs["node_row"].dtype != np.uint32:
        return "node_row does not match the node records"
    for tier, table in TIER_TABLE.items():
        if f"{table}_rows" not in arrs:
            if (hot["tier"] == tier).any():
                return f"node records are in tier {table}, of which the snapshot has no rows"
            continue
        rows = arrs[f"{table}_rows"]
        if rows.ndim != 2 or rows.shape[1] != dim or rows.dtype != TIER_DTYPE[tier]:
            return f"{table} rows are {rows.dtype} {rows.shape}, not (r, {dim}) {TIER_DTYPE[tier]}"
        for part, dt in row_parts(table).items():
            a = arrs[f"{table}_{part}"]
            if a.shape != (rows.shape[0],) or a.dtype != dt:
                return f"{table}_{part} does not match its rows"
        scale = arrs.get(f"{table}_row_scale")
        if scale is not None and not (np.isfinite(scale).all() and (scale > 0).all()):
            return f"{table} has a row scale that is not a positive number"
        sel = hot["tier"] == tier
        if sel.any() and int(arrs["node_row"][sel].max()) >= rows.shape[0]:
            return f"a node points past the {rows.shape[0]} rows of {table}"
        if rows.shape[0] and int(arrs[f"{table}_row_node"].max()) >= max(n, 1):
            return f"a row of {table} points past the {n} nodes"
    if not np.isin(hot["tier"], list(TIER_TABLE)).all():
        return "a node record has an unknown tier"
    content = arrs["content"]
    if content.dtype != np.uint8 or content.ndim != 1:
        return "the content heap is not bytes"
    if n and int(hot["content_ref"].max()) + 4 > max(content.shape[0], 4):
        return "a node's content lies past the content heap"
    off, tg, w = arrs["csr_offsets"], arrs["csr_targets"], arrs["csr_weights"]
    if off.dtype != np.uint64 or tg.dtype != np.uint32 or w.dtype != np.float32 or off.ndim != 1:
        return "the link arrays have the wrong types"
    if not 1 <= off.shape[0] <= n + 1:       # the CSR covers the nodes of its last compaction
        return "the link offsets do not match the node count"
    if off[0] != 0 or (np.diff(off.astype(np.int64)) < 0).any() or int(off[-1]) != tg.shape[0] or \
            w.shape != tg.shape:
        return "the link offsets are not a CSR of the link targets"
    if tg.shape[0] and int(tg.max()) >= n:
        return "a link points past the node records"
    delta = arrs.get("delta")
    if delta is not None and (delta.dtype != EDGE_DELTA_DTYPE or (delta.shape[0] and
                                                                  max(int(delta["src"].max()),
                                                                      int(delta["dst"].max())) >= n)):
        return "the pending links are not EdgeDelta records of known nodes"
    if arrs["counters"].shape != (3,):
        return "the counters are not (next_id, n_live, n_links)"
    return None
