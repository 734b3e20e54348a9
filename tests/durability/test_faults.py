"""Faults the engine meets while running: a failed fsync (fail-stop, never retried as if
nothing happened), a full disk (writes refused with StorageFullError, reads go on, nothing
acknowledged lost), a checkpoint while writers run (consistent), SIGTERM (a clean close)."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import numpy as np
import pytest

import engram
from engram.errors import DurabilityError, StorageFullError
from engram.store import image, snapfile
from engram.store.tables import LIVE
from engram.store.wal import format as wal_format

from .crashfs import FailingFiles

DIM = 16


def test_a_failed_fsync_stops_acknowledging_and_loses_nothing_acknowledged(tmp_path):
    ff = FailingFiles()
    eng = engram.Engine(path=tmp_path, dim=DIM, workers=0, files=ff)
    mem = eng.space("faulty")
    acked = mem.remember(np.eye(DIM)).tolist()
    ff.fail["sync"] = range(ff.calls["sync"] + 1, 10**9)
    with pytest.raises(DurabilityError, match="injected I/O error"):
        mem.remember(np.ones((2, DIM)))
    ff.fail = {}                                           # the disk "recovers": the engine still refuses
    for attempt in (lambda: mem.remember(np.ones((1, DIM))), lambda: mem.link(0, 1), lambda: mem.forget(3)):
        with pytest.raises(DurabilityError):
            attempt()
    assert mem.get(0).ids.tolist() == [0] and mem.recall(np.eye(DIM)[5], k=1).ids.tolist() == [5]   # reads go on
    eng.close()
    with engram.Engine(path=tmp_path, workers=0) as eng:
        mem = eng.space("faulty")
        assert mem.get(acked).vectors.tobytes() == np.eye(DIM, dtype=np.float32).tobytes()


def fill_until_full(mem, rng) -> list:
    acked = []
    for _ in range(200):
        try:
            acked += mem.remember(rng.standard_normal((400, 512))).tolist()
        except StorageFullError as e:
            assert "full" in str(e)
            return acked
    pytest.fail("the disk never filled")


FULL_SEGMENT = 64 << 20      # the scenario: one segment open, no room to make the next


def test_a_full_disk_refuses_writes_keeps_reads_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(wal_format, "SEGMENT_BYTES", FULL_SEGMENT)
    ff = FailingFiles()
    eng = engram.Engine(path=tmp_path, dim=512, workers=0, files=ff)
    mem = eng.space("filling")
    ff.space = 1 << 20                              # the open 64 MiB segment is allocated; no room for the next
    acked = fill_until_full(mem, np.random.default_rng(0))
    n = len(mem)
    with pytest.raises(StorageFullError):
        mem.remember(np.ones((1, 512)))
    assert len(mem) == n and mem.get(acked[-1]).ids.tolist() == [acked[-1]]     # refused: nothing changed
    ff.space = None                                 # room again: the writer finds it within a second
    deadline = time.monotonic() + 10
    while True:
        try:
            acked += mem.remember(np.ones((1, 512))).tolist()
            break
        except StorageFullError:
            assert time.monotonic() < deadline, "writes never resumed"
            time.sleep(0.2)
    eng.close()
    with engram.Engine(path=tmp_path, workers=0) as eng:
        assert len(eng.space("filling")) == len(acked)


def test_a_real_full_tmpfs(tmp_path, monkeypatch):
    """The same on a real 72 MiB tmpfs: ENOSPC from the kernel, not from a test layer."""
    monkeypatch.setattr(wal_format, "SEGMENT_BYTES", FULL_SEGMENT)
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=72m", f"engram-{uuid.uuid4().hex[:8]}", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        eng = engram.Engine(path=mnt / "db", dim=512, workers=0)
        acked = fill_until_full(eng.space("filling"), np.random.default_rng(1))
        assert len(eng.space("filling")) == len(acked)
        with pytest.raises(StorageFullError):
            eng.close()                            # the last checkpoint has no room either: said, not hidden
        shutil.copytree(mnt / "db", tmp_path / "copy", ignore=shutil.ignore_patterns("LOCK"))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    with engram.Engine(path=tmp_path / "copy", workers=0) as eng:
        assert len(eng.space("filling")) == len(acked)


def test_checkpoints_while_writers_run_are_consistent(tmp_path):
    eng = engram.Engine(path=tmp_path, dim=DIM, workers=0)
    mem = eng.space("busy")
    stop = threading.Event()
    errors = []

    def write(seed):
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                ids = mem.remember(rng.standard_normal((20, DIM)))
                mem.link(ids[:10], ids[10:], 0.5)
                mem.forget(ids[:2])
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    files = []
    try:
        for _ in range(6):
            time.sleep(0.05)
            files.append(eng.checkpoint())
            snap = snapfile.read(files[-1])
            arrs = snap.spaces[0].arrays
            assert image.check(arrs, DIM) is None
            hot = arrs["hot"]
            next_id, n_live, n_links = arrs["counters"].tolist()
            assert next_id == hot.shape[0] and n_live == int(np.count_nonzero(hot["flags"] == LIVE))
            snap.close()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    n = len(mem)
    eng.close()
    with engram.Engine(path=tmp_path, workers=0) as eng:
        assert len(eng.space("busy")) == n


def test_sigterm_closes_the_engine_cleanly(tmp_path):
    code = textwrap.dedent("""
        import sys, time, numpy as np, engram
        eng = engram.Engine(path=sys.argv[1], dim=4, workers=0)
        eng.space("term").remember(np.ones((25, 4)))
        print(eng.name, flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    name = p.stdout.readline().strip()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == -signal.SIGTERM
    from engram.store.shm import EngineName, segments_of
    assert not segments_of(EngineName.parse(name))
    with engram.Engine(path=tmp_path, workers=0) as eng:
        assert len(eng.space("term")) == 25 and eng.recovery["replayed"] == 0   # checkpointed at the signal



def test_sigterm_while_busy_and_to_a_forked_child(tmp_path):
    """The handler only wakes a thread (it takes no lock the interrupted code may hold):
    SIGTERM during a stream of remembers still closes cleanly, twice over; and a child
    forked after the handler was installed dies of its SIGTERM as by default, without
    waking its parent's close (they share the pipe)."""
    code = textwrap.dedent("""
        import os, signal, sys, time, numpy as np, engram
        eng = engram.Engine(path=sys.argv[1], dim=4, workers=0)
        sp = eng.space("term")
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:              # (a signal before Python's after-fork reset would be dropped)
            os.write(ready_w, b"r")
            time.sleep(60)
            os._exit(3)
        os.read(ready_r, 1)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
        assert sp.remember(np.ones((5, 4))).shape == (5,)       # the parent's engine is still open
        print(eng.name, flush=True)
        try:
            while True:
                sp.remember(np.ones((50, 4)))
        except engram.errors.ClosedError:     # the close has begun: the signal ends us next
            time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    name = p.stdout.readline().strip()
    assert name, "the child's SIGTERM ended the parent"
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    p.send_signal(signal.SIGTERM)           # a second one while closing changes nothing
    assert p.wait(timeout=60) == -signal.SIGTERM
    from engram.store.shm import EngineName, segments_of
    assert not segments_of(EngineName.parse(name))
    with engram.Engine(path=tmp_path, workers=0) as eng:
        assert len(eng.space("term")) >= 5
