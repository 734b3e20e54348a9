"""Work stealing across real worker processes: a recall's hops split into batches
on the shared hop board, gathered by the other worker and merged by the owner,
answer exactly like the numpy reference and like an in-process recall; stealing
happens under real load, with no wait forced; a taker that dies holding a batch
costs nothing but time (the owner fires the batch itself, the worker is
replaced); and nothing stays claimed afterwards. Faults are injected by running
the workers as tests/e2e/faulty_worker.py."""
import os
import time

import numpy as np
import pytest
from test_recall_spread import DIM
from test_workers import build, check_against_reference, inject_worker_faults

import engram
from engram import errors
from engram.workers.stealing import FREE


def stealing_engine(routing="workers"):
    eng = engram.Engine(dim=DIM, workers=2, routing=routing)
    mem, stored, conf, queries = build(eng)
    eng.start_workers()
    eng.configure_workers(steal_min_edges=1, steal_min_batch=4)   # split every hop of these small spreads
    return eng, mem, stored, conf, queries


def loaded(routing: str):
    """Engines with and without workers over one graph whose hops take milliseconds
    (20K memories x 12 links, threshold 0): idle workers have time to take batches."""
    rng = np.random.default_rng(5)
    n, d = 20000, 8
    vecs = rng.standard_normal((n, d)).astype(np.float32)
    src = np.repeat(np.arange(n), 12)
    dst = rng.integers(0, n, src.shape[0])
    w = rng.uniform(0.2, 1.0, src.shape[0]).astype(np.float32)
    engines = []
    for workers in (2, 0):
        eng = engram.Engine(dim=d, workers=workers, routing=routing)
        mem = eng.space("load")
        mem.remember(vecs)
        mem.link(src, dst, w)
        mem.compact()
        mem.configure_recall(threshold=0.0, fan="none")
        engines.append((eng, mem))
    return engines


def steal_under_load(routing: str) -> dict:
    """Recall until idle workers have gathered batches (at most 40 recalls); each answer
    equals the in-process one. Returns the hop board's counters."""
    (eng, mem), (local_eng, local) = loaded(routing)
    with eng, local_eng:
        eng.start_workers()
        eng.configure_workers(steal_min_edges=4096)
        rng = np.random.default_rng(1)
        for i in range(40):
            q = rng.standard_normal(8).astype(np.float32)
            got, want = mem.recall(q, k=10, budget_ms=None), local.recall(q, k=10, budget_ms=None)
            assert got.ids.tolist() == want.ids.tolist()
            np.testing.assert_allclose(got.activation, want.activation, rtol=1e-5, atol=1e-6)
            if eng.worker_stats()["hop_batches"]["stolen"] and i >= 3:
                break
        s = eng.worker_stats()
        assert (eng._life.workers.hops.slots["state"] == FREE).all()
        return s


def test_under_real_load_idle_workers_take_batches_of_a_workers_hops():
    s = steal_under_load("workers")
    b = s["hop_batches"]
    assert b["published"] > 0 and b["stolen"] > 0 and b["failed"] == 0, b
    assert b["stolen"] + b["reclaimed"] == b["published"]
    assert s["completed"] > 0                                # the recalls ran in a worker


def test_under_real_load_idle_workers_take_batches_of_the_owners_own_recall():
    s = steal_under_load("auto")                            # a lone caller recalls in-process
    assert s["completed"] == 0                               # no request went to a worker ...
    assert s["hop_batches"]["stolen"] > 0                    # ... but they gathered its batches


def test_split_hops_answer_like_the_numpy_reference():
    eng, mem, stored, conf, queries = stealing_engine()
    with eng:
        check_against_reference(mem, stored, conf, queries[:12])
        s = eng.worker_stats()["hop_batches"]
        assert s["published"] > 0 and s["failed"] == 0
        assert s["stolen"] + s["reclaimed"] == s["published"]
        assert (eng._life.workers.hops.slots["state"] == FREE).all()
        eng.configure_workers(steal_min_edges=0)      # off: no more batches are offered
        mem.recall(queries[0], k=10, budget_ms=None)
        assert eng.worker_stats()["hop_batches"]["published"] == s["published"]


