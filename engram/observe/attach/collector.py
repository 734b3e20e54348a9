"""The trace collector: drains every process's ring of an engine and exports the events,
converting CLOCK_MONOTONIC timestamps to wall time once, at export.

    python -m engram.observe.attach.collector <engine> <out dir> [--formats jsonl,perfetto]
                                              [--otlp URL] [--loki URL] [--loki-push-bytes N]
                                              [--export-policy JSON]

(``engram trace collect ENGINE --out DIR`` runs the same in the foreground.)

Outputs (docs/observability.md says exactly what each consumer receives):
- ``trace.jsonl``: one JSON object per event.
- ``trace.perfetto.json``: Chrome/Perfetto trace-event JSON (engram/observe/attach/perfetto.py).
- OTLP/HTTP spans (engram/observe/attach/otlp.py) and Loki pushes (engram/observe/attach/loki.py),
  both through engram/observe/attach/delivery.py: bounded, retried, every drop counted.
- ``summary.json`` and a last stdout line: events collected, lost in full rings, and
  per exporter delivered / dropped / retries; drops also go to the engine's metric
  ``engram_trace_dropped_total{sink=ring|otlp|loki}``.

SIGTERM or SIGINT stops it after a last full drain of every ring, so no event
written before shutdown is lost (a full ring still drops its oldest events: the
collector counts those and says so).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import signal
import sys
import threading
import time
from pathlib import Path

from engram.errors import EngramError
from engram.observe.attach.loki import LokiSink
from engram.observe.attach.otlp import OtlpSink
from engram.observe.attach.perfetto import PerfettoWriter
from engram.observe.tracing.config import FORMATS, KIND_NAMES, SPANS, ExportPolicy
from engram.observe.tracing.ring import Cursor, Ring, ring_name, ring_names
from engram.store.shm.names import EngineName, pid_alive
from engram.threads import name_current

POLL_S = 0.05


def _drop_counters(engine: EngineName) -> dict:
    """The engine's engram_trace_dropped_total recorders, by sink (no-ops without metrics)."""
    from engram.observe.metrics.recorder import NOOP, recorder
    from engram.observe.metrics.segment import ROLE_OTHER, MetricsSegment
    try:
        seg = MetricsSegment.attach(engine, writable=True)
        return recorder(seg, seg.claim(ROLE_OTHER), "").trace_dropped_total
    except EngramError:
        return {"ring": NOOP, "otlp": NOOP, "loki": NOOP}


