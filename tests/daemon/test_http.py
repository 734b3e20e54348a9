"""The daemon over real HTTP: engram.Client, httpx and curl against ``engram serve`` on a
loopback port (docs/operations/http.md)."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import engram
from engram.errors import DimensionError, InvalidInputError, NonFiniteError, UnknownIdError, UnknownSpaceError

from .conftest import DIM, ROOT

BATCH = "application/vnd.engram.batch"


def binary_batch(rows: np.ndarray, dtype="f32", **header) -> bytes:
    raw = json.dumps({"count": rows.shape[0], "dtype": dtype, **header}).encode()
    return struct.pack("<I", len(raw)) + raw + rows.astype("<f4" if dtype == "f32" else "<f2").tobytes()


def test_the_client_has_space_methods_and_their_results(daemon):
    with engram.Client(daemon.url) as c:
        mem = c.space("default")
        ids = mem.remember(np.eye(DIM)[:6], content=["a", "b", None, "d", "e", "f"], confidence=[1, 1, .5, 1, 1, 1])
        assert ids.tolist() == list(range(6)) and len(mem) == 6
        assert mem.link(ids[0], ids[1:3], [0.9, 0.4]) == 2
        res = mem.recall(np.eye(DIM)[0], k=3)
        assert isinstance(res, engram.RecallResult) and res.ids[0] == 0 and res.content[0] == "a"
        sp = mem.spread([0], max_depth=2)
        assert isinstance(sp, engram.SpreadResult) and sp.ids.tolist()[:3] == [0, 1, 2]
        got = mem.get([2, 0])
        assert isinstance(got, engram.Memories) and got.content == [None, "a"]
        assert got.confidence[0] == pytest.approx(0.5) and np.allclose(got.vectors[1], np.eye(DIM)[0])
        t, w = mem.neighbors(0)
        assert sorted(zip(t.tolist(), np.round(w.astype(float), 3).tolist())) == [(1, 0.9), (2, 0.4)]
        assert mem.forget(ids[5]) == 1 and len(mem) == 5
        # the same engine read through shared memory answers the same
        with engram.attach(daemon.engine) as att:
            ref = att.space("default")
            assert len(ref) == 5
            assert ref.recall(np.eye(DIM)[3], k=3, spread=False).ids.tolist() == \
                mem.recall(np.eye(DIM)[3], k=3, spread=False).ids.tolist()
        assert c.spaces == ["default"]


@pytest.mark.parametrize("call, error", [
    (lambda m: m.remember(np.ones((2, DIM - 1))), DimensionError),
    (lambda m: m.remember(np.full((1, DIM), np.nan)), NonFiniteError),
    (lambda m: m.link(0, 10**6), UnknownIdError),
    (lambda m: m.forget(10**6), UnknownIdError),
    (lambda m: m.recall(np.ones(DIM + 1)), DimensionError),
    (lambda m: m.remember(np.ones((1, DIM)), tier="cold"), InvalidInputError),
])
def test_errors_come_back_as_the_same_classes_and_change_nothing(daemon, call, error):
    with engram.Client(daemon.url) as c:
        mem = c.space("default")
        mem.remember(np.ones((1, DIM)))
        with pytest.raises(error):
            call(mem)
        assert len(mem) == 1
        with pytest.raises(UnknownSpaceError):
            c.space("nosuch").recall(np.ones(DIM))
        with pytest.raises(InvalidInputError):
            c.space("Bad Name!").remember(np.ones((1, DIM)))


def test_engram_shapes_with_curl_and_httpx(daemon):
    def curl(*args):
        p = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30)
        body, code = p.stdout.rsplit("\n", 1)
        return int(code), json.loads(body) if body else None
    code, out = curl("-X", "POST", f"{daemon.url}/api/v1/memories/remember", "-H", "Content-Type: application/json",
                     "-H", "X-Memory-Space: notes", "-d", json.dumps({"embedding": [1] + [0] * (DIM - 1),
                                                                      "content": "hello", "confidence": 0.9}))
    assert code == 201 and out["memory_id"] == 0 and out["storage_confidence"]["category"] == "High"
    code, out = curl("--get", f"{daemon.url}/api/v1/memories/recall", "--data-urlencode", "space=notes",
                     "--data-urlencode", "embedding=" + json.dumps([1] + [0] * (DIM - 1)))
    assert code == 200 and out["memories"]["vivid"][0]["content"] == "hello"
    assert out["metadata"]["total_memories_searched"] == 1
    code, out = curl(f"{daemon.url}/api/v1/memories/0?space=notes")
    assert code == 200 and out["content"] == "hello" and out["links_out"] == []
    code, out = curl("-X", "DELETE", f"{daemon.url}/api/v1/memories/0?space=notes")
    assert code == 200 and out == {"memory_id": 0, "deleted": True}
    code, out = curl(f"{daemon.url}/api/v1/memories/0?space=notes")
    assert code == 404 and out["error"]["code"] == "MEMORY_NOT_FOUND"
    code, out = curl(f"{daemon.url}/api/v1/memories?space=never-made")
    assert code == 404 and out["error"]["code"] == "SPACE_NOT_FOUND"
    with httpx.Client(base_url=daemon.url) as h:
        r = h.post("/api/v1/memories/remember", json={"embedding": [1.0] * DIM, "tags": ["x"]})
        assert r.status_code == 400 and "tags" in r.json()["error"]["message"]       # refused, not dropped
        r = h.post("/api/v1/memories/remember", headers={"X-Memory-Space": "aaa", "X-Memory-Space-Id": "bbb"},
                   json={"embedding": [1.0] * DIM})
        assert r.status_code == 400 and "disagree" in r.json()["error"]["message"]
        r = h.post("/api/v1/memories/remember", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_MEMORY_INPUT"
        assert r.headers["x-content-type-options"] == "nosniff"
        spec = h.get("/api-docs/openapi.json").json()
        for path in ("/api/v1/memories/remember", "/api/v1/memories/recall", "/api/v1/memories/batch",
                     "/api/v1/patterns/associate", "/api/v1/memories/forget", "/api/v1/spaces", "/health"):
            assert path in spec["paths"], path


@pytest.mark.parametrize("body, what", [
    (b"\x01\x00", "4-byte header length"),
    (struct.pack("<I", 1000) + b"{}", "claims 1000 bytes"),
    (struct.pack("<I", 2) + b"[]", "JSON object"),
    (binary_batch(np.ones((2, DIM)))[:-4], "the body has"),
    (binary_batch(np.ones((2, DIM)), dtype="f64"), "dtype"),
    (binary_batch(np.ones((2, DIM)), content=["one"]), "content has 1 items"),
])
def test_a_bad_binary_batch_is_refused_with_a_reason_and_stores_nothing(daemon, body, what):
    with httpx.Client(base_url=daemon.url) as h:
        h.post("/api/v1/spaces", json={"id": "default"})
        r = h.post("/api/v1/memories/batch", content=body, headers={"Content-Type": BATCH})
        assert r.status_code == 400, r.text
        assert what in r.json()["error"]["message"]
        assert h.get("/api/v1/spaces/default").json()["memories"] == 0


def test_batches_json_and_binary_and_idempotent_retries(daemon):
    rows = np.random.default_rng(0).standard_normal((50, DIM))
    with httpx.Client(base_url=daemon.url) as h:
        r = h.post("/api/v1/memories/batch", json={"memories": [{"embedding": v.tolist()} for v in rows[:10]]})
        assert r.status_code == 201 and r.json()["memory_ids"] == list(range(10))
        key = {"Idempotency-Key": "batch-7", "Content-Type": BATCH}
        first = h.post("/api/v1/memories/batch", content=binary_batch(rows[10:], dtype="f16"), headers=key)
        again = h.post("/api/v1/memories/batch", content=binary_batch(rows[10:], dtype="f16"), headers=key)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json() and again.headers.get("idempotent-replayed") == "true"
        assert h.get("/api/v1/spaces/default").json()["memories"] == 50      # the retry stored nothing


def test_json_posts_take_the_express_lane_and_refusals_are_fastapis(start_daemon):
    """POSTs of a JSON body model skip FastAPI's stack when the body is valid
    (engram/daemon/express.py); what the model refuses, FastAPI answers as before, and a
    body over the limit gets the same answer on a lane as off it."""
    from engram.daemon.api import Service, create_app
    with engram.Engine(dim=DIM, workers=0) as eng:
        lanes = create_app(Service(eng)).lanes
        assert {("POST", "/api/v1/memories/recall"), ("POST", "/api/v1/memories/remember")} <= set(lanes)
        assert ("GET", "/api/v1/memories/recall") not in lanes and ("POST", "/api/v1/memories/batch") not in lanes
    d = start_daemon("--max-body-mb", "0.01")
    q = [1.0] + [0.0] * (DIM - 1)
    with httpx.Client(base_url=d.url) as h:
        key = {"Idempotency-Key": "one"}
        first = h.post("/api/v1/memories/remember", json={"embedding": q, "content": "kettle"}, headers=key)
        again = h.post("/api/v1/memories/remember", json={"embedding": q, "content": "kettle"}, headers=key)
        assert first.status_code == again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert first.json() == again.json() and first.headers["x-frame-options"] == "DENY"
        r = h.post("/api/v1/memories/recall", json={"embedding": q, "max_results": 3})
        assert r.status_code == 200 and r.json()["memories"]["vivid"][0]["content"] == "kettle"
        assert r.json()["recall_confidence"] == pytest.approx(1.0) and "metadata" in r.json()
        refusals = [                                    # (body, content type, what the message names)
            (json.dumps({"embedding": q, "tags": ["x"]}), "application/json", "body.tags"),
            (json.dumps({"embedding": q, "max_results": 0}), "application/json", "body.max_results"),
            (json.dumps({"embedding": "q"}), "application/json", "body.embedding"),
            (json.dumps([q]), "application/json", "body"),
            ("{not json", "application/json", "JSON decode error"),
            ("", "application/json", "body"),
        ]
        for body, ctype, what in refusals:
            r = h.post("/api/v1/memories/recall", content=body, headers={"Content-Type": ctype})
            assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_MEMORY_INPUT", (body, r.text)
            assert what in r.json()["error"]["message"], (body, r.text)
        r = h.post("/api/v1/memories/recall", content=json.dumps({"embedding": q}), headers={"Content-Type": "text/plain"})
        assert r.status_code == 400                      # FastAPI's: not read as JSON, so no body
        r = h.post("/api/v1/memories/recall", json={"embedding": q[:-1]})
        assert r.status_code == 400 and r.json()["error"]["type"] == "DimensionError"      # the engine's refusal
        r = h.post("/api/v1/memories/recall", json={"embedding": q}, headers={"X-Memory-Space": "nosuch"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "SPACE_NOT_FOUND"

        def chunks():                                   # no Content-Length: over the limit as it streams
            for _ in range(100):
                yield b" " * 1024
        over = [h.post("/api/v1/memories/recall", content=chunks(), headers={"Content-Type": ctype})
                for ctype in ("application/json", "text/plain")]          # on the lane, and off it
        assert over[0].status_code == over[1].status_code and over[0].json() == over[1].json()


def test_a_response_head_and_body_leave_in_one_write(daemon):
    """uvicorn writes a response's head and body apart; engram/daemon/protocol.py joins them
    (one send, one wake-up of the client). A HEAD answer is a head alone and still goes."""
    from engram.daemon.protocol import JoinedHead

    class Transport:
        def __init__(self):
            self.writes, self.closed = [], False

        def write(self, data):
            self.writes.append(bytes(data))

        def close(self):
            self.closed = True

        def is_closing(self):
            return self.closed
    class Cycle:                                    # uvicorn's: response_started before the head
        response_started = False
    t, cycle = Transport(), Cycle()
    j = JoinedHead(t, cycle)
    j.write(b"HTTP/1.1 100 Continue\r\n\r\n")     # before the response: at once
    cycle.response_started = True
    j.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"] and not j.is_closing()
    j.write(b"body")
    j.write(b"more")
    assert t.writes[1:] == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]
    t2 = Transport()
    j2 = JoinedHead(t2, cycle)
    j2.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    j2.close()                                      # a head held when the connection closes still goes
    assert t2.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"] and t2.closed
    with httpx.Client(base_url=daemon.url) as h:    # one keep-alive connection
        for _ in range(3):
            assert h.get("/health/alive").json() == {"status": "alive"}
            r = h.head("/health/alive")
            assert r.status_code in (200, 405) and r.content == b""
    # a client that waits for 100 Continue before its body gets it at once (curl would
    # otherwise wait the 30 s asked here, past the subprocess's timeout)
    body = json.dumps({"embedding": [1.0] * DIM, "content": "x" * 4000})
    p = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "--expect100-timeout", "30", "-H", "Expect: 100-continue",
                        "-H", "Content-Type: application/json", "-d", body, f"{daemon.url}/api/v1/memories/remember"],
                       capture_output=True, text=True, timeout=20)
    assert p.stdout.rsplit("\n", 1)[1] == "201", p.stdout


def test_api_keys_body_limit_and_open_health(start_daemon, tmp_path):
    key = "k" * 20 + "secret"
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"# clients\nsha256:{__import__('hashlib').sha256(key.encode()).hexdigest()}\n")
    keyfile.chmod(0o600)
    d = start_daemon("--api-key-file", keyfile, "--max-body-mb", "0.01")
    with httpx.Client(base_url=d.url) as h:
        assert h.get("/api/v1/spaces").status_code == 401
        assert h.get("/api/v1/spaces", headers={"Authorization": "Bearer wrong-key-wrong-key"}).status_code == 401
        ok = {"Authorization": f"Bearer {key}"}
        assert h.get("/api/v1/spaces", headers=ok).status_code == 200
        assert h.get("/health").status_code == 200 and h.get("/metrics/prometheus").status_code == 200
        big = np.ones((1000, DIM))
        r = h.post("/api/v1/memories/batch", content=binary_batch(big), headers={**ok, "Content-Type": BATCH})
        assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

        def chunks():               # no Content-Length: the limit holds while the body streams
            for _ in range(100):
                yield b"x" * 1024
        r = h.post("/api/v1/memories/batch", content=chunks(), headers={**ok, "Content-Type": BATCH})
        assert r.status_code == 413
    with engram.Client(d.url, api_key=key) as c:
        assert c.space("default").remember(np.ones((1, DIM))).tolist() == [0]
    with engram.Client(d.url) as c, pytest.raises(engram.errors.EngramError, match="API key"):
        c.space("default").remember(np.ones((1, DIM)))
    d2 = start_daemon("--protect-metrics", env={"ENGRAM_API_KEY": key})
    with httpx.Client(base_url=d2.url) as h:
        assert h.get("/metrics").status_code == 401 and h.get("/health/alive").status_code == 200


def test_no_api_key_no_listening_beyond_loopback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "engram.cli", "serve", "--data", str(tmp_path), "--host", "0.0.0.0",
                        "--port", "0"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={k: v for k, v in os.environ.items() if k != "ENGRAM_API_KEY"})
    assert p.returncode == 1 and "without an API key" in p.stderr


def test_metrics_scrape_as_prometheus_text(daemon):
    with engram.Client(daemon.url) as c:
        c.space("default").remember(np.ones((3, DIM)))
        c.space("default").recall(np.ones(DIM))
    with httpx.Client(base_url=daemon.url) as h:
        for r in (h.get("/metrics/prometheus"), h.get("/metrics", headers={"Accept": "text/plain"})):
            fams = {f.name: f for f in text_string_to_metric_families(r.text)}
            recalls = [s.value for s in fams["engram_recalls"].samples if s.labels.get("space") == "default"]
            assert recalls == [1.0]
        snap = h.get("/metrics").json()["snapshot"]
        assert snap["spaces"]["default"]["memories"] == 3
        assert h.get("/health/spreading").json()["status"] == "healthy"
        space = h.get("/api/v1/system/health").json()["spaces"][0]
        assert space["memories"] == 3 and space["index"]["generation"] == 0     # too few for an index


def test_sigterm_saves_and_exits_0_and_kill_9_keeps_what_was_acknowledged(start_daemon, tmp_path):
    data = tmp_path / "data"
    d = start_daemon(data=data)
    with engram.Client(d.url) as c:
        ids = c.space("default").remember(np.eye(DIM)[:4], content=list("abcd"))
        c.space("default").link(ids[0], ids[1], 0.5)
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    d = start_daemon(data=data)                         # recovers from the log
    with engram.Client(d.url) as c:
        mem = c.space("default")
        assert len(mem) == 4 and mem.get([3]).content == ["d"] and mem.neighbors(0)[0].tolist() == [1]
        mem.remember(np.ones((1, DIM)), content="e")
    health = httpx.get(f"{d.url}/health", timeout=30).json()
    assert health["recovery"]["replayed"] >= 2 and "snapshot_lsn" in health["recovery"], health   # what it found
    engine = d.engine
    assert d.stop(signal.SIGTERM) == 0
    assert not (data / "daemon.json").exists()
    assert not [n for n in os.listdir("/dev/shm") if engine in n]    # every segment removed
    with engram.Engine(path=data) as eng:
        assert len(eng.space("default")) == 5
        assert eng.recovery["replayed"] == 0                         # the stop checkpointed everything


def test_daemon_start_status_stop_from_the_cli(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "engram.cli", "daemon", *args, "--data", str(tmp_path)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    p = cli("start", "--port", "0", "--workers", "0", "--dim", str(DIM), "--log-segment-mb", "1")
    assert p.returncode == 0 and "running" in p.stdout, p.stdout + p.stderr
    assert cli("start", "--port", "0").returncode == 1              # one daemon a data directory
    p = cli("status")
    assert p.returncode == 0 and "healthy" in p.stdout
    url = json.loads((tmp_path / "daemon.json").read_text())["url"]
    engine = json.loads((tmp_path / "daemon.json").read_text())["engine"]
    insp = subprocess.run([sys.executable, "-m", "engram.cli", "inspect", engine], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert insp.returncode == 0, insp.stderr                        # attach tools work on a daemon's engine
    with engram.Client(url) as c:
        c.space("default").remember(np.ones((2, DIM)))
    assert cli("stop").returncode == 0
    p = cli("status")
    assert p.returncode == 3 and "not running" in p.stdout
    assert "serving" in (tmp_path / "daemon.log").read_text()


def test_websocket_stream_acks_mean_durable_and_overload_is_refused_not_dropped(start_daemon, tmp_path):
    from websockets.sync.client import connect
    data = tmp_path / "ws"
    d = start_daemon(data=data)
    ws_url = d.url.replace("http://", "ws://") + "/v1/stream"
    with connect(ws_url) as ws:
        ws.send(json.dumps({"type": "observation"}))
        assert json.loads(ws.recv())["type"] == "error"          # init first
    with connect(ws_url) as ws:
        ws.send(json.dumps({"type": "init", "memory_space_id": "stream"}))
        ack = json.loads(ws.recv())
        assert ack["type"] == "init_ack" and ack["capabilities"]["supports_backpressure"]
        for i in range(200):
            ws.send(json.dumps({"type": "observation", "sequence_number": i,
                                "episode": {"embedding": np.eye(DIM)[i % DIM].tolist(), "what": f"obs {i}"}}))
        ws.send(json.dumps({"type": "observation", "sequence_number": 200, "episode": {"embedding": [1.0]}}))
        got, errors_ = {}, []
        while len(got) < 200 or not errors_:
            m = json.loads(ws.recv())
            if m["type"] == "ack":
                got[m["sequence_number"]] = m
            elif m["type"] == "error":
                errors_.append(m)
        assert [got[i]["status"] for i in range(200)] == ["committed"] * 200
        assert errors_[0]["sequence_number"] == 200 and "DimensionError" in errors_[0]["message"]
        ws.send(json.dumps({"type": "close"}))
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL           # acks were durable: kill -9 keeps them
    with engram.Engine(path=data) as eng:
        mem = eng.space("stream")
        assert len(mem) == 200
        assert mem.get(got[199]["memory_id"]).content == ["obs 199"]


def test_websocket_overload_answers_flow_control(start_daemon):
    d = start_daemon("--lane", "normal=2")         # a lane of 2 observations fills at once
    ws_url = d.url.replace("http://", "ws://") + "/v1/stream"
    from websockets.sync.client import connect
    with connect(ws_url, max_size=None) as ws:
        ws.send(json.dumps({"type": "init", "memory_space_id": "burst"}))
        assert json.loads(ws.recv())["capabilities"]["queue_capacity"] == 2
        row = np.ones(DIM).tolist()
        n = 3000
        for i in range(n):
            ws.send(json.dumps({"type": "observation", "sequence_number": i, "episode": {"embedding": row}}))
        statuses, pauses, resumes = {}, 0, 0
        while len(statuses) < n:
            m = json.loads(ws.recv())
            if m["type"] == "ack":
                statuses[m["sequence_number"]] = m["status"]
                assert m["status"] != "rejected" or m["retry_after"] > 0
            elif m["type"] == "flow_control":
                pauses += m["action"] == "pause"
                resumes += m["action"] == "resume"
        ws.send(json.dumps({"type": "close"}))
    rejected = sum(s == "rejected" for s in statuses.values())
    assert rejected > 0 and pauses > 0, "3,000 observations into a lane of 2 were never refused"
    assert set(statuses.values()) == {"committed", "rejected"}
    with engram.Client(d.url) as c:
        assert len(c.space("burst")) == n - rejected                 # refused ones were not stored


def test_idle_and_slow_connections_do_not_stop_other_clients(start_daemon):
    """2,000 connections that send nothing and 100 that send half a header: a normal client
    is still served, and the server cuts the slow ones at the header deadline."""
    import socket
    import time
    d = start_daemon("--header-timeout", "2")
    host, port = d.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(2000)]
    slow = []
    for _ in range(100):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /api/v1/spaces HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(s)
    try:
        with engram.Client(d.url, timeout=10) as c:
            assert c.space("default").remember(np.ones((1, DIM))).tolist() == [0]
            assert len(c.space("default")) == 1
        time.sleep(3)                                   # past the 2 s header deadline
        for s in slow[:10] + idle[:10]:
            s.settimeout(5)
            assert s.recv(1) == b"", "a connection that sent no complete header was left open"
    finally:
        for s in idle + slow:
            s.close()


def test_traces_leave_the_daemon_by_otlp_to_a_real_decoder(start_daemon, tmp_path):
    """The daemon's collector exports OTLP/HTTP; a receiver decodes it with the official
    opentelemetry-proto messages and finds one recall span per recall made over HTTP."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tests.tracing.receivers import Receiver
    rx = Receiver()
    try:
        d = start_daemon("--trace-dir", tmp_path / "traces", "--otlp", rx.url)
        with engram.Client(d.url) as c:
            mem = c.space("traced")
            mem.remember(np.eye(DIM))
            for i in range(7):
                mem.recall(np.eye(DIM)[i], k=3)
        assert d.stop() == 0                       # the collector drains before the daemon exits
        names = []
        for path, headers, body in rx.got:
            assert path == "/v1/traces"
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            names += [s.name for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert names.count("recall") == 7
        assert (tmp_path / "traces" / "trace.jsonl").stat().st_size > 0
    finally:
        rx.close()


def test_a_recall_that_finds_the_daemon_idle_runs_on_its_event_loop(start_daemon):
    """Service.read_bounded: a recall from a vector with a budget of at most 20 ms, sent
    when no other engine call is in flight, runs on the event loop (no thread hand-off);
    one sent while another call is in flight, or with a larger budget or none, goes to the
    read pool. Both answer alike. The prelude makes a metrics snapshot take 1.5 s, so a
    recall can be sent while one is surely in flight. And the objects startup made are
    frozen out of the garbage collector's full passes, which ran on the loop for 67-80 ms."""
    d = start_daemon(prelude="import time, engram.engine as e\n"
                             "_stats = e.Engine.ingest_stats\n"
                             "def slow(self):\n    time.sleep(1.5)\n    return _stats(self)\n"
                             "e.Engine.ingest_stats = slow")
    q = [1.0] + [0.0] * (DIM - 1)

    def inline(h) -> int:
        return h.get("/metrics").json()["snapshot"]["http"]["inline_reads"]

    with httpx.Client(base_url=d.url, timeout=30) as h:
        assert h.post("/api/v1/memories/remember", json={"embedding": q, "content": "kettle"}).status_code == 201
        before = inline(h)
        answers = [h.post("/api/v1/memories/recall", json={"embedding": q, "max_results": 3, **extra}).json()
                   for extra in ({}, {"budget_ms": 5.0}, {"budget_ms": 1000.0}, {"budget_ms": None})]
        assert inline(h) == before + 2            # the default 10 ms and 5 ms on the loop; 1 s and none not
        assert {a["memories"]["vivid"][0]["content"] for a in answers} == {"kettle"}

        import threading
        slow = threading.Thread(target=lambda: httpx.get(d.url + "/metrics", timeout=30))
        slow.start()
        time.sleep(0.5)                            # the snapshot is in flight for 1 s more
        r = h.post("/api/v1/memories/recall", json={"embedding": q, "max_results": 3})
        slow.join()
        assert r.status_code == 200 and r.json()["memories"]["vivid"][0]["content"] == "kettle"
        assert inline(h) == before + 2            # it went to the read pool
        # what startup made is frozen out of the collector's full passes (serve: gc.freeze)
        assert h.get("/metrics").json()["snapshot"]["http"]["gc_frozen_objects"] > 10_000
