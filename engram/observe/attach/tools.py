"""`engram list | inspect | top`: look at running engines from outside.

Every tool attaches read-only (segments mapped PROT_READ), checks each
segment's header (magic, format, layout hash, owner uid) and refuses a
mismatch with the reason, and never writes to what it reads.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from engram.errors import EngramError
from engram.layout import NODE_HOT_DTYPE, POOL_HEADER_DTYPE, schema
from engram.observe.attach import units
from engram.observe.metrics import definitions as d
from engram.observe.metrics.segment import MetricsSegment
from engram.store.graph import Graph
from engram.store.shm.names import EngineName, engines, pid_alive, resolve, segments_of, spaces_of  # noqa: F401
from engram.store.shm.segment import Segment
from engram.store.tables import SpaceStore
from engram.workers.board import TaskBoard

C = schema.CONSTANTS
KIND_NAMES = {v: k.removeprefix("TABLE_").lower() for k, v in C.items() if k.startswith("TABLE_")}
TIERS = {C["TIER_HOT"]: "hot: f32", C["TIER_WARM"]: "warm: f16"}
NODE_FLAGS = {v: k.removeprefix("NODE_").lower() for k, v in C.items() if k.startswith("NODE_")}
TAKEN = C["TASK_TAKEN"]
READY = C["TASK_READY"]


def _space_summary(engine: EngineName, space: str) -> dict:
    st = SpaceStore(engine, space, create=False)
    try:
        dr = st.dir[0]
        return {"memories": int(dr["n_live"]), "links": int(dr["n_links"]), "dim": int(dr["dim"])}
    finally:
        st.close(unlink=False)


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
            tasks = board(e)
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
        for sp, s in r["spaces"].items():
            if "error" in s:
                out.append(f"    {sp}: {s['error']}")
            else:
                out.append(f"    {sp}: {s['memories']:,} memories, {s['links']:,} links, dim {s['dim']}")
    return "\n".join(out)


# ----------------------------------------------------------------- inspect

def segment_headers(engine: EngineName) -> list:
    """Every segment's header, read-only; a segment that fails its checks says why."""
    rows = []
    for name in segments_of(engine):
        try:
            seg = Segment.attach(name)
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


def _read_only(name: str):
    try:
        return Segment.attach(name)
    except EngramError:
        return None


def pool_stats(engine: EngineName):
    seg = _read_only(engine.engine_object("pool"))
    if seg is None:
        return None
    h = seg.array(0, POOL_HEADER_DTYPE, 1)[0]
    acquired = int(h["acquired"])
    return {"capacity": int(h["capacity"]), "in_use": int(h["in_use"]), "high_water": int(h["high_water"]),
            "acquired": acquired, "allocations": int(h["fresh"]),
            "hit_rate": int(h["reused"]) / acquired if acquired else 0.0}


def board(engine: EngineName):
    """(header, slots) of the engine's task board, read-only; None without workers."""
    try:
        b = TaskBoard.attach(engine, writable=False)
    except EngramError:
        return None
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
           f"{'fallback':>9}"]
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
            + f"{t['engram_recall_fallback_total'].get(space, 0):>9,}")
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
