"""Work stealing across real worker processes: a recall's hops split into batches
on the shared hop board, gathered by the other worker and merged by the owner,
answer exactly like the numpy reference; a taker that dies holding a batch
costs nothing but time (the owner fires the batch itself, the worker is
replaced); and nothing stays claimed afterwards."""
import time

import numpy as np
import pytest

import engram
from engram import errors
from engram.stealing import FREE

from test_recall_spread import DIM
from test_workers import build, check_against_reference


def stealing_engine(**kw):
    eng = engram.Engine(dim=DIM, workers=2, routing="workers", **kw)
    mem, stored, conf, queries = build(eng)
    eng.start_workers()
    eng.configure_workers(steal_min_edges=1, steal_min_batch=4)   # split every hop of these small spreads
    eng._workers.hops.header["test_wait_ns"] = int(2e9)   # the owner waits for a taker: stealing surely happens
    return eng, mem, stored, conf, queries


def test_split_hops_answer_like_the_numpy_reference():
    eng, mem, stored, conf, queries = stealing_engine()
    with eng:
        check_against_reference(mem, stored, conf, queries[:12])
        s = eng.worker_stats()["hop_batches"]
        assert s["published"] > 0 and s["stolen"] > 0 and s["failed"] == 0
        assert s["stolen"] + s["reclaimed"] == s["published"]
        assert (eng._workers.hops.slots["state"] == FREE).all()
        eng.configure_workers(steal_min_edges=0)      # off: no more batches are offered
        mem.recall(queries[0], k=10, budget_ms=None)
        assert eng.worker_stats()["hop_batches"]["published"] == s["published"]


def test_a_taker_that_dies_holding_a_batch_is_replaced_and_the_answer_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGRAM_WORKER_FAULT", f"exit-in-batch:{tmp_path / 'died'}")
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
        assert (eng._workers.hops.slots["state"] == FREE).all()


def test_configure_workers_refuses_bad_values():
    with engram.Engine(dim=DIM, workers=2) as eng:
        for bad in (-1, 1.5, True, "10", 2**32):
            with pytest.raises(errors.InvalidInputError, match="steal_min_edges"):
                eng.configure_workers(steal_min_edges=bad)
            with pytest.raises(errors.InvalidInputError, match="steal_min_batch"):
                eng.configure_workers(steal_min_batch=bad)
        assert eng.configure_workers(steal_min_batch=64) == {"steal_min_edges": 32768, "steal_min_batch": 64}
    with engram.Engine(dim=DIM, workers=0) as eng:
        with pytest.raises(errors.InvalidInputError, match="without workers"):
            eng.configure_workers(steal_min_edges=10)


def test_the_owners_own_recall_splits_its_hops_among_idle_workers():
    with engram.Engine(dim=DIM, workers=2, routing="auto") as eng:     # a lone caller recalls in-process
        mem, stored, conf, queries = build(eng)
        eng.start_workers()
        eng.configure_workers(steal_min_edges=1, steal_min_batch=4)
        eng._workers.hops.header["test_wait_ns"] = int(2e9)
        res = check_against_reference(mem, stored, conf, queries[:8])
        assert "worker_ms" not in res.timings                # answered in this process
        s = eng.worker_stats()
        assert s["completed"] == 0                            # no request went to a worker ...
        assert s["hop_batches"]["stolen"] > 0                 # ... but they gathered its batches
        assert (eng._workers.hops.slots["state"] == FREE).all()