class Collector:
    def __init__(self, engine: str, out_dir, formats=FORMATS, loki_url: str | None = None,
                 otlp_url: str | None = None, policy: ExportPolicy | None = None):
        self.engine = EngineName.parse(str(engine))
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.formats = tuple(formats)
        policy = (policy or ExportPolicy()).check()
        self.cursors: dict = {}
        # CLOCK_MONOTONIC -> wall clock, measured once (both clocks of this host)
        self.offset_ns = time.time_ns() - time.monotonic_ns()
        self.events = 0
        self._labels = None
        self._dropped = _drop_counters(self.engine)
        self._lost_counted = 0
        # held open for the collector's lifetime; close() completes and closes them
        self._jsonl = open(self.out / "trace.jsonl", "w") if "jsonl" in self.formats else None  # noqa: SIM115
        base = self._base_ns()
        self._perfetto = (PerfettoWriter(self.out / "trace.perfetto.json", base, base + self.offset_ns,
                                         str(self.engine)) if "perfetto" in self.formats else None)
        self.sinks = {}
        if otlp_url:
            self.sinks["otlp"] = OtlpSink(otlp_url, str(self.engine), policy, self._dropped["otlp"].inc)
        if loki_url:
            self.sinks["loki"] = LokiSink(loki_url, str(self.engine), policy, self._dropped["loki"].inc)
        self.stop = threading.Event()
        self._signalled = False

    def stop_on_signal(self, *_) -> None:
        """A signal handler's stop: a plain flag the run loop reads within POLL_S. Setting
        the Event here could deadlock: the handler runs in the main thread, which may hold
        the Event's lock inside its own wait() at that moment (a collector hung on SIGTERM)."""
        self._signalled = True

    def _base_ns(self) -> int:
        """Where the Perfetto clock starts (CLOCK_MONOTONIC ns): when the owner's ring was
        made (every event is later), or now if it has none yet; whole microseconds."""
        now = time.monotonic_ns()
        try:
            made = Ring.attach(ring_name(self.engine, self.engine.pid)).seg.h("created_ns") - self.offset_ns
        except EngramError:
            made = now
        return min(made, now) // 1000 * 1000

    def _space(self, idx: int) -> str:
        if self._labels is None:
            try:
                from engram.observe.metrics.segment import MetricsSegment
                self._labels = MetricsSegment.attach(self.engine).label_names()
            except Exception:
                self._labels = []
        return self._labels[idx] if idx < len(self._labels) and self._labels[idx] else str(idx)

    def discover(self) -> None:
        for name in ring_names(self.engine):
            if name not in self.cursors:
                try:
                    self.cursors[name] = Cursor(Ring.attach(name))
                except Exception:
                    continue

    def drain(self) -> int:
        n = 0
        for cur in self.cursors.values():
            while True:
                ev = cur.read()
                if ev.size == 0:
                    break
                self._write(cur.ring, ev)
                n += ev.size
        for sink in self.sinks.values():
            sink.flush()
        if self._perfetto:
            self._perfetto.end_drain()
        lost = self.lost
        if lost > self._lost_counted:
            self._dropped["ring"].inc(lost - self._lost_counted)
            self._lost_counted = lost
        self.events += n
        return n

    def _write(self, ring, ev) -> None:
        pid = int(ring.header["pid"][0])
        worker = int(ring.header["worker"][0])
        process = "owner" if worker == 0 else f"worker-{worker - 1}"
        for e in ev.tolist():    # (ts_ns, seq, trace_id, node_a, node_b, value, strength, kind, worker, space, ...)
            ts, seq, trace, a, b, value, strength, kind_id, _, space, _, tid = e
            kind = KIND_NAMES.get(kind_id, str(kind_id))
            span = kind in SPANS
            wall = ts + self.offset_ns
            rec = {"time": dt.datetime.fromtimestamp(wall / 1e9, dt.timezone.utc).isoformat(timespec="microseconds"),
                   "ts_ns": wall, "dur_ns": int(max(value, 0.0)) if span else 0, "kind": kind, "pid": pid,
                   "tid": tid, "worker": worker, "process": process, "space": self._space(space), "trace_id": trace,
                   "node_a": a, "node_b": b, "value": value, "strength": strength}
            if self._jsonl:
                self._jsonl.write(json.dumps(rec) + "\n")
            rec["mono_ns"], rec["seq"], rec["span"] = ts, seq, span
            for sink in self.sinks.values():
                sink.add(rec)
            if self._perfetto:
                self._perfetto.add(rec)

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.cursors.values())

    def run(self) -> int:
        """Drain until stop is set (or the owner is gone), then a last full drain. The files
        are closed (the Perfetto JSON completed) even if a drain fails, so what was written
        stays readable."""
        try:
            while not (self.stop.is_set() or self._signalled):
                self.discover()
                self.drain()
                if not pid_alive(self.engine.pid):
                    break
                self.stop.wait(POLL_S)
            self.discover()
            self.drain()
        finally:
            self.close()
        return self.events

    def summary(self) -> dict:
        return {"engine": str(self.engine), "events": self.events, "lost_in_rings": self.lost,
                "sinks": {name: sink.stats() for name, sink in self.sinks.items()}}

    def summary_line(self) -> str:
        parts = [f"collected {self.events} events, {self.lost} lost to full rings"]
        parts += [f"{name}: {s['delivered']} delivered, {s['dropped']} dropped, {s['retries']} retries"
                  for name, s in self.summary()["sinks"].items()]
        return "; ".join(parts)

    def close(self) -> None:
        for sink in self.sinks.values():    # every sink's close deadline starts now: one in all
            sink.flush()
            sink.delivery.closing()
        for sink in self.sinks.values():
            sink.close()
        if self._jsonl:
            self._jsonl.close()
            self._jsonl = None
        if self._perfetto:
            self._perfetto.close(self.lost)
        (self.out / "summary.json").write_text(json.dumps(self.summary(), indent=1) + "\n")


def main(argv=None) -> int:
    name_current("engram-collector")
    ap = argparse.ArgumentParser(prog="python -m engram.observe.attach.collector", description=__doc__.splitlines()[0])
    ap.add_argument("engine")
    ap.add_argument("out")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--loki", default=None, help="also push to Loki at this base URL (http://host:3100)")
    ap.add_argument("--otlp", default=None, help="also export OTLP/HTTP spans to this base URL (http://host:4318)")
    ap.add_argument("--loki-push-bytes", type=int, default=None, help="the largest Loki push body (default 1 MiB)")
    ap.add_argument("--export-policy", default="{}", help="ExportPolicy fields as JSON (what TraceConfig.export says)")
    a = ap.parse_args(argv)
    formats = [f for f in a.formats.split(",") if f]
    bad = set(formats) - set(FORMATS)
    if bad:
        print(f"unknown formats {sorted(bad)}; known: {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    policy = ExportPolicy(**json.loads(a.export_policy))
    if a.loki_push_bytes is not None:
        policy = dataclasses.replace(policy, loki_push_bytes=a.loki_push_bytes)
    c = Collector(a.engine, a.out, formats, loki_url=a.loki, otlp_url=a.otlp, policy=policy)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, c.stop_on_signal)
    print("ready", flush=True)
    c.run()
    print(c.summary_line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
