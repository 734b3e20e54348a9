"""`engram list | inspect | top`: look at running engines from outside.

Every tool attaches read-only (segments mapped PROT_READ), checks each
segment's header (every field of the segment header, then the header of what
the segment holds, against the segment's size) and refuses a segment that
fails with the reason, and never writes to what it reads. Only this user's
files are listed: another user's file under an engine's name is not looked at.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from engram.cognition import tiering
from engram.errors import EngramError
from engram.ingest.ring import Ring as IngestRing
from engram.layout import NODE_HOT_DTYPE, SPACE_DIRECTORY_DTYPE, schema
from engram.observe.attach import units
from engram.observe.metrics import definitions as d
from engram.observe.metrics.segment import MetricsSegment
from engram.observe.tracing.ring import Ring as TraceRing
from engram.recall.ann import describe
from engram.store import tablecheck
from engram.store.graph import Graph
from engram.store.shm.names import (  # noqa: F401
    SHM_DIR,
    EngineName,
    directory_of,
    engines,
    find,
    objects_of,
    parse_name,
    pid_alive,
    resolve,
    segments_of,
    spaces_of,
)
from engram.store.shm.segment import Segment
from engram.store.tables import SpaceStore
from engram.workers import pool
from engram.workers.board import TaskBoard
from engram.workers.stealing import HopBoard

C = schema.CONSTANTS
KIND_NAMES = {v: k.removeprefix("TABLE_").lower() for k, v in C.items() if k.startswith("TABLE_")}
TIERS = {C["TIER_HOT"]: "hot: f32", C["TIER_WARM"]: "warm: f16", C["TIER_COLD"]: "cold: int8 x scale"}
NODE_FLAGS = {v: k.removeprefix("NODE_").lower() for k, v in C.items() if k.startswith("NODE_")}
TAKEN = C["TASK_TAKEN"]
READY = C["TASK_READY"]


def _space_summary(engine: EngineName, space: str) -> dict:
    st = SpaceStore(engine, space, create=False)
    try:
        dr = st.dir[0]
        return {"memories": int(dr["n_live"]), "links": int(dr["n_links"]), "dim": int(dr["dim"]),
                "tiers": tiering.counts(st.hot()), "index": describe(st.dir, st.tier_counts())}
    finally:
        st.close(unlink=False)


def format_index(ix: dict) -> str:
    if not ix["generation"] and not ix["building"]:
        return "no index (exact scan)"
    out = f"index {ix['size']:,} vectors, tail {ix['tail'] or 0:,} rows" if ix["generation"] else "no index yet"
    if ix["generation"] and ix.get("breadth"):       # the owner's audit chose how to search it
        out += {"exact": ", exact scan (the audit's choice)",
                "sketch": ", sketch scan (the audit's choice)"}.get(ix["breadth"], f", breadth {ix['breadth']}")
    if ix["building"]:
        out += f", building {ix['built']:,} / {ix['building']:,} rows"
    return out


def _size(name: str):
    try:
        return os.stat(SHM_DIR + name).st_size
    except OSError:
        return None


def list_engines() -> list:
    rows = []
    for e in engines():
        alive = pid_alive(e.pid)
        row = {"engine": str(e), "pid": e.pid, "alive": alive, "spaces": {}}
        if alive:
            for sp in spaces_of(e):
                try:
                    row["spaces"][sp] = _space_summary(e, sp)
                except EngramError as err:
                    row["spaces"][sp] = {"error": str(err)}
            try:
                tasks = board(e)
            except EngramError as err:
                row["board_error"] = str(err)
                tasks = None
            if tasks is not None:
                row["workers"] = int(tasks[0]["workers"][0])
        rows.append(row)
    return rows


def format_list(rows) -> str:
    if not rows:
        return "no engines of this user in shared memory"
    out = []
    for r in rows:
        state = "running" if r["alive"] else "dead: `engram cleanup` (or the next Engine start) removes its segments"
        workers = f", {r['workers']} workers" if "workers" in r else ""
        out.append(f"{r['engine']}  pid {r['pid']}  {state}{workers}")
        if "board_error" in r:
            out.append(f"    task board: {r['board_error']}")
        for sp, s in r["spaces"].items():
            if "error" in s:
                out.append(f"    {sp}: {s['error']}")
            else:
                t = s["tiers"]
                out.append(f"    {sp}: {s['memories']:,} memories (hot {t['hot']:,}, warm {t['warm']:,}, cold "
                           f"{t['cold']:,}), {s['links']:,} links, dim {s['dim']}, {format_index(s['index'])}")
    return "\n".join(out)


# ----------------------------------------------------------------- inspect

OBJECT_KINDS = {"metrics": C["TABLE_METRICS"], "pool": C["TABLE_POOL"], "tasks": C["TABLE_TASKS"],
                "hops": C["TABLE_HOPS"]}
HOLDERS = {C["TABLE_METRICS"]: MetricsSegment, C["TABLE_TRACE"]: TraceRing, C["TABLE_TASKS"]: TaskBoard,
           C["TABLE_HOPS"]: HopBoard, C["TABLE_POOL"]: pool.views, C["TABLE_INGEST_RING"]: IngestRing}


def _expected_kind(said: dict):
    """The kind a segment must be, by its name (None: a name this engram does not make)."""
    if said.get("table") == "dir":
        return C["TABLE_DIRECTORY"]
    if "table" in said:
        return tablecheck.KIND.get(said["table"])
    what = said["object"]
    if what.startswith("trace.") and what[6:].isdigit():
        return C["TABLE_TRACE"]
    if what.startswith("ring") and what[4:].isdigit():
        return C["TABLE_INGEST_RING"]
    return OBJECT_KINDS.get(what)


def _checked(engine: EngineName, name: str, dims: dict) -> Segment:
    """Attach a segment read-only and check it as its reader would, by the kind its name
    says: AttachError (or the ingest ring's RingDamaged) if it does not hold up. ``dims``:
    the dimension of each space whose directory holds up."""
    said = parse_name(engine, "/" + os.path.basename(name))     # (a file-backed one's name is its path)
    seg = Segment.attach(name, kind=_expected_kind(said))
    kind = seg.h("kind")
    if kind == C["TABLE_DIRECTORY"]:
        tablecheck.directory(seg, said.get("space"))
    elif kind in tablecheck.TABLE_OF_KIND:
        tablecheck.table(seg, tablecheck.TABLE_OF_KIND[kind], said.get("generation", seg.h("generation")),
                         dims.get(said.get("space"), seg.h("dim")))
    elif kind in HOLDERS:
        HOLDERS[kind](seg)
    return seg


def _space_dims(engine: EngineName, cold: list | None = None) -> dict:
    """{space: dim} of the spaces whose directory holds up; ``cold`` gets the paths of their
    file-backed cold tables (engram/store/tables.py)."""
    dims = {}
    for space in spaces_of(engine):
        try:
            name = directory_of(engine, space)
            if name is None:
                continue
            seg = tablecheck.directory(Segment.attach(name, kind=C["TABLE_DIRECTORY"]), space)
        except EngramError:
            continue
        dims[space] = seg.h("dim")
        where = tablecheck.cold_dir_of(seg.array(0, SPACE_DIRECTORY_DTYPE, 1))
        if cold is not None and where and os.path.isdir(where):
            mine = f"{engine}.{space}.emb_cold."
            cold += [os.path.join(where, f) for f in sorted(os.listdir(where)) if f.startswith(mine)]
    return dims


#: the approximate index's files beside the segments (engram/recall/ann.py, sketch.py)
INDEX_FILES = {"ann": "ann index (usearch)", "sketch": "ann sketch (4-bit)"}


def segment_headers(engine: EngineName) -> list:
    """Every segment's header, read-only; a segment that fails its checks says why."""
    rows, cold = [], []
    dims = _space_dims(engine, cold)
    for name in segments_of(engine) + cold:
        said = parse_name(engine, "/" + os.path.basename(name))
        if said.get("table") in INDEX_FILES:      # not a segment: its size and generation
            rows.append({"name": name, "ok": True, "kind": INDEX_FILES[said["table"]],
                         "generation": said["generation"], "bytes": _size(name)})
            continue
        try:
            seg = _checked(engine, name, dims)
        except EngramError as e:
            rows.append({"name": name, "ok": False, "error": str(e)})
            continue
        rows.append({"name": name, "ok": True, "kind": KIND_NAMES.get(seg.h("kind"), seg.h("kind")),
                     "generation": seg.h("generation"), "capacity": seg.h("capacity"), "count": seg.h("count"),
                     "owner_pid": seg.h("owner_pid"), "bytes": seg.size, "created_ns": seg.h("created_ns"),
                     "layout_hash": f"0x{seg.h('layout_hash'):016x}"})
    return rows


def node_record(engine: EngineName, space: str, node: int) -> dict:
    """One node's hot record (forgotten ones too: inspect shows what is there), content, links."""
    st = SpaceStore(engine, space, create=False)
    try:
        if not 0 <= node < st.n_nodes:
            raise EngramError(f"node {node} is not in space {space!r} (ids 0..{st.n_nodes - 1})")
        rec = st.hot()[node]
        out = {f: (rec[f].item() if np.ndim(rec[f]) == 0 else rec[f].tolist()) for f in NODE_HOT_DTYPE.names
               if not f.startswith("_")}
        out["content"] = st.content_at(int(rec["content_ref"]))
        ids, w = Graph(st).neighbors(node)
        out["edges"] = list(zip(ids.tolist(), [round(float(x), 6) for x in w]))
        return out
    finally:
        st.close(unlink=False)


def pool_stats(engine: EngineName):
    """The record pool's counters; None if the engine has made none (AttachError if it is damaged)."""
    listed = objects_of(engine)
    if "pool" not in listed:
        return None
    h = pool.views(Segment.attach(find(engine, "pool", objects=listed), kind=pool.KIND))[0][0]
    acquired = int(h["acquired"])
    return {"capacity": int(h["capacity"]), "in_use": int(h["in_use"]), "high_water": int(h["high_water"]),
            "acquired": acquired, "allocations": int(h["fresh"]),
            "hit_rate": int(h["reused"]) / acquired if acquired else 0.0}


def board(engine: EngineName):
    """(header, slots) of the engine's task board, read-only; None without workers (AttachError
    if it is damaged)."""
    if "tasks" not in objects_of(engine):
        return None
    b = TaskBoard.attach(engine, writable=False)
    return b.header, b.slots


def _field(name: str, value) -> str:
    """A node record's field as people read it: times as dates and ages, counts with separators."""
    if name.endswith("_ns"):
        return units.when_ns(value)
    if name == "primed_s":
        return units.when_ns(value * 1_000_000_000)
    if name == "tier":
        return f"{value} ({TIERS.get(value, '?')})"
    if name == "flags":
        return f"{value} ({', '.join(f for bit, f in NODE_FLAGS.items() if value & bit) or 'none'})"
    if isinstance(value, float):
        return f"{value:.6g}"
    return units.count(value)


def format_inspect(engine: EngineName, space: str | None, nodes, show_pool: bool) -> str:
    out = [f"engine {engine}  owner pid {engine.pid}  "
           f"{'running' if pid_alive(engine.pid) else 'dead (engram cleanup removes it)'}"]
    bad = 0
    for r in segment_headers(engine):
        if not r["ok"]:
            bad += 1
            out.append(f"  {r['name']}: REFUSED: {r['error']}")
        else:
            out.append(f"  {r['name']}: {r['kind']} g{r['generation']} count {r['count']:,} / capacity "
                       f"{r['capacity']:,}, {units.size(r['bytes'])}, created {units.when_ns(r['created_ns'])}, "
                       f"layout {r['layout_hash']} ok")
    for n in nodes or ():
        rec = node_record(engine, space or "default", n)
        out.append(f"node {n:,} in {space or 'default'}:")
        for k, v in rec.items():
            out.append(f"  {k:<15} {_field(k, v)}")
    if show_pool:
        p = pool_stats(engine)
        out.append("pool: not created (no worker has run yet)" if p is None else
                   "pool: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {units.count(v)}"
                                        for k, v in p.items()))
    if bad:
        out.append(f"{bad} segment(s) refused: attach with the engram version that created the engine")
    return "\n".join(out)


