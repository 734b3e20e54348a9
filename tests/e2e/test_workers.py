"""Recall served by real worker processes: same answers as the numpy reference and
as in-process recall, concurrent callers, a worker killed mid-request, a worker
that cannot start, and nothing left behind by close() or by a killed owner."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from test_recall_spread import DIM, N, csr_of, reference_recall

import engram
from engram import errors
from engram.store import shm
from engram.store.shm.names import EngineName, pid_alive, segments_of, semaphores_of
from engram.workers.supervisor import TAKEN, WorkerError


def inject_worker_faults(monkeypatch, fault: str) -> None:
    """Workers of engines made from now on run tests/e2e/faulty_worker.py with ``fault``."""
    from engram.workers import supervisor
    here = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setenv("PYTHONPATH", here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(supervisor, "WORKER_PROGRAM", (sys.executable, "-m", "faulty_worker", fault))


def build(eng, seed=11):
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((N, DIM)).astype(np.float32)
    src = rng.integers(0, N, 3000)
    dst = (src + rng.integers(1, 6, 3000)) % N
    conf = rng.uniform(0.5, 1.0, N).astype(np.float32)
    mem = eng.space("workers-test")
    mem.remember(vecs[:400], confidence=conf[:400])
    mem.remember(vecs[400:], confidence=conf[400:], tier="warm")
    mem.link(src, dst, rng.uniform(0.3, 1.0, 3000).astype(np.float32))
    mem.compact()
    stored = vecs.copy()
    stored[400:] = stored[400:].astype(np.float16).astype(np.float32)
    queries = vecs[rng.integers(0, N, 60)] + 0.5 * rng.standard_normal((60, DIM)).astype(np.float32)
    return mem, stored, conf, queries


@pytest.fixture
def served():
    with engram.Engine(dim=DIM, workers=2, routing="workers") as eng:
        mem, stored, conf, queries = build(eng)
        eng.start_workers()
        yield eng, mem, stored, conf, queries


def check_against_reference(mem, stored, conf, queries):
    """Each recall equals the numpy reference: ids, activations, scores and hops."""
    o, t, w = csr_of(mem)
    for q in queries:
        res = mem.recall(q, k=10, budget_ms=None)
        ids, act, hops, score = reference_recall(stored.astype(np.float64), conf, o, t, w, q.astype(np.float64), 10)
        assert res.ids.tolist() == ids.tolist()
        np.testing.assert_allclose(res.activation, act, atol=1e-6)
        np.testing.assert_allclose(res.scores, score, rtol=1e-5, atol=1e-6)
        assert res.hops.tolist() == hops.astype(int).tolist()
    return res


def test_workers_answer_like_the_numpy_reference(served):
    eng, mem, stored, conf, queries = served
    res = check_against_reference(mem, stored, conf, queries[:30])
    assert "worker_ms" in res.timings and res.spreading["worker"] in (0, 1)
    s = eng.worker_stats()
    assert s["completed"] >= 30 and s["failed"] == 0 and s["alive"] == 2
    assert s["pool"]["in_use"] == 0 and s["pool"]["acquired"] == s["pool"]["released"]


def test_concurrent_callers_get_the_in_process_answers(served):
    eng, mem, stored, conf, queries = served
    with engram.Engine(dim=DIM, workers=0) as local_eng:
        local = build(local_eng)[0]
        want = [local.recall(q, k=8, budget_ms=None) for q in queries]
    got = [None] * len(queries)
    errs = []

    def client(c):
        try:
            for i in range(c, len(queries), 4):
                got[i] = mem.recall(queries[i], k=8, budget_ms=None)
        except Exception as e:        # surfaced below
            errs.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errs, errs
    for g, w in zip(got, want):
        assert g.ids.tolist() == w.ids.tolist()
        np.testing.assert_allclose(g.activation, w.activation, atol=1e-6)
        assert g.content == w.content
    served_by = {g.spreading.get("worker") for g in got}
    assert served_by <= {0, 1} and len(served_by) == 2          # both workers took requests


def test_auto_routing_sends_concurrent_callers_to_workers():
    with engram.Engine(dim=DIM, workers=2) as eng:
        mem, stored, conf, queries = build(eng)
        eng.start_workers()
        lone = mem.recall(queries[0], k=5)
        assert "worker_ms" not in lone.timings               # a lone caller recalls in its own thread
        done = []
        threads = [threading.Thread(target=lambda: done.extend(mem.recall(q, k=5) for q in queries))
                   for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert len(done) == 3 * len(queries)
        assert eng.worker_stats()["completed"] > 0


def test_a_worker_killed_mid_request_is_replaced_and_the_request_retried(monkeypatch, tmp_path):
    # a worker holds each request until the file exists, which it does only after the
    # kill: the kill lands mid-request, however slow the machine
    release = tmp_path / "release"
    inject_worker_faults(monkeypatch, f"hold-until:{release}")
    with engram.Engine(dim=DIM, workers=2, routing="workers") as eng:
        mem, stored, conf, queries = build(eng)
        with engram.Engine(dim=DIM, workers=0) as local_eng:
            want = build(local_eng)[0].recall(queries[0], k=10, budget_ms=None)
        eng.start_workers()
        _kill_one_mid_request(eng, mem, queries, want, release)


def _kill_one_mid_request(eng, mem, queries, want, release):
    board = eng._life.workers.board
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("res", mem.recall(queries[0], k=10, budget_ms=None)))
    th.start()
    deadline = time.monotonic() + 10
    victim = None
    while time.monotonic() < deadline and victim is None:
        taken = np.flatnonzero(board.slots["state"] == TAKEN)
        if taken.size and board.slots["worker_pid"][taken[0]]:
            victim = int(board.slots["worker_pid"][taken[0]])
        time.sleep(0.005)
    assert victim, "no worker took the request"
    os.kill(victim, signal.SIGKILL)
    release.touch()                                # the retry may run now
    th.join(30)
    assert not th.is_alive(), "the retried request was not answered"
    res = out["res"]
    assert res.ids.tolist() == want.ids.tolist()
    s = eng.worker_stats()
    assert s["retried"] == 1 and s["restarts"] == 1 and s["failed"] == 0
    assert victim not in s["pids"].values()
    deadline = time.monotonic() + 20
    while eng.worker_stats()["alive"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert eng.worker_stats()["alive"] == 2
    assert mem.recall(queries[1], k=3).ids.size == 3


def test_workers_that_cannot_start_leave_recall_in_process(monkeypatch):
    inject_worker_faults(monkeypatch, "exit-at-start")
    with engram.Engine(dim=DIM, workers=1, routing="workers") as eng:
        mem, stored, conf, queries = build(eng)
        with pytest.raises(WorkerError, match="exited 3 times"):
            eng.start_workers(timeout=60)
        res = mem.recall(queries[0], k=5)                    # served in-process
        assert len(res) == 5 and "worker_ms" not in res.timings
        assert eng.worker_stats()["broken"]


def test_close_leaves_no_process_segment_or_semaphore():
    eng = engram.Engine(dim=DIM, workers=2, routing="workers")
    build(eng)
    eng.start_workers()
    pids = list(eng.worker_stats()["pids"].values())
    name = EngineName.parse(eng.name)
    assert semaphores_of(name) and segments_of(name)
    eng.close()
    for p in pids:
        assert not pid_alive(p) or _zombie(p)
    assert not semaphores_of(name) and not segments_of(name)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except OSError:
        return True


def test_workers_exit_when_their_owner_is_killed():
    code = textwrap.dedent("""
        import sys, time, numpy as np, engram
        eng = engram.Engine(dim=8, workers=2)
        eng.space("owner-test").remember(np.ones((3, 8)))
        eng.start_workers()
        print(eng.name, *eng.worker_stats()["pids"].values(), flush=True)
        time.sleep(120)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        name, *pids = p.stdout.readline().split()
        pids = [int(x) for x in pids]
        assert len(pids) == 2 and all(pid_alive(x) for x in pids)
        p.kill()
        p.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(pid_alive(x) and not _zombie(x) for x in pids):
            time.sleep(0.1)
        assert not any(pid_alive(x) and not _zombie(x) for x in pids), "workers outlived their owner"
        eng = EngineName.parse(name)
        # the next Engine() anywhere (here: this call, or another test's engine running
        # in parallel) removes the dead owner's segments and semaphores
        shm.cleanup_stale()
        assert not segments_of(eng) and not semaphores_of(eng)
    finally:
        if p.poll() is None:
            p.kill()