def test_a_taker_that_dies_holding_a_batch_is_replaced_and_the_answer_is_unchanged(tmp_path, monkeypatch):
    inject_worker_faults(monkeypatch, f"wait-takers:2,exit-in-batch:{tmp_path / 'died'}")
    eng, mem, stored, conf, queries = stealing_engine()
    with eng:
        check_against_reference(mem, stored, conf, queries[:6])
        assert (tmp_path / "died").exists(), "no taker took a batch"
        s = eng.worker_stats()
        assert s["hop_batches"]["failed"] >= 1 and s["failed"] == 0
        deadline = time.monotonic() + 20          # the supervisor counts the restart on its next poll
        while eng.worker_stats()["restarts"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert eng.worker_stats()["restarts"] >= 1
        assert (eng._life.workers.hops.slots["state"] == FREE).all()


def test_configure_workers_refuses_bad_values():
    with engram.Engine(dim=DIM, workers=2) as eng:
        for bad in (-1, 1.5, True, "10", 2**32):
            with pytest.raises(errors.InvalidInputError, match="steal_min_edges"):
                eng.configure_workers(steal_min_edges=bad)
            with pytest.raises(errors.InvalidInputError, match="steal_min_batch"):
                eng.configure_workers(steal_min_batch=bad)
        assert eng.configure_workers(steal_min_batch=64) == {"steal_min_edges": 32768, "steal_min_batch": 64}
    with engram.Engine(dim=DIM, workers=0) as eng, pytest.raises(errors.InvalidInputError, match="without workers"):
        eng.configure_workers(steal_min_edges=10)


def test_a_taker_too_slow_has_its_batch_revoked_and_frees_the_slot_later(tmp_path, monkeypatch):
    # the owner waits 0.3 s for takers, then 1 s for a taken batch: less than the stalled taker's 3 s
    inject_worker_faults(monkeypatch, f"wait-takers:0.3,stall-in-batch:{tmp_path / 'stalled'}")
    eng, mem, stored, conf, queries = stealing_engine()
    with eng:
        check_against_reference(mem, stored, conf, queries[:4])      # waits at most 1 s, then fires it itself
        assert (tmp_path / "stalled").exists(), "no taker took a batch"
        assert eng.worker_stats()["hop_batches"]["failed"] >= 1
        deadline = time.monotonic() + 10                               # the stalled taker frees its slot
        while not (eng._life.workers.hops.slots["state"] == FREE).all() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (eng._life.workers.hops.slots["state"] == FREE).all()


def test_a_slot_is_taken_over_only_when_its_holders_are_dead():
    from engram.workers.stealing import FILLING, READY, TAKEN, held
    dead = subprocess_pid_that_exited()
    with engram.Engine(dim=DIM, workers=1) as eng:
        eng.start_workers()
        hops, me, alive = eng._life.workers.hops, os.getpid(), os.getppid()
        hops.slots["owner_pid"] = alive
        hops.slots["state"] = READY                                   # every slot held by a live owner
        hops.slots["owner_pid"][0] = dead
        hops.slots["state"][0] = held(FILLING, alive)                 # a live owner filling it, over a dead one's pid
        assert hops.claim(me) is None
        hops.slots["state"][0] = held(TAKEN, dead)                    # its taker died, its owner too: orphaned
        assert hops.claim(me) == 0 and hops.state(0) == held(FILLING, me)
        hops.slots["state"][1] = held(TAKEN, dead)                    # taker dead, owner alive: the owner's call
        assert hops.claim(me) is None
        hops.slots["owner_pid"][2] = dead                             # an offer whose owner died
        assert hops.release_dead(dead) == 1 and hops.state(2) == 0
        hops.slots["state"] = 0


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_an_error_mid_hop_leaves_no_slot_held(monkeypatch):
    import faulty_worker

    from engram.kernels.spreadrun import SpreadRun
    faulty_worker.inject("wait-takers:2", monkeypatch.setattr)      # this process waits for takers
    eng, mem, stored, conf, queries = stealing_engine(routing="auto")     # the hop is split in this process
    with eng:
        real = SpreadRun.merge
        monkeypatch.setattr(SpreadRun, "merge", lambda self, v, s: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(Exception, match="boom"):
            mem.recall(queries[0], k=10, budget_ms=None)
        monkeypatch.setattr(SpreadRun, "merge", real)
        from engram.workers.stealing import REVOKED, STATE_MASK, TAKEN
        hops = eng._life.workers.hops
        held_by_taker = lambda: np.isin(hops.slots["state"] & STATE_MASK, (TAKEN, REVOKED))
        deadline = time.monotonic() + 10                              # takers finish what they held
        while held_by_taker().any() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not held_by_taker().any(), "a taker still holds a batch"
        kind = hops.slots["state"] & STATE_MASK
        left = kind != FREE                                           # done batches nobody will merge:
        assert (hops.slots["owner_pid"][left] == 0).all()             # ownerless, for the next claim
        check_against_reference(mem, stored, conf, queries[1:3])      # later offers take over what is left
        deadline = time.monotonic() + 10
        while not (eng._life.workers.hops.slots["state"] == FREE).all() and time.monotonic() < deadline:
            mem.recall(queries[3], k=10, budget_ms=None)
        assert (eng._life.workers.hops.slots["state"] == FREE).all()
