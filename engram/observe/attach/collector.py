"""The trace collector: drains every process's ring of an engine and exports
the events, converting CLOCK_MONOTONIC timestamps to wall time at export.

    python -m engram.observe.attach.collector <engine> <out dir> [--formats jsonl,perfetto]

Formats:
- jsonl: ``trace.jsonl``, one JSON object per event (every line valid JSON):
  time (ISO 8601 UTC), ts_ns (wall, ns), kind, pid, worker, space, trace_id,
  node_a, node_b, value, strength.
- perfetto: ``trace.perfetto.json``, Chrome/Perfetto trace-event JSON: spans
  (recall, scan, spread, hop) as complete "X" slices on a track per process and
  worker, the rest as instant events. Open it in ui.perfetto.dev.
- --loki URL: Loki's push API, a stream per (kind, space), JSON lines.
- --otlp URL: OpenTelemetry spans through the OTLP/HTTP exporter (the otlp extra).

SIGTERM or SIGINT stops it after a last full drain of every ring, so no event
written before shutdown is lost (a full ring still drops its oldest events:
the collector counts those and says so).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
import time
from pathlib import Path

from engram.observe.tracing.config import FORMATS, KIND_NAMES, SPANS
from engram.observe.tracing.ring import Cursor, Ring, ring_names
from engram.store.shm.names import EngineName, pid_alive

POLL_S = 0.05


class LokiSink:
    """Pushes events to Loki's HTTP push API (POST <url>/loki/api/v1/push): one stream
    per (kind, space), each line the event's JSON, timestamps in ns as strings."""

    def __init__(self, url: str, engine: str):
        self.url = url.rstrip("/") + "/loki/api/v1/push"
        self.engine = engine
        self.sent = self.errors = 0
        self._batch: dict = {}

    def add(self, rec: dict) -> None:
        key = (rec["kind"], rec["space"])
        self._batch.setdefault(key, []).append([str(rec["ts_ns"]), json.dumps(rec)])

    def flush(self) -> None:
        if not self._batch:
            return
        import urllib.request
        streams = [{"stream": {"job": "engram", "engine": self.engine, "kind": k, "space": sp}, "values": v}
                   for (k, sp), v in self._batch.items()]
        body = json.dumps({"streams": streams}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        n = sum(len(v) for v in self._batch.values())
        self._batch = {}
        try:
            urllib.request.urlopen(req, timeout=10).read()
            self.sent += n
        except OSError as e:
            self.errors += n
            print(f"engram collector: Loki push to {self.url} failed: {e}", file=sys.stderr, flush=True)


class OtlpSink:
    """Exports events as OpenTelemetry spans through opentelemetry's OTLP/HTTP exporter
    (the `otlp` extra): spans keep their durations, instants are zero-length spans;
    every field is an `engram.*` attribute."""

    def __init__(self, url: str, engine: str):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as e:
            raise SystemExit(f"OTLP export needs the otlp extra: pip install 'engram[otlp]' ({e})") from e
        self.provider = TracerProvider(resource=Resource.create({"service.name": "engram", "engram.engine": engine}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url.rstrip("/") + "/v1/traces")))
        self.tracer = self.provider.get_tracer("engram")
        self.sent = 0

    def add(self, rec: dict) -> None:
        end = rec["ts_ns"]
        start = end - int(max(rec["value"], 0)) if rec["kind"] in SPANS else end
        attrs = {f"engram.{k}": rec[k] for k in ("pid", "worker", "space", "trace_id", "node_a", "node_b",
                                                  "value", "strength")}
        span = self.tracer.start_span(rec["kind"], start_time=start, attributes=attrs)
        span.end(end_time=end)
        self.sent += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.provider.force_flush(30_000)
        self.provider.shutdown()