def test_bad_routing_is_refused():
    with pytest.raises(errors.InvalidInputError, match="routing"):
        engram.Engine(dim=DIM, routing="sometimes")


def test_spreading_metrics_are_summed_over_owner_and_workers_in_shared_memory(served):
    eng, mem, stored, conf, queries = served
    before = eng.spreading_metrics()["spreads"]
    for q in queries[:40]:
        mem.recall(q, k=5, budget_ms=None)
    with engram.Engine(dim=DIM, workers=0) as other:           # the owner's own slot counts too
        m2 = build(other)[0]
        m2.recall(queries[0], k=5)
        assert other.spreading_metrics()["spreads"] == 1
    s = eng.spreading_metrics()
    assert s["spreads"] - before == 40
    from engram.observe.hwcounters import probe
    if probe()[0]:
        assert s["engram_spreading_cache_miss_rate"] is None or 0 <= s["engram_spreading_cache_miss_rate"] <= 1
    else:
        assert s["engram_spreading_cache_miss_rate"] == "not supported"
    assert 0 <= s["engram_spreading_pool_utilization"] <= 1 and s["pool_high_water_mark"] >= 5
    assert 0 < s["activation_pool_hit_rate"] <= 1
    # the counts live in shared memory: another process reads the same sums
    from engram.observe.metrics.segment import MetricsSegment
    from engram.observe.metrics.spreading import summary
    seen = summary(MetricsSegment.attach(EngineName.parse(eng.name)))
    assert seen["spreads"] == s["spreads"]


