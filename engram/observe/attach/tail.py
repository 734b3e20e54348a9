"""`engram trace <engine>`: print a live engine's events as they are written,
read-only, from every process's ring (new rings are picked up as they appear)."""
from __future__ import annotations

import sys
import time

from engram.errors import InvalidInputError
from engram.observe.tracing import KIND_NAMES, KINDS, Cursor, Ring, ring_names
from engram.store.shm.names import EngineName, pid_alive


def format_event(e, pid: int, labels) -> str:
    kind = KIND_NAMES.get(int(e["kind"]), str(int(e["kind"])))
    sp = int(e["space"])
    space = labels[sp] if sp < len(labels) and labels[sp] else str(sp)
    return (f"{int(e['ts_ns']) / 1e9:17.6f} pid {pid:<7} w{int(e['worker']):<2} {kind:<15} {space:<14} "
            f"a={int(e['node_a'])} b={int(e['node_b'])} value={float(e['value']):.6g} "
            f"strength={float(e['strength']):.4g} trace={int(e['trace_id']):#x}")


def tail(engine: EngineName, kinds=None, space=None, min_strength=None, count=None, seconds=None,
         out=sys.stdout) -> int:
    if kinds:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise InvalidInputError(f"unknown event kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    want = {KINDS[k] for k in kinds} if kinds else None
    try:
        from engram.observe.metrics.segment import MetricsSegment
        labels = MetricsSegment.attach(engine).label_names()
    except Exception:
        labels = []
    cursors, shown = {}, 0
    if not ring_names(engine):
        out.write("this engine records no trace events (create it with trace=True)\n")
        return 1
    t_end = None if seconds is None else time.monotonic() + seconds
    while True:
        for name in ring_names(engine):
            if name not in cursors:
                try:
                    cursors[name] = Cursor(Ring.attach(name), from_start=False)
                except Exception:
                    continue
        for cur in cursors.values():
            pid = int(cur.ring.header["pid"][0])
            for e in cur.read():
                if want is not None and int(e["kind"]) not in want:
                    continue
                if space is not None and (int(e["space"]) >= len(labels) or labels[int(e["space"])] != space):
                    continue
                if min_strength is not None and float(e["strength"]) < min_strength:
                    continue
                out.write(format_event(e, pid, labels) + "\n")
                shown += 1
                if count is not None and shown >= count:
                    out.flush()
                    return 0
        out.flush()
        if (t_end is not None and time.monotonic() > t_end) or not pid_alive(engine.pid):
            return 0
        time.sleep(0.05)
