"""The collector's network exporters against local receivers: Loki's push API
(a real HTTP server taking the JSON) and OTLP/HTTP (a real HTTP server decoding
the protobuf with opentelemetry's own message types)."""
import gzip
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import engram
from engram.observe.tracing import TraceConfig


class Receiver:
    """A local HTTP server keeping every POST (path, headers, body)."""

    def __init__(self):
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":     # OTLP/HTTP compresses
                    body = gzip.decompress(body)
                got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204 if self.path.startswith("/loki") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def traced_recalls(tmp_path, recalls=12, **cfg):
    rng = np.random.default_rng(0)
    with engram.Engine(dim=8, workers=0, trace=TraceConfig(collect_to=str(tmp_path), kinds=("recall", "hop"),
                                                          **cfg)) as eng:
        mem = eng.space("exported")
        v = rng.standard_normal((100, 8))
        ids = mem.remember(v)
        mem.link(ids[:-1], ids[1:], 0.5)
        # no budget: on a loaded machine a 10 ms budget can fall back to similarity (no hops to count)
        hops = sum(mem.recall(v[i], k=3, budget_ms=None).spreading["hops"] for i in range(recalls))
    return hops


def test_loki_push_receives_every_event_as_json_lines(tmp_path, receiver):
    hops = traced_recalls(tmp_path, loki_url=receiver.url)
    pushes = [json.loads(b) for p, h, b in receiver.got if p == "/loki/api/v1/push"]
    assert pushes and all(h.get("content-type") == "application/json" for p, h, b in receiver.got)
    lines = Counter()
    for push in pushes:
        for stream in push["streams"]:
            labels = stream["stream"]
            assert labels["job"] == "engram" and labels["space"] == "exported"
            for ts, line in stream["values"]:
                rec = json.loads(line)
                assert ts == str(rec["ts_ns"]) and rec["kind"] == labels["kind"]
                lines[rec["kind"]] += 1
    assert lines == Counter({"recall": 12, "hop": hops})


def test_otlp_export_receives_spans_with_their_durations(tmp_path, receiver):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    hops = traced_recalls(tmp_path, otlp_url=receiver.url)
    spans = []
    for path, headers, body in receiver.got:
        assert path == "/v1/traces" and headers.get("content-type") == "application/x-protobuf"
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            res = {a.key: a.value.string_value for a in rs.resource.attributes}
            assert res["service.name"] == "engram" and res["engram.engine"].startswith("eg.")
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
    kinds = Counter(s.name for s in spans)
    assert kinds == Counter({"recall": 12, "hop": hops})
    for s in spans:
        attrs = {a.key: a.value for a in s.attributes}
        assert attrs["engram.space"].string_value == "exported"
        assert s.end_time_unix_nano - s.start_time_unix_nano == pytest.approx(attrs["engram.value"].double_value,
                                                                                abs=1)
