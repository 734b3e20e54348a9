"""Where each table of a space lies in its segment, and what a reader checks before it
makes a view of a space's segments.

Segment.attach has checked the generic header (engram/store/shm/segment.py). Here the
header is checked against what the table needs: the generation and dimension the space
directory names, the row stride, the capacity against the segment's size, and the CSR's
own header (its counts, and that every region it points at lies inside the segment, and
that its offsets run from 0 up to its edge count). Each failure is an AttachError that
names the segment and the field. The owner trusts the segments it made and checks nothing.
"""
from __future__ import annotations

import os

import numpy as np

from engram.config import MAX_DIM
from engram.layout import CSR_HEADER_DTYPE, EDGE_DELTA_DTYPE, NODE_HOT_DTYPE, SPACE_DIRECTORY_DTYPE, schema
from engram.store.rows import TIER_DTYPE, TIER_TABLE
from engram.store.shm.segment import Segment, align_up

C = schema.CONSTANTS
KIND = {"nodes": C["TABLE_NODES"], "emb_hot": C["TABLE_EMB_HOT"], "emb_warm": C["TABLE_EMB_WARM"],
        "content": C["TABLE_CONTENT"], "csr": C["TABLE_CSR"], "delta": C["TABLE_DELTA"],
        "emb_cold": C["TABLE_EMB_COLD"]}
#: the element type of each embedding table's rows (each tier's, engram/store/rows.py)
ROW_DTYPE = {table: TIER_DTYPE[tier] for tier, table in TIER_TABLE.items()}
TABLE_OF_KIND = {v: k for k, v in KIND.items()}


def row_bytes_for(table: str, dim: int) -> int:
    return align_up(dim * ROW_DTYPE[table].itemsize)


def regions(table: str, cap: int, dim: int) -> tuple:
    """(region name, byte offset, dtype, count, shape) of a growable table, and its data size."""
    out, off = [], 0

    def add(name, dtype, count, shape=None):
        nonlocal off
        dtype = np.dtype(dtype)
        out.append((name, off, dtype, count, shape))
        off = align_up(off + dtype.itemsize * count)

    if table == "nodes":
        add("hot", NODE_HOT_DTYPE, cap)
        add("node_row", np.uint32, cap)
    elif table in ROW_DTYPE:
        rb = row_bytes_for(table, dim)
        dt = ROW_DTYPE[table]
        add("rows", dt, cap * (rb // dt.itemsize), (cap, rb // dt.itemsize))
        add("row_node", np.uint32, cap)
        add("row_live", np.uint8, cap)
        add("row_norm", np.float32, cap)     # L2 norms, so cosine scans read only the rows
        if table == "emb_cold":
            add("row_scale", np.float32, cap)    # a stored row times its scale is the vector
    elif table == "content":
        add("heap", np.uint8, cap)
    elif table == "delta":
        add("log", EDGE_DELTA_DTYPE, cap)
    else:
        raise ValueError(table)
    return tuple(out), off


def row_parts(table: str) -> dict:
    """{name: dtype} of the per-row arrays an embedding table keeps beside its rows."""
    return {name: dt for name, _, dt, _, _ in regions(table, 1, 1)[0] if name != "rows"}


def cold_dir_of(directory: np.ndarray) -> str:
    """The cold tier's directory a space directory record names ("": in /dev/shm)."""
    return os.fsdecode(bytes(directory["cold_dir"][0]).rstrip(b"\0"))


def directory(seg: Segment, space: str | None) -> Segment:
    """A space's directory segment, checked (``space``: the name it must hold, if known)."""
    if seg.h("capacity") != 1:
        raise seg.refuse("capacity", f"is {seg.h('capacity'):,}; a space directory holds one record")
    if seg.h("count") != 1:
        raise seg.refuse("count", "is 0: the owner is still making this space; try again")
    d = seg.array(0, SPACE_DIRECTORY_DTYPE, 1, field="capacity")[0]
    held = bytes(d["name"]).rstrip(b"\0").decode(errors="replace")
    if space is not None and held != space:
        raise seg.refuse("name", f"is {held!r}, but this is the directory of space {space!r}")
    dim = int(d["dim"])
    if not 1 <= dim <= MAX_DIM:
        raise seg.refuse("dim", f"(in the directory) is {dim:,}, not in [1, {MAX_DIM:,}]")
    if seg.h("dim") != dim:
        raise seg.refuse("dim", f"(in the header) is {seg.h('dim'):,}, the directory record says {dim:,}")
    if int(d["n_tables"]) != len(schema.TABLES):
        raise seg.refuse("n_tables", f"is {int(d['n_tables']):,}, a space has {len(schema.TABLES)} tables")
    return seg


def table(seg: Segment, name: str, generation: int, dim: int) -> Segment:
    """A table segment, checked against the generation and dim the directory names."""
    if seg.h("generation") != generation:
        raise seg.refuse("generation", f"is {seg.h('generation'):,}, the space directory names {generation:,}")
    if seg.h("dim") != dim:
        raise seg.refuse("dim", f"is {seg.h('dim'):,}, the space's dimension is {dim:,}")
    stride = row_bytes_for(name, dim) if name.startswith("emb") else 0
    if seg.h("row_bytes") != stride:
        raise seg.refuse("row_bytes", f"is {seg.h('row_bytes'):,}, one {name} row of dim {dim:,} takes {stride:,}")
    if name == "csr":
        _csr(seg)
        return seg
    need = regions(name, seg.h("capacity"), dim)[1]
    if need > seg.data.shape[0]:
        raise seg.refuse("capacity", f"{seg.h('capacity'):,} {name} rows take {need:,} bytes, the segment holds "
                         f"{seg.data.shape[0]:,}")
    return seg


def _csr(seg: Segment) -> None:
    h = seg.array(0, CSR_HEADER_DTYPE, 1, field="csr header")[0]
    n, m = int(h["n_nodes"]), int(h["n_edges"])
    if m != seg.h("capacity"):
        raise seg.refuse("n_edges", f"is {m:,}, the segment header's capacity is {seg.h('capacity'):,}")
    if seg.h("count") != m:
        raise seg.refuse("count", f"is {seg.h('count'):,}, the CSR holds n_edges {m:,}")
    offsets = seg.array(int(h["offsets_at"]), np.uint64, n + 1, field="offsets_at / n_nodes")
    for at, per in (("targets_at", 1), ("weights_at", 1), ("fan_at", 3)):
        seg.array(int(h[at]), np.float32, per * m, field=f"{at} / n_edges")
    if int(offsets[0]) != 0 or int(offsets[-1]) != m or (n and bool(np.any(offsets[1:] < offsets[:-1]))):
        raise seg.refuse("offsets", f"do not run from 0 up to n_edges {m:,} (first {int(offsets[0]):,}, last "
                         f"{int(offsets[-1]):,})")