# ----------------------------------------------------------------- top

def _quantile(buckets: np.ndarray, q: float) -> float:
    """Upper bound (seconds) of the bucket holding quantile q of a bucket-count delta."""
    total = int(buckets.sum())
    if total == 0:
        return float("nan")
    bounds = d.bucket_bounds_seconds() + [float("inf")]
    return bounds[int(np.searchsorted(np.cumsum(buckets), q * total))]


def snapshot(engine: EngineName, seg: MetricsSegment) -> dict:
    t = seg.totals()
    snap = {"t": time.monotonic(), "totals": t, "pool": pool_stats(engine), "workers": []}
    b = board(engine)
    if b is not None:
        h, slots = b
        snap["queue"] = int((slots["state"] == READY).sum())
        snap["running"] = int((slots["state"] == TAKEN).sum())
        for w in range(int(h["workers"][0])):
            busy = slots[(slots["state"] == TAKEN) & (slots["worker"] == w)]
            snap["workers"].append({"id": w, "busy": int(busy.shape[0]),
                                    "pid": int(busy["worker_pid"][0]) if busy.shape[0] else None})
        snap["completed"] = int(h["completed"][0])
        snap["restarts"] = int(h["restarts"][0])
    return snap


def format_top(engine: EngineName, prev: dict, cur: dict) -> str:
    dt = max(cur["t"] - prev["t"], 1e-9)
    out = [f"engram top  {engine}  ({'running' if pid_alive(engine.pid) else 'EXITED'})  {time.strftime('%H:%M:%S')}",
           f"{'space':<16}{'memories':>10}{'recalls/s':>11}{'P50 ms':>9}{'P95 ms':>9}{'P99 ms':>9}{'partial':>9}"
           f"{'fallback':>9}{'index':>11}{'tail':>9}"]
    t, p = cur["totals"], prev["totals"]
    for space, mem in t["engram_memories"].items():
        rec = t["engram_recalls_total"].get(space, 0) - p["engram_recalls_total"].get(space, 0)
        b1 = t["engram_recall_latency_seconds"][space][0]
        b0 = p["engram_recall_latency_seconds"].get(space, (np.zeros_like(b1),))[0]
        db = b1 - b0
        if space == d.OTHER and mem == 0 and t["engram_recalls_total"].get(space, 0) == 0:
            continue
        q = [_quantile(db, x) * 1e3 for x in (0.5, 0.95, 0.99)]
        out.append(f"{space:<16}{mem:>10,}{rec / dt:>11,.0f}" + "".join(
            f"{'-':>9}" if np.isnan(v) else f"{'<=' + format(v, '.3g'):>9}" for v in q)
            + f"{t['engram_recall_partial_total'].get(space, 0):>9,}"
            + f"{t['engram_recall_fallback_total'].get(space, 0):>9,}"
            + f"{t['engram_index_vectors'].get(space, 0):>11,}{t['engram_index_tail_rows'].get(space, 0):>9,}")
    pool = cur["pool"]
    out.append("pool      " + ("not created" if pool is None else
                               f"{pool['in_use']:,} / {pool['capacity']:,} in use, high water {pool['high_water']:,}, "
                               f"hit rate {pool['hit_rate']:.3f}"))
    if "queue" in cur:
        out.append(f"queue     {cur['queue']} waiting, {cur['running']} running, {cur['completed']:,} done, "
                   f"{cur['restarts']} worker restarts")
        out.append("workers   " + "  ".join(f"#{w['id']} {'busy' if w['busy'] else 'idle'}" for w in cur["workers"]))
    else:
        out.append("workers   not started (a lone caller recalls in its own thread)")
    return "\n".join(out)


def run_top(engine: EngineName, interval: float, iterations: int | None, out=sys.stdout) -> int:
    seg = MetricsSegment.attach(engine)
    prev = snapshot(engine, seg)
    n = 0
    tty = out.isatty()
    while iterations is None or n < iterations:
        time.sleep(interval)
        cur = snapshot(engine, seg)
        text = format_top(engine, prev, cur)
        out.write(("\x1b[H\x1b[2J" if tty else "") + text + "\n" + ("" if tty else "\n"))
        out.flush()
        prev = cur
        n += 1
        if not pid_alive(engine.pid):
            out.write("the engine exited\n")
            return 1
    return 0