@pytest.mark.slow
def test_soak_recalls_through_workers_return_the_pool_to_its_start():
    """Many recalls through the workers (20,000 locally; CI runs a bounded 3,000; the
    pool alone is soaked with 100,000 in tests/spreading/test_pool.py): the record
    pool ends where it started and allocations stay bounded by the caches."""
    count = 3_000 if os.environ.get("CI") else 20_000
    with engram.Engine(dim=DIM, workers=2, routing="workers") as eng:
        mem, stored, conf, queries = build(eng)
        eng.start_workers()
        for i in range(count):
            mem.recall(queries[i % len(queries)], k=5)
        s = eng.worker_stats()
        p = s["pool"]
        assert s["completed"] >= count and s["failed"] == 0
        assert p["in_use"] == 0 and p["acquired"] == p["released"] == 5 * s["completed"]
        assert p["allocations"] <= 2 * 256 + 64 and p["hit_rate"] > 0.9


def test_workers_take_the_oldest_request_first():
    """A request in a high slot must not starve behind newer ones in lower slots."""
    from engram.workers.pool import ActivationRecordPool  # noqa: F401  (the C library is loaded)
    from engram.workers.supervisor import FREE, READY, TaskBoard
    name = EngineName.new()
    board = TaskBoard.create(name, slots=8, dim=4, workers=1)
    try:
        for i, seq in [(6, 1), (1, 5), (3, 2), (0, 9)]:
            board.slots["seq"][i] = seq
            board.set_state(i, READY)
        assert [board.take() for _ in range(5)] == [6, 3, 1, 0, None]
        assert board.claim() in {2, 4, 5, 7} and (board.slots["state"] == FREE).sum() == 3
    finally:
        board.seg.unlink(board.seg.name)


def test_a_machine_that_cannot_spawn_workers_still_recalls(monkeypatch):
    import engram.workers.supervisor as w
    monkeypatch.setattr(w, "WORKER_PROGRAM", ("/nonexistent/python", "-m", "engram.workers.main"))
    with engram.Engine(dim=DIM, workers=2, routing="workers") as eng:
        mem, stored, conf, queries = build(eng)
        res = mem.recall(queries[0], k=5)                  # served in the calling process
        assert len(res) == 5 and "worker_ms" not in res.timings
        s = eng.worker_stats()
        assert "could not start" in s["broken"] and "FileNotFoundError" in s["broken"]
        assert len(mem.recall(queries[1], k=5)) == 5
