"""OTLP/HTTP export of trace events: protobuf ExportTraceServiceRequests built with the
official opentelemetry-proto messages (the `otlp` extra), posted gzipped to
``<url>/v1/traces`` through a Delivery (retries, bounded queue, counted drops).

- One ResourceSpans per engine process: ``service.name=engram``, ``engram.engine``,
  ``engram.process`` (owner, worker-N), ``process.pid``.
- A span per event; instants are zero-length spans. Span and trace ids are derived
  from the engine's ids, so a recall is one OpenTelemetry trace wherever it ran:
  trace id = 8 bytes of the engine name's hash + the engram trace id; the recall
  (and remember, link, forget) span id is the engram trace id; its scan and spread
  spans are its children, its hops children of the spread, its seeds of the scan,
  its results of the recall.
- At most ``policy.otlp_batch_spans`` spans per request.
"""
from __future__ import annotations

import hashlib

from engram.observe.attach.delivery import Delivery

SCAN_BIT, SPREAD_BIT = 1 << 62, 1 << 63
SEQ_BITS = 40
PARENT = {"scan": 0, "spread": 0, "result": 0, "hop": SPREAD_BIT, "seed": SCAN_BIT, "interference": 0}
OWN = {"recall": 0, "remember": 0, "link": 0, "forget": 0, "scan": SCAN_BIT, "spread": SPREAD_BIT}


def span_id(rec: dict) -> int:
    """A span id unique within the engine: derived from the trace id for the spans that
    others point at, else from the writer's pid and the event's ring position."""
    own = OWN.get(rec["kind"])
    if own is not None and rec["trace_id"]:
        return rec["trace_id"] | own
    return (3 << 62) | ((rec["pid"] & 0x3FFFFF) << SEQ_BITS) | (rec["seq"] & ((1 << SEQ_BITS) - 1))


def parent_id(rec: dict) -> int:
    """The parent's span id (0: a root span)."""
    bits = PARENT.get(rec["kind"])
    return rec["trace_id"] | bits if bits is not None and rec["trace_id"] else 0


class OtlpSink:
    def __init__(self, url: str, engine: str, policy, on_drop=None):
        try:
            from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
            from opentelemetry.proto.common.v1 import common_pb2
            from opentelemetry.proto.trace.v1 import trace_pb2
        except ImportError as e:
            raise SystemExit(f"OTLP export needs the otlp extra: pip install 'engram[otlp]' ({e})") from e
        self._pb, self._common, self._request = trace_pb2, common_pb2, trace_service_pb2.ExportTraceServiceRequest
        self.engine = engine
        self._prefix = hashlib.sha256(engine.encode()).digest()[:8]
        self._batch_spans = policy.otlp_batch_spans
        self.delivery = Delivery("otlp", url.rstrip("/") + "/v1/traces", "application/x-protobuf", policy, on_drop)
        self._spans: dict = {}          # pid -> (process label, [Span])
        self._n = 0

    def _kv(self, key: str, value):
        v = self._common.AnyValue()
        if isinstance(value, str):
            v.string_value = value
        elif isinstance(value, float):
            v.double_value = value
        else:
            v.int_value = int(value) - (1 << 64 if value >= 1 << 63 else 0)
        return self._common.KeyValue(key=key, value=v)

    def add(self, rec: dict) -> None:
        tid = rec["trace_id"]
        parent = parent_id(rec)
        start = rec["ts_ns"]
        span = self._pb.Span(
            trace_id=self._prefix + (tid or span_id(rec)).to_bytes(8, "big"),
            span_id=span_id(rec).to_bytes(8, "big"),
            parent_span_id=parent.to_bytes(8, "big") if parent else b"",
            name=rec["kind"], kind=self._pb.Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start, end_time_unix_nano=start + rec["dur_ns"],
            attributes=[self._kv("engram.space", rec["space"]), self._kv("engram.trace_id", tid),
                        self._kv("engram.node_a", rec["node_a"]), self._kv("engram.node_b", rec["node_b"]),
                        self._kv("engram.value", rec["value"]), self._kv("engram.strength", rec["strength"]),
                        self._kv("thread.id", rec["tid"])])
        self._spans.setdefault(rec["pid"], (rec["process"], []))[1].append(span)
        self._n += 1
        if self._n >= self._batch_spans:
            self.flush()

    def flush(self) -> None:
        """Send the spans gathered so far as one request."""
        if not self._n:
            return
        req = self._request()
        for pid, (process, spans) in self._spans.items():
            rs = req.resource_spans.add()
            rs.resource.attributes.extend([self._kv("service.name", "engram"), self._kv("engram.engine", self.engine),
                                           self._kv("engram.process", process), self._kv("process.pid", pid)])
            ss = rs.scope_spans.add()
            ss.scope.name = "engram"
            ss.spans.extend(spans)
        self.delivery.submit(req.SerializeToString(), self._n)
        self._spans, self._n = {}, 0

    def close(self) -> None:
        self.flush()
        self.delivery.close()

    def stats(self) -> dict:
        return self.delivery.stats()