class Collector:
    def __init__(self, engine: str, out_dir, formats=FORMATS, loki_url: str | None = None,
                 otlp_url: str | None = None):
        self.engine = EngineName.parse(str(engine))
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.formats = tuple(formats)
        self.cursors: dict = {}
        # CLOCK_MONOTONIC -> wall clock, measured once (both clocks of this host)
        self.offset_ns = time.time_ns() - time.monotonic_ns()
        self.events = 0
        self._labels = None
        # held open for the collector's lifetime; close() completes and closes them
        self._jsonl = open(self.out / "trace.jsonl", "w") if "jsonl" in self.formats else None  # noqa: SIM115
        self._perfetto = (open(self.out / "trace.perfetto.json", "w")  # noqa: SIM115
                          if "perfetto" in self.formats else None)
        self._first = True
        self._sinks = ([LokiSink(loki_url, str(engine))] if loki_url else []) + \
                      ([OtlpSink(otlp_url, str(engine))] if otlp_url else [])
        if self._perfetto:
            self._perfetto.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
        self.stop = threading.Event()

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
        for sink in self._sinks:
            sink.flush()
        self.events += n
        return n

    def _write(self, ring, ev) -> None:
        pid = int(ring.header["pid"][0])
        for e in ev:
            kind = KIND_NAMES.get(int(e["kind"]), str(int(e["kind"])))
            wall = int(e["ts_ns"]) + self.offset_ns
            rec = {"time": dt.datetime.fromtimestamp(wall / 1e9, dt.timezone.utc).isoformat(timespec="microseconds"),
                   "ts_ns": wall, "kind": kind, "pid": pid, "worker": int(e["worker"]),
                   "space": self._space(int(e["space"])), "trace_id": int(e["trace_id"]),
                   "node_a": int(e["node_a"]), "node_b": int(e["node_b"]), "value": float(e["value"]),
                   "strength": float(e["strength"])}
            if self._jsonl:
                self._jsonl.write(json.dumps(rec) + "\n")
            for sink in self._sinks:
                sink.add(rec)
            if self._perfetto:
                p = {"name": kind, "cat": rec["space"], "pid": pid, "tid": rec["worker"],
                     "args": {k: rec[k] for k in ("trace_id", "node_a", "node_b", "value", "strength")}}
                if kind in SPANS:
                    dur = max(rec["value"], 0.0)
                    p.update(ph="X", ts=(wall - dur) / 1e3, dur=dur / 1e3)
                else:
                    p.update(ph="i", s="t", ts=wall / 1e3)
                self._perfetto.write(("" if self._first else ",\n") + json.dumps(p))
                self._first = False

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.cursors.values())

    def run(self) -> int:
        """Drain until stop is set (or the owner is gone), then a last full drain. The files
        are closed (the Perfetto JSON completed) even if a drain fails, so what was written
        stays readable."""
        try:
            while not self.stop.is_set():
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

    def close(self) -> None:
        for sink in self._sinks:
            if hasattr(sink, "close"):
                sink.close()
        if self._jsonl:
            self._jsonl.close()
            self._jsonl = None
        if self._perfetto:
            meta = {"name": "engram", "ph": "M", "pid": 0, "args": {"lost_events": self.lost}}
            self._perfetto.write(("" if self._first else ",\n") + json.dumps(meta) + "\n]}\n")
            self._perfetto.close()
            self._perfetto = None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engram.observe.attach.collector", description=__doc__.splitlines()[0])
    ap.add_argument("engine")
    ap.add_argument("out")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--loki", default=None, help="also push to Loki at this base URL (http://host:3100)")
    ap.add_argument("--otlp", default=None, help="also export OTLP/HTTP spans to this base URL (http://host:4318)")
    a = ap.parse_args(argv)
    formats = [f for f in a.formats.split(",") if f]
    bad = set(formats) - set(FORMATS)
    if bad:
        print(f"unknown formats {sorted(bad)}; known: {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    c = Collector(a.engine, a.out, formats, loki_url=a.loki, otlp_url=a.otlp)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: c.stop.set())
    print("ready", flush=True)
    n = c.run()
    print(f"collected {n} events, {c.lost} lost to full rings", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
