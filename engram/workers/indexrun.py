"""One run of the approximate index's builder, in a process of its own (engram/workers/indexer.py
starts it): add a space's rows to its usearch index and save it under a new name.

    python -m engram.workers.indexrun ENGINE SPACE --out PATH --to HOT WARM
                                      [--prev PATH --from HOT WARM] [--threads N] [--sketch PATH]
                                      [--sketch-max-bytes N]

It attaches the space read-only, loads the previous generation's file (a copy: a viewed
index is immutable) or starts an empty index, adds the live rows of each tier between
``--from`` and ``--to``, saves the result at ``--out``, writes the quantised sketch of
every live row it covers at ``--sketch`` when that is at most ``--sketch-max-bytes``
(default sketch.MAX_BYTES; engram/recall/sketch.py), and exits; stdout carries progress and the result as JSON
lines ({"done", "total"}, then {"size", "sketch", "seconds"} or {"error"}; "sketch" is
the sketch's rows, 0 when none was written).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from engram.recall import sketch
from engram.store.shm.names import EngineName
from engram.store.tables import TIER_TABLE, SpaceStore
from engram.threads import name_current

CHUNK = 4096                  # rows per add call (progress is reported between them)
# usearch settings: cosine over int8 vectors (a quarter of f32's bytes; the candidates are
# re-scored exactly from the stored rows, which makes up for the quantisation: recall@10
# 0.996 at 100K x 384 clustered, docs/scale.md), HNSW M 16, efConstruction 64
DTYPE, CONNECTIVITY, EXPANSION_ADD = "i8", 16, 64


def build(store: SpaceStore, out: str, rows_from: tuple, rows_to: tuple, prev: str | None, threads: int,
          progress=lambda done, total: None) -> int:
    """Add the live rows [rows_from, rows_to) of each tier to ``prev``'s index (or a new one),
    save it at ``out``; returns the vectors in it."""
    from usearch.index import Index

    index = Index.restore(prev, view=False) if prev else Index(
        ndim=store.dim, metric="cos", dtype=DTYPE, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD)
    total, done = sum(b - a for a, b in zip(rows_from, rows_to)), 0
    for tier in TIER_TABLE:
        rows, row_node, row_live, _ = store.tier_rows(tier)
        for a in range(rows_from[tier], rows_to[tier], CHUNK):
            b = min(a + CHUNK, rows_to[tier])
            live = row_live[a:b].astype(bool)
            keys = row_node[a:b][live].astype(np.uint64)
            if keys.shape[0]:
                again = keys[index.contains(keys)] if len(index) else keys[:0]
                if again.shape[0]:     # a reconsolidated memory's new row replaces its old vector
                    index.remove(again)
                index.add(keys, np.ascontiguousarray(rows[a:b][live], dtype=np.float32), threads=threads)
            done += b - a
            progress(done, total)
    index.save(out)
    return len(index)


def write_sketch(store: SpaceStore, path: str, rows_to: tuple, limit: int | None = None) -> int:
    """The sketch of the live rows below ``rows_to`` in each tier, at ``path``: its rows, or 0
    (nothing written) when it would be larger than ``limit`` bytes (None: sketch.MAX_BYTES)."""
    tiers = []
    for tier in TIER_TABLE:
        rows, row_node, row_live, _ = store.tier_rows(tier)
        n = rows_to[tier]                 # (the tables may hold more by now: rows published since)
        live = row_live[:n].astype(bool)                   # a copy: the owner may forget meanwhile
        tiers.append((rows[:n], row_node[:n], live))
    count = sum(int(np.count_nonzero(live)) for _, _, live in tiers)
    if not sketch.fits(count, store.dim, limit):
        return 0
    step = sketch.CHUNK
    sketch.write(path, store.dim, ((row_node[a:a + step][live[a:a + step]], rows[a:a + step][live[a:a + step]])
                                   for rows, row_node, live in tiers for a in range(0, live.shape[0], step)), count)
    return count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engram.workers.indexer",
                                 description="build or extend one space's approximate index (run by the owner)")
    ap.add_argument("engine")
    ap.add_argument("space")
    ap.add_argument("--out", required=True)
    ap.add_argument("--to", type=int, nargs=len(TIER_TABLE), required=True)
    ap.add_argument("--from", dest="rows_from", type=int, nargs=len(TIER_TABLE), default=[0] * len(TIER_TABLE))
    ap.add_argument("--prev")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sketch")
    ap.add_argument("--sketch-max-bytes", type=int, default=None)
    args = ap.parse_args(argv)
    os.nice(10)        # background work: recall and ingest come first
    name_current("engram-indexrun")

    def say(**kw):
        print(json.dumps(kw), flush=True)

    store = SpaceStore(EngineName.parse(args.engine), args.space, create=False)
    counts = store.tier_counts()
    if any(b > c or a > b or a < 0 for a, b, c in zip(args.rows_from, args.to, counts)):
        say(error=f"rows {args.rows_from}..{args.to} are not within the tables' {counts}")
        return 2
    t0 = time.perf_counter()
    size = build(store, args.out, tuple(args.rows_from), tuple(args.to), args.prev, args.threads,
                 lambda done, total: say(done=done, total=total))
    sketched = write_sketch(store, args.sketch, tuple(args.to), args.sketch_max_bytes) if args.sketch else 0
    say(size=size, sketch=sketched, seconds=time.perf_counter() - t0)
    return 0



if __name__ == "__main__":
    sys.exit(main())
