"""engram.connect: another process writes through a shared-memory ring and the owner
acknowledges once durable (engram/ingest/listener.py, docs/durability/ingest.md). Every
test runs the connected side in a real second process, except where the test itself
plays a hostile producer on the ring."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import engram
from engram.errors import ClosedError, OverloadError
from engram.ingest import wire
from engram.ingest.ring import RECORD, Kind, Ring

DIM = 8
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def run(code: str, *args, timeout=60) -> str:
    """Run ``code`` in a new Python process; its stdout (it must exit 0)."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture
def eng(tmp_path):
    with engram.Engine(path=tmp_path / "db", dim=DIM, workers=0) as e:
        e.space("default")
        yield e


def test_another_process_remembers_links_forgets_and_streams(eng, tmp_path):
    out = run("""
        import sys, numpy as np, engram
        with engram.connect(sys.argv[1]) as c:
            sp = c.space("default")
            ids = sp.remember(np.eye(8)[:5], content=["a", "b", None, "d", "é"], confidence=[1, .5, 1, 1, 1])
            print("ids", *ids)
            print("linked", sp.link(ids[0], ids[1:3], [0.5, 0.25]))
            print("forgot", sp.forget(ids[3]))
            st = sp.stream(lane="low")
            seqs = [st.put(np.ones((300, 8)) * (k + 1), tier="warm") for k in range(5)]
            got = [st.wait(s[-1]) for s in seqs]
            print("streamed", *[len(g) for g in got], got[0][0], got[-1][-1])
            st.flush()
            print("seen", len(sp), sp.recall(np.eye(8)[4], k=1, spread=False).ids[0])
            for bad in (lambda: sp.remember(np.full((2, 8), np.nan)), lambda: sp.link(ids[0], 10**6),
                        lambda: sp.remember(np.ones((2, 7))), lambda: c.space("No Such Space!")):
                try:
                    bad()
                except engram.errors.EngramError as e:
                    print("error", type(e).__name__)
    """, eng.name)
    lines = dict((line.split(" ", 1) + [""])[:2] for line in out.splitlines() if not line.startswith("error"))
    assert lines["ids"] == "0 1 2 3 4"
    assert lines["linked"] == "2" and lines["forgot"] == "1"
    assert lines["streamed"] == "300 300 300 300 300 5 1504"
    assert lines["seen"] == "1504 4"       # 1505 remembered, one forgotten; recall sees the owner's tables
    assert [line.split()[1] for line in out.splitlines() if line.startswith("error")] == \
        ["NonFiniteError", "UnknownIdError", "DimensionError", "InvalidSpaceNameError"]
    mem = eng.space("default")
    assert mem.get([0, 1, 4]).content == ["a", "b", "é"]
    assert mem.get(1).confidence[0] == pytest.approx(0.5)
    targets, weights = mem.neighbors(0)
    assert sorted(zip(targets.tolist(), weights.tolist())) == [(1, 0.5), (2, 0.25)]
    with pytest.raises(engram.errors.UnknownIdError):
        mem.get(3)
    assert len(mem) == 1504
    assert eng.ingest_stats()["channels"]["refused"] == 0


