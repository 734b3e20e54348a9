"""Tracing: per-process rings from the owner and real worker processes, a
collector process whose JSONL and Perfetto files hold every event written
before shutdown, drop-oldest with counted losses and never a torn event,
filters, and `engram trace` tailing a live engine in another process."""
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest

import engram
from engram import errors
from engram.observe.tracing import KINDS, Cursor, TraceConfig, Tracer
from engram.store.shm.names import EngineName

DIM = 16


def run_engine(tmp_path, workers=0, routing="auto", recalls=30, **cfg):
    rng = np.random.default_rng(0)
    out = tmp_path / "trace"
    with engram.Engine(dim=DIM, workers=workers, routing=routing,
                       trace=TraceConfig(collect_to=str(out), **cfg)) as eng:
        mem = eng.space("traced")
        v = rng.standard_normal((200, DIM))
        ids = mem.remember(v)
        mem.link(ids[:-1], ids[1:], 0.5)
        if workers:
            eng.start_workers()
        results = [mem.recall(v[i], k=5, budget_ms=None) for i in range(recalls)]   # no fallback: every span
    lines = (out / "trace.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], json.loads((out / "trace.perfetto.json").read_text()), results


def test_every_event_written_before_close_reaches_the_files(tmp_path):
    events, perfetto, results = run_engine(tmp_path)
    kinds = Counter(e["kind"] for e in events)
    assert kinds["recall"] == 30 and kinds["scan"] == 30 and kinds["spread"] == 30
    assert kinds["result"] == sum(len(r) for r in results)
    assert kinds["hop"] == sum(r.spreading["hops"] for r in results)
    assert kinds["remember"] == 1 and kinds["link"] == 1
    recall = [e for e in events if e["kind"] == "recall"]
    assert all(e["space"] == "traced" and e["node_a"] == 5 and e["value"] > 0 for e in recall)
    assert len({e["trace_id"] for e in recall}) == 30
    # wall-clock timestamps; a span's is its start, so each recall's stages come after it
    import time
    assert abs(events[-1]["ts_ns"] - time.time_ns()) < 120e9
    start = {e["trace_id"]: e["ts_ns"] for e in recall}
    for e in events:
        if e["kind"] in ("scan", "spread", "hop", "seed", "result"):
            assert start[e["trace_id"]] <= e["ts_ns"]
    assert all(e["trace_id"] for e in events)                       # every event belongs to a request
    spans = [p for p in perfetto["traceEvents"] if p.get("ph") == "X"]
    assert {p["name"] for p in spans} >= {"recall", "scan", "spread", "hop"}
    assert all(p["dur"] >= 0 and p["ts"] > 0 for p in spans)
    assert perfetto["otherData"]["lost_events"] == 0


def test_worker_processes_trace_into_their_own_rings(tmp_path):
    events, perfetto, results = run_engine(tmp_path, workers=2, routing="workers", recalls=20)
    hops = [e for e in events if e["kind"] == "hop"]
    assert hops and all(e["worker"] >= 1 for e in hops)                  # written by workers
    assert {e["pid"] for e in hops} != {os.getpid()}
    assert Counter(e["kind"] for e in events)["recall"] == 20            # the caller's spans
    tracks = {(p["pid"], p["tid"]) for p in perfetto["traceEvents"] if p.get("ph") == "X"}
    assert len(tracks) >= 2                                               # a track per process/worker


def test_filters_kinds_strength_and_sampling(tmp_path):
    events, _, _ = run_engine(tmp_path, kinds=("recall", "result"), min_strength=0.5)
    kinds = Counter(e["kind"] for e in events)
    assert set(kinds) <= {"recall", "result"} and kinds["recall"] == 30
    assert all(e["strength"] >= 0.5 for e in events)
    events, _, _ = run_engine(tmp_path / "s", kinds=("recall",), sample=0.5, recalls=40)
    assert Counter(e["kind"] for e in events)["recall"] == 20               # exactly half, evenly spaced


def test_a_full_ring_drops_the_oldest_and_readers_count_them():
    name = EngineName.new()
    t = Tracer(name, TraceConfig(ring_size=64), worker=0)
    try:
        reader = Cursor(t.ring)
        for i in range(1000):
            assert t.emit(KINDS["seed"], 0, 0, i, 0, 0.0, 1.0)
        ev = reader.read()
        assert ev.size == 64 and reader.lost == 1000 - 64
        assert ev["node_a"].tolist() == list(range(1000 - 64, 1000))       # the newest, whole
        assert (ev["seq"] == ev["node_a"] + 1).all()
    finally:
        t.ring.seg.unlink(t.ring.seg.name)


def test_bad_trace_settings_are_refused():
    for bad, words in ((TraceConfig(kinds=("nope",)), "unknown trace event kinds"),
                       (TraceConfig(sample=0), "sample"), (TraceConfig(ring_size=100), "power of two"),
                       (TraceConfig(formats=("xml",)), "unknown trace formats")):
        with pytest.raises(errors.InvalidInputError, match=words):
            engram.Engine(dim=DIM, workers=0, trace=bad)
    with pytest.raises(errors.InvalidInputError, match="trace must be"):
        engram.Engine(dim=DIM, workers=0, trace="yes")


LIVE = textwrap.dedent("""
    import sys, numpy as np, engram
    eng = engram.Engine(dim=8, workers=0, trace=True)
    mem = eng.space("tailed")
    v = np.random.default_rng(0).standard_normal((50, 8))
    mem.remember(v)
    print(eng.name, flush=True)
    for line in sys.stdin:              # "recall N": N recalls, then "done"; EOF: close
        for i in range(int(line.split()[1])):
            mem.recall(v[i % 50], k=3)
        print("done", flush=True)
    eng.close()
""")


@pytest.fixture
def live_traced():
    p = subprocess.Popen([sys.executable, "-c", LIVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    name = p.stdout.readline().strip()

    def recall(n):
        p.stdin.write(f"recall {n}\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "done"

    yield name, recall
    p.stdin.close()
    p.wait(30)


def test_engram_trace_tails_a_live_engine(live_traced):
    name, recall = live_traced
    t = subprocess.Popen([sys.executable, "-m", "engram.cli", "trace", name, "--kind", "recall",
                          "--count", "20", "--seconds", "120"], stdout=subprocess.PIPE, text=True)
    import time
    deadline = time.monotonic() + 60
    while t.poll() is None and time.monotonic() < deadline:   # recall until the tail has seen 20
        recall(2)                                              # (it starts at the ring's head)
        time.sleep(0.05)
    out, _ = t.communicate(timeout=120)
    lines = out.splitlines()
    assert t.returncode == 0 and len(lines) == 20, out
    assert all(" recall " in line and "tailed" in line and "a=3" in line for line in lines)


def test_engram_trace_collect_drains_a_live_engine_to_files(tmp_path, live_traced):
    import signal
    name, recall = live_traced
    c = subprocess.Popen([sys.executable, "-m", "engram.cli", "trace", "collect", name, "--out", str(tmp_path),
                          "--perfetto"],
                         stdout=subprocess.PIPE, text=True)
    assert c.stdout.readline().startswith("collecting the events of")   # ready: SIGTERM now stops it cleanly
    recall(15)
    c.send_signal(signal.SIGTERM)                     # a clean stop drains every ring first
    out, _ = c.communicate(timeout=60)
    assert c.returncode == 0 and "collected" in out, out
    events = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert Counter(e["kind"] for e in events)["recall"] == 15       # the collector reads each ring from its start
    assert json.loads((tmp_path / "trace.perfetto.json").read_text())["traceEvents"]
