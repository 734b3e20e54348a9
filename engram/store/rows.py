"""How a vector is stored in each tier's rows, and read back; rows written, read and moved.

hot: float32 as given; warm: float16; cold: int8 with a scale per row (the row's
largest magnitude maps to 127), a quarter of f32's bytes. Cosine does not see the scale
(it cancels), so the scan reads a cold row as it is, with the norm of the stored row;
reading the vector back multiplies by the scale. Encoding is deterministic, so replaying
the log re-creates the same rows.
"""
from __future__ import annotations

import time

import numpy as np

from engram.errors import SegmentError
from engram.layout import schema
from engram.validate import TIER_CODES, rowdot

C = schema.CONSTANTS
TIER_HOT, TIER_WARM, TIER_COLD = C["TIER_HOT"], C["TIER_WARM"], C["TIER_COLD"]
TIER_NAMES = TIER_CODES          # name -> code: the one map, which validate checks names against
TIER_LABEL = {v: k for k, v in TIER_NAMES.items()}
TIER_TABLE = {TIER_HOT: "emb_hot", TIER_WARM: "emb_warm", TIER_COLD: "emb_cold"}
TIER_DTYPE = {TIER_HOT: np.dtype(np.float32), TIER_WARM: np.dtype(np.float16), TIER_COLD: np.dtype(np.int8)}
#: how the log carries a tier's vectors: as stored, but the cold tier's as the f32 they are
#: encoded from (encoding is deterministic, so replay stores the same rows and scales)
LOG_DTYPE = {**TIER_DTYPE, TIER_COLD: np.dtype(np.float32)}
INT8_MAX = 127


def encode(vectors: np.ndarray, tier: int):
    """(stored rows in the tier's dtype, per-row scale f32 or None) of f32/f16 ``vectors``."""
    if tier != TIER_COLD:
        return np.ascontiguousarray(vectors, dtype=TIER_DTYPE[tier]), None
    v = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(v).max(axis=1) if v.shape[0] else np.zeros(0, np.float32)
    scale = np.where(peak > 0, peak / INT8_MAX, 1.0).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint(v / scale[:, None])
    return np.clip(q, -INT8_MAX, INT8_MAX).astype(np.int8), scale


def decode(stored: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """The f32 vectors of stored rows (``scale``: the cold tier's, else None)."""
    v = stored.astype(np.float32)
    return v if scale is None else v * scale[:, None]


def norms(stored: np.ndarray) -> np.ndarray:
    """L2 norms of stored rows, in float32 as the scan kernels compute them when none are
    given: a norm out of their safe range (inf past float32, 0 below it) takes their exact
    path."""
    f32 = stored if stored.dtype == np.float32 else stored.astype(np.float32)
    with np.errstate(over="ignore", under="ignore"):
        return np.sqrt(rowdot(f32, f32))


# ---- a space's tier tables (a SpaceStore's): rows written, read and moved --------------------
def put(store, tier: int, vectors: np.ndarray, ids: np.ndarray) -> int:
    """Store ``vectors`` of memories ``ids`` as new live rows at the end of a tier's table,
    encoded for it, and publish them; returns the first row (the owner only)."""
    table = TIER_TABLE[tier]
    n = vectors.shape[0]
    store.reserve(table, n)
    row0 = store.count(table)
    tv = store.views[table]
    stored, scale = encode(vectors, tier)
    rows = tv["rows"]
    if rows.shape[1] == store.dim:      # rows packed end to end: one write through the file
        store.segs[table].write_at(store.offsets[table]["rows"] + row0 * rows.strides[0], stored)
    else:
        rows[row0:row0 + n, :store.dim] = stored
    tv["row_norm"][row0:row0 + n] = norms(stored)
    if scale is not None:
        tv["row_scale"][row0:row0 + n] = scale
    tv["row_node"][row0:row0 + n] = ids
    tv["row_live"][row0:row0 + n] = 1
    store.publish(table, row0 + n)
    store.pregrow(table)
    return row0


def move(store, ids: np.ndarray, tier: int, vectors: np.ndarray) -> None:
    """Give live memories new rows in ``tier`` holding ``vectors`` (the owner only): the old
    rows leave the scan first, so no reader sees a memory twice, then the new rows are
    published, then each record points at its new row under the directory's change lock."""
    rec = store.hot()
    at = store.views["nodes"]["node_row"][ids]
    for old_tier, table in TIER_TABLE.items():
        store.views[table]["row_live"][at[rec["tier"][ids] == old_tier]] = 0
        store.changed(table)
    row0 = put(store, tier, vectors, ids)
    store.begin_update()      # a record's tier and row change together (read())
    store.views["nodes"]["node_row"][ids] = np.arange(row0, row0 + ids.shape[0], dtype=np.uint32)
    rec["tier"][ids] = tier
    store.end_update()
    store.bump()


def settled(view: dict, at: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mask of memories ``ids`` whose record points at a row ``at`` of a tier table (its
    ``view``) that is theirs: while a memory moves between tiers, its record and its row
    disagree for a moment (move())."""
    ok = at < view["row_node"].shape[0]
    ok[ok] = view["row_node"][at[ok]] == ids[ok]
    return ok


def read(store, ids: np.ndarray) -> np.ndarray:
    """The f32 vectors of published memories (a cold one's as its int8 row times its scale).
    A reader may meet a memory moving between tiers: its record and its row then disagree
    (row_node), and it reads again once the move is published."""
    for attempt in range(200):
        if attempt:
            time.sleep(1e-4)      # lets the mover (another thread or process) finish
        rec = store.hot()[ids]
        at = store.views["nodes"]["node_row"][ids]
        out = np.empty((ids.shape[0], store.dim), np.float32)
        agree = True
        for tier, table in TIER_TABLE.items():
            sel = rec["tier"] == tier
            if not sel.any():
                continue
            v, r = store.views[table], at[sel]
            agree = bool(settled(v, r, ids[sel]).all())
            if not agree:
                break
            out[sel] = decode(v["rows"][r, :store.dim], v["row_scale"][r] if tier == TIER_COLD else None)
        if agree:
            return out
    raise SegmentError(f"space {store.space!r}: memories kept moving between tiers while read")