def test_what_a_connected_process_was_acknowledged_survives_the_owner(tmp_path):
    """The owner closes (SIGTERM would do the same) while a producer streams: every put
    acknowledged before is in the reopened engine, and the producer is told, not hung."""
    eng = engram.Engine(path=tmp_path / "db", dim=DIM, workers=0)
    eng.space("default")
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, numpy as np, engram
        c = engram.connect(sys.argv[1])
        st = c.space("default").stream()
        print("ready", flush=True)
        n = 0
        try:
            while True:
                seqs = st.put(np.ones((100, 8)))
                st.wait(seqs[-1])
                n += 100
                print(n, flush=True)
        except engram.errors.ClosedError:
            print("closed", flush=True)
    """), eng.name], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    eng.close()
    lines = p.communicate(timeout=30)[0].split()
    assert lines[-1] == "closed"
    acked = int(lines[-2])
    assert acked >= 100
    with engram.Engine(path=tmp_path / "db") as again:
        assert len(again.space("default")) >= acked


def test_a_producer_killed_mid_stream_leaves_the_engine_working(eng):
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, numpy as np, engram
        st = engram.connect(sys.argv[1]).space("default").stream()
        print("ready", flush=True)
        n = 0
        while True:
            try:
                seqs = st.put(np.ones((50, 8)))
            except engram.errors.OverloadError:
                continue
            n += 50
            if n % 5000 == 0:
                st.wait(seqs[-1])
                print(n, flush=True)
    """), eng.name], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stdout.readline().strip() == "ready"
    acked = int(p.stdout.readline())
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    deadline = time.monotonic() + 10
    while eng.ingest_stats()["channels"]["channels"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert eng.ingest_stats()["channels"]["channels"] == 0       # its channel ended, its ring went
    assert not [n for n in os.listdir("/dev/shm") if eng.name in n and ".ring" in n]
    mem = eng.space("default")
    assert len(mem) >= acked
    assert mem.remember(np.ones((1, 8))).shape == (1,)          # the engine goes on


def test_a_full_lane_fills_the_ring_and_put_is_refused_but_nothing_accepted_is_lost(tmp_path):
    with engram.Engine(path=tmp_path / "db", dim=64, workers=0, lanes={"normal": 1000}) as eng:
        eng.space("default")
        out = run("""
            import sys, numpy as np, engram
            with engram.connect(sys.argv[1], ring_mb=0.25) as c:
                st = c.space("default").stream()
                accepted = refused = 0
                for _ in range(400):
                    try:
                        accepted += len(st.put(np.ones((100, 64))))
                    except engram.errors.OverloadError as e:
                        assert e.retry_after > 0
                        refused += 1
                st.flush()
                print(accepted, refused)
        """, eng.name)
        accepted, refused = map(int, out.split())
        assert refused > 0, "a 0.25 MiB ring behind a 1,000-observation lane never filled"
        assert len(eng.space("default")) == accepted


def test_the_channel_limit_is_kept(tmp_path):
    with engram.Engine(dim=DIM, workers=0, channels=1) as eng:
        eng.space("default")
        with engram.connect(eng.name) as c:
            c.space("default")
            with pytest.raises(OverloadError, match="limit"):
                c.space("default").stream()
        assert eng.ingest_stats()["channels"]["refused"] == 1
    with engram.Engine(dim=DIM, workers=0, channels=0) as eng, pytest.raises(ClosedError, match="channels=0"):
        engram.connect(eng.name).space("default")


def hostile(eng):
    """A raw channel: the socket after a hello, and the ring attached for writing."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(wire.address(eng.name))
    wire.send(sock, {"hello": 1, "space": "default", "ring_bytes": 1 << 16})
    msg, _ = wire.recv(sock)
    return sock, Ring.attach(msg["ring"])


def replies(sock) -> list:
    out = []
    sock.settimeout(10)
    try:
        while "closed" not in (out[-1] if out else {}):
            out.append(wire.recv(sock)[0])
    except (OSError, wire.ChannelBroken):
        pass
    return out


@pytest.mark.parametrize("damage", ["length beyond head", "length not 8-aligned", "op out of order",
                                    "count beyond payload", "head beyond the ring"])
def test_a_record_that_cannot_be_framed_ends_only_its_channel(eng, damage):
    sock, ring = hostile(eng)
    payload = np.ones(DIM, "<f4").tobytes()
    length, op, count = RECORD.size + len(payload), 0, 1
    head = length
    if damage == "length beyond head":
        length += 64
    elif damage == "length not 8-aligned":
        length -= 4
    elif damage == "op out of order":
        op = 7
    elif damage == "count beyond payload":
        count = 1000
    elif damage == "head beyond the ring":
        head = ring.capacity * 3
    RECORD.pack_into(ring.area, 0, Kind.REMEMBER, length, op, count, 0, 0, 0)
    ring.area[RECORD.size:RECORD.size + len(payload)] = np.frombuffer(payload, np.uint8)
    ring.header["head"] = head
    wire.send(sock, {"bell": 1})
    got = replies(sock)
    assert any("fatal" in m for m in got), got
    assert len(eng.space("default")) == 0                    # nothing of it was applied
    assert eng.space("default").remember(np.ones((1, DIM))).shape == (1,)


def test_bad_values_in_a_well_framed_record_fail_that_op_only(eng):
    sock, ring = hostile(eng)
    rows = [np.full(DIM, np.nan, "<f4"), np.ones(DIM, "<f4")]     # op 0: NaN; op 1: fine
    for op, row in enumerate(rows):
        rec = RECORD.pack(Kind.REMEMBER, RECORD.size + row.nbytes, op, 1, 0, 0, 0) + row.tobytes()
        at = op * len(rec)
        ring.area[at:at + len(rec)] = np.frombuffer(rec, np.uint8)
    ring.header["head"] = 2 * len(rec)
    wire.send(sock, {"bell": 1})
    sock.settimeout(10)
    first, second = wire.recv(sock)[0], wire.recv(sock)
    assert first["op"] == 0 and first["error"] == "NonFiniteError"
    assert second[0] == {"op": 1, "n": 1} and np.frombuffer(second[1], "<i8").tolist() == [0]
    sock.close()


@pytest.mark.parametrize("hello", [b"not json at all", {"hello": 2}, {"hello": 1, "lane": "fast"},
                                   {"hello": 1, "space": "../etc"}, {"hello": 1, "ring_bytes": -5}])
def test_a_bad_hello_is_refused_with_a_reason(eng, hello):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(wire.address(eng.name))
    if isinstance(hello, bytes):
        sock.sendall(wire.FRAME.pack(len(hello), 0) + hello)
    else:
        wire.send(sock, hello)
    got = replies(sock)
    assert got and ("error" in got[0] or "fatal" in got[0]), got
    assert eng.space("default").remember(np.ones((1, DIM))).shape == (1,)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to play another user")
def test_another_user_is_refused(eng):
    out = run("""
        import os, socket, sys
        from engram.ingest import wire
        os.setgid(65534); os.setuid(65534)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(wire.address(sys.argv[1]))
        print(wire.recv(s)[0])
    """, eng.name)
    assert "own user" in out
