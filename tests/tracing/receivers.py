"""Real consumers for the collector's exporters: local HTTP servers that take what a real
OTLP collector or Loki would take, and a checker of the Trace Event Format rules.

- OtlpReceiver decodes every request with the official opentelemetry-proto messages
  and keeps the spans with their resource; it can answer 503 to the first N requests.
- LokiReceiver checks each push against Loki's push API (POST /loki/api/v1/push,
  application/json, {"streams": [{"stream": {label: value}, "values": [[ns, line]]}]},
  label names [a-zA-Z_][a-zA-Z0-9_]*, ns a decimal string), the body size, and that
  each stream's entries never go back in time, across pushes too.
"""
from __future__ import annotations

import gzip
import json
import re
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Receiver:
    """A local HTTP server; ``handle(path, headers, body) -> status`` judges each POST."""

    def __init__(self):
        self.got = []                 # (path, headers, body) of every POST, decompressed
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with outer.lock:
                    outer.got.append((self.path, headers, body))
                    status = outer.handle(self.path, headers, body)
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, path, headers, body) -> int:
        return 204 if path.startswith("/loki") else 200

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class OtlpReceiver(Receiver):
    def __init__(self, fail_first: int = 0):
        self.fail_first, self.spans, self.refused = fail_first, [], 0
        super().__init__()

    def handle(self, path, headers, body) -> int:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
        assert path == "/v1/traces" and headers["content-type"] == "application/x-protobuf"
        if self.refused < self.fail_first:
            self.refused += 1
            return 503
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            res = {a.key: a.value for a in rs.resource.attributes}
            self.spans += [(res, s) for ss in rs.scope_spans for s in ss.spans]
        return 200


class LokiReceiver(Receiver):
    def __init__(self, limit: int):
        self.limit, self.lines, self.sizes = limit, [], []
        self.last = defaultdict(int)          # stream labels -> last timestamp taken
        super().__init__()

    def handle(self, path, headers, body) -> int:
        assert path == "/loki/api/v1/push" and headers["content-type"] == "application/json"
        assert len(body) <= self.limit, f"a push of {len(body):,} bytes, over {self.limit:,}"
        self.sizes.append(len(body))
        doc = json.loads(body)
        assert set(doc) == {"streams"} and isinstance(doc["streams"], list)
        for st in doc["streams"]:
            assert set(st) == {"stream", "values"}
            labels = st["stream"]
            assert labels and all(LABEL_NAME.match(k) and isinstance(v, str) for k, v in labels.items())
            key = tuple(sorted(labels.items()))
            for entry in st["values"]:
                assert isinstance(entry, list) and len(entry) == 2
                ts, line = entry
                assert isinstance(ts, str) and ts.isdigit() and isinstance(line, str)
                assert int(ts) >= self.last[key], f"stream {labels} went back in time"
                self.last[key] = int(ts)
                self.lines.append((labels, json.loads(line)))
        return 204


def ns(us) -> int:
    """A Trace Event Format time (us, three decimals here) in integer ns."""
    return round(us * 1000)


def check_trace_event_format(doc: dict) -> dict:
    """Check a Chrome / Perfetto JSON trace against the format's rules and ours; returns
    the complete slices by track. Every complete slice nests in the one enclosing it on
    its track; metadata events are only the standard ones; every flow's start lies in a
    recall slice and its end in a stage slice of the same trace."""
    assert set(doc) <= {"traceEvents", "displayTimeUnit", "otherData"}
    assert doc["otherData"]["base_wall_clock_ns"] > 1.6e18
    tracks = defaultdict(list)
    flows = defaultdict(dict)
    names = set()
    for e in doc["traceEvents"]:
        assert e["ph"] in ("X", "i", "M", "s", "f"), e
        assert isinstance(e["pid"], int) and e["pid"] > 0 and isinstance(e["tid"], int) and e["tid"] > 0, e
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index"), e
            names.add((e["name"], e["pid"], e["tid"] if e["name"] == "thread_name" else 0))
            continue
        assert e["ts"] >= 0, e
        if e["ph"] == "X":
            assert e["dur"] >= 0
            tracks[(e["pid"], e["tid"])].append((ns(e["ts"]), ns(e["ts"]) + ns(e["dur"]), e))
        elif e["ph"] in "sf":
            flows[e["id"]][e["ph"]] = e
    for pid, tid in tracks:
        assert ("process_name", pid, 0) in names and ("thread_name", pid, tid) in names
    for slices in tracks.values():
        slices.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for start, end, e in slices:
            while stack and stack[-1][1] <= start and not (stack[-1][1] == start and stack[-1][0] == start):
                stack.pop()
            assert not stack or end <= stack[-1][1], f"{e} overlaps {stack[-1][2]} on its track"
            stack.append((start, end, e))
    for fid, pair in flows.items():
        assert set(pair) == {"s", "f"}, fid
        s, f = pair["s"], pair["f"]
        assert ns(s["ts"]) <= ns(f["ts"])
        assert _inside(tracks, s, "recall") and _inside(tracks, f, ("hop", "scan", "spread")), fid
    return tracks


def _inside(tracks, point, kinds) -> bool:
    at = ns(point["ts"])
    return any(e["name"] in kinds and start <= at <= end and e["args"]["trace_id"] == int(point["id"].split(".")[0], 16)
               for start, end, e in tracks[(point["pid"], point["tid"])])
