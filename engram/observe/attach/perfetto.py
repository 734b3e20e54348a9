"""Chrome / Perfetto trace-event JSON (``trace.perfetto.json``), written as events arrive.

- A track per process (pid) and thread (the writer's OS thread id), named by
  ``process_name`` / ``thread_name`` metadata events: "engram owner", "engram
  worker N"; no other metadata events (nothing without a real pid).
- Spans are complete "X" slices that start when the stage started, so on each
  track a recall contains its scan and spread and a spread its hops. Other events
  are thread-scoped instants ("i").
- When a worker ran a recall's stages, a flow ("s" on the owner's recall, "f" on
  the worker's hop, or scan and spread when nothing hopped) joins them; its id
  is the trace id and the hop.
- ``ts`` and ``dur`` are microseconds with three decimals (exact nanoseconds),
  counted from ``base_ns`` (CLOCK_MONOTONIC): the start of the engine's first
  ring. ``otherData`` gives that base as wall-clock ns, the engine and the
  events lost to full rings.
"""
from __future__ import annotations

import json

# a recall waits here (for its worker's stages) for this many drains, and stages for their recall
PAIR_DRAINS = 3


def _us(ns: int) -> float:
    return ns / 1e3          # the shortest repr of ns / 1000 is exact to the nanosecond below 2^53 / 1e3 us


class PerfettoWriter:
    def __init__(self, path, base_ns: int, wall_base_ns: int, engine: str):
        self._f = open(path, "w")  # noqa: SIM115 (held for the collector's life; close() completes it)
        self._f.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
        self.base, self.wall_base, self.engine = base_ns, wall_base_ns, engine
        self._first = True
        self._named: set = set()
        self._recalls: list = [{}]       # by drain generation: trace id -> (pid, tid, start ns)
        self._stages: list = [{}]        # trace id -> [(pid, tid, ns inside the slice, name)]
        self.flows = self.unjoined = 0

    def _put(self, ev: dict) -> None:
        self._f.write(("" if self._first else ",\n") + json.dumps(ev))
        self._first = False

    def _name(self, rec: dict) -> None:
        pid, tid = rec["pid"], rec["tid"]
        if pid not in self._named:
            self._named.add(pid)
            who = "owner" if rec["worker"] == 0 else f"worker {rec['worker'] - 1}"
            self._put({"name": "process_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": f"engram {who}"}})
            self._put({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": tid,
                       "args": {"sort_index": rec["worker"]}})
        if (pid, tid) not in self._named:
            self._named.add((pid, tid))
            name = "main" if tid == pid else f"thread {tid}"
            self._put({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})

    def add(self, rec: dict) -> None:
        self._name(rec)
        start = rec["mono_ns"] - self.base
        ev = {"name": rec["kind"], "cat": rec["space"], "pid": rec["pid"], "tid": rec["tid"], "ts": _us(start),
              "args": {k: rec[k] for k in ("trace_id", "node_a", "node_b", "value", "strength")}}
        if rec["span"]:
            ev.update(ph="X", dur=_us(rec["dur_ns"]))
        else:
            ev.update(ph="i", s="t")
        self._put(ev)
        self._join(rec, start)

    def _join(self, rec: dict, start: int) -> None:
        """Flows from a recall to the stages another process ran for it."""
        trace, kind = rec["trace_id"], rec["kind"]
        if not trace or kind not in ("recall", "hop", "scan", "spread"):
            return
        if kind == "recall":
            self._recalls[-1][trace] = (rec["pid"], rec["tid"], start)
            for gen in self._stages:
                for stage in gen.pop(trace, ()):
                    self._flow(trace, (rec["pid"], rec["tid"], start), stage)
            return
        if trace >> 40 == rec["pid"]:      # run by the process that took the id: nesting joins it
            return
        if kind == "spread" and rec["node_a"]:
            return                         # its hops carry the flows
        stage = (rec["pid"], rec["tid"], start + rec["dur_ns"] // 2, rec["node_a"] if kind == "hop" else kind)
        for gen in self._recalls:
            if trace in gen:
                self._flow(trace, gen[trace], stage)
                return
        self._stages[-1].setdefault(trace, []).append(stage)

    def _flow(self, trace: int, recall: tuple, stage: tuple) -> None:
        pid, tid, at = recall
        fid = f"{trace:x}.{stage[3]}"
        common = {"name": "recall", "cat": "flow", "id": fid}
        self._put({**common, "ph": "s", "pid": pid, "tid": tid, "ts": _us(at)})
        self._put({**common, "ph": "f", "bp": "e", "pid": stage[0], "tid": stage[1], "ts": _us(stage[2])})
        self.flows += 1

    def end_drain(self) -> None:
        """Age the pairing tables: what waited PAIR_DRAINS drains is let go (counted)."""
        self._recalls.append({})
        self._stages.append({})
        if len(self._recalls) > PAIR_DRAINS:
            self._recalls.pop(0)
            self.unjoined += sum(len(v) for v in self._stages.pop(0).values())

    def close(self, lost: int) -> None:
        if self._f is None:
            return
        self.unjoined += sum(len(v) for gen in self._stages for v in gen.values())
        other = {"engine": self.engine, "clock": "CLOCK_MONOTONIC", "base_monotonic_ns": self.base,
                 "base_wall_clock_ns": self.wall_base, "lost_events": lost, "flows": self.flows,
                 "unjoined_stages": self.unjoined}
        self._f.write('\n], "otherData": ' + json.dumps(other) + "}\n")
        self._f.close()
        self._f = None
