"""A recall does not wait for a writer that holds the space's lock: its access update
(last access, count, priming) is deferred to the lock (engram/owned.py: SpaceLock) and
applied when the writer lets go. These tests hold the lock themselves (an injected hold)
or run a stream's ingest beside recalls, and check that every access is applied, once,
and logged; negative controls show the checks fail when accesses are dropped or left
waiting."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import engram
from engram.owned import SpaceLock


def holding(lock, started: threading.Event, release: threading.Event):
    """A thread that holds ``lock`` until ``release`` is set."""
    def run():
        with lock:
            started.set()
            release.wait(10)
    t = threading.Thread(target=run, name="holder")
    t.start()
    assert started.wait(5)
    return t


# ---- SpaceLock ---------------------------------------------------------------------------

def test_a_task_runs_at_once_when_the_lock_is_free():
    lock, ran = SpaceLock(), []
    lock.defer(lambda: ran.append(threading.current_thread().name))
    assert ran == [threading.current_thread().name]
    assert lock.deferred == 0


def test_a_task_waits_for_the_holder_and_the_holder_runs_it_when_it_lets_go():
    lock, ran = SpaceLock(), []
    started, release = threading.Event(), threading.Event()
    t = holding(lock, started, release)
    t0 = time.monotonic()
    lock.defer(lambda: ran.append(threading.current_thread().name))
    assert time.monotonic() - t0 < 0.5          # did not wait for the holder
    assert ran == [] and lock.deferred == 1
    release.set()
    t.join(5)
    assert ran == ["holder"] and lock.deferred == 0


def raw_hold(lock, during):
    """Hold ``lock``'s inner lock in another thread (so nothing runs tasks at its release)
    while ``during()`` runs here."""
    held, done = threading.Event(), threading.Event()

    def run():
        lock._lock.acquire()
        held.set()
        done.wait(10)
        lock._lock.release()
    t = threading.Thread(target=run)
    t.start()
    assert held.wait(5)
    try:
        during()
    finally:
        done.set()
        t.join(5)


def test_the_next_holder_runs_deferred_tasks_before_its_own_work():
    lock, seen = SpaceLock(), []
    raw_hold(lock, lambda: lock.defer(lambda: seen.append("task")))
    assert seen == [] and lock.deferred == 1
    with lock:
        seen.append("work")
    assert seen == ["task", "work"]


class _HookedRLock:
    """An RLock that runs ``before_release`` just before its outermost release: a task
    deferred there is queued after the holder's last run, while the lock is still held."""

    def __init__(self, before_release):
        self._l, self._before, self._depth = threading.RLock(), before_release, 0

    def acquire(self, blocking=True, timeout=-1):
        ok = self._l.acquire(blocking, timeout)
        self._depth += ok
        return ok

    def release(self):
        self._depth -= 1
        if self._depth == 0 and self._before is not None:
            before, self._before = self._before, None
            before()
        self._l.release()


def _defer_from_another_thread(lock, ran):
    def hook():
        t = threading.Thread(target=lambda: lock.defer(lambda: ran.append("late")))
        t.start()
        t.join(5)             # it finds the lock held and returns without running the task
    return hook


def test_a_task_deferred_while_the_holder_lets_go_is_not_stranded():
    lock, ran = SpaceLock(), []
    lock._lock = _HookedRLock(_defer_from_another_thread(lock, ran))
    with lock:
        pass
    assert ran == ["late"] and lock.deferred == 0


def test_negative_control_without_the_check_after_release_a_task_is_stranded():
    class NoRecheck(SpaceLock):
        def release(self):
            if self._depth == 1 and self._tasks:
                self._run()
            self._depth -= 1
            self._lock.release()

    lock, ran = NoRecheck(), []
    lock._lock = _HookedRLock(_defer_from_another_thread(lock, ran))
    with lock:
        pass
    assert ran == [] and lock.deferred == 1      # what the test above would catch


def test_past_the_limit_defer_waits_for_the_lock_and_nothing_is_dropped():
    lock, ran = SpaceLock(limit=2), []
    started, release = threading.Event(), threading.Event()
    t = holding(lock, started, release)
    lock.defer(lambda: ran.append(1))
    lock.defer(lambda: ran.append(2))
    third = threading.Thread(target=lambda: lock.defer(lambda: ran.append(3)))
    third.start()
    third.join(0.3)
    assert third.is_alive() and ran == []       # the third waits for the holder
    release.set()
    t.join(5)
    third.join(5)
    assert ran == [1, 2, 3] and lock.deferred == 0


def test_a_failing_task_is_logged_and_does_not_fail_the_holder(caplog):
    lock, ran = SpaceLock(), []
    raw_hold(lock, lambda: (lock.defer(lambda: 1 / 0), lock.defer(lambda: ran.append("next"))))
    with lock:
        ran.append("work")
    assert ran == ["next", "work"]
    assert "deferred update failed" in caplog.text


def test_reentrant_holds_run_tasks_only_at_the_outermost_release():
    lock, ran = SpaceLock(), []
    with lock:
        with lock:
            t = threading.Thread(target=lambda: lock.defer(lambda: ran.append("t")))
            t.start()
            t.join(5)
        assert ran == []
    assert ran == ["t"]


# ---- a space ---------------------------------------------------------------------------

def _space(eng, n=200, dim=16, seed=0):
    mem = eng.space()
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    mem.remember(v)
    return mem, v


def test_a_recall_does_not_wait_for_a_writer_and_its_access_shows_when_the_writer_lets_go():
    with engram.Engine(dim=16, workers=0) as eng:
        mem, v = _space(eng)
        started, release = threading.Event(), threading.Event()
        t = holding(mem._lock, started, release)       # a writer (say, an ingest batch) holds the lock
        t0 = time.monotonic()
        res = mem.recall(v[3], k=1, spread=False)
        assert time.monotonic() - t0 < 0.5
        assert res.ids.tolist() == [3]
        assert mem.get(3).access_count[0] == 0          # not yet: the writer holds the lock
        release.set()
        t.join(5)
        assert mem.get(3).access_count[0] == 1          # applied when it let go
        assert mem.get(3).last_access_ns[0] >= mem.get(3).created_ns[0]


def recall_during_ingest(mem, v, dim, recalls: int, seconds_max: float = 20.0):
    """Recall ``recalls`` times while a stream ingests as fast as it can; returns how often
    each id was returned (the ingest is flushed before returning)."""
    st = mem.stream()
    stop = threading.Event()
    rng = np.random.default_rng(1)
    batch = rng.standard_normal((500, dim)).astype(np.float32)

    def produce():
        while not stop.is_set():
            try:
                st.put(batch)
            except engram.errors.OverloadError as e:
                time.sleep(min(e.retry_after, 0.01))

    p = threading.Thread(target=produce)
    p.start()
    counts = np.zeros(v.shape[0], np.int64)
    t_end = time.monotonic() + seconds_max
    try:
        for i in range(recalls):
            res = mem.recall(v[i % v.shape[0]], k=5)
            np.add.at(counts, res.ids[res.ids < v.shape[0]], 1)
            if time.monotonic() > t_end:
                break
    finally:
        stop.set()
        p.join(10)
        st.flush(30)
    return counts


def check_accesses(mem, counts, n):
    got = mem.get(np.arange(n)).access_count.astype(np.int64)
    assert mem._lock.deferred == 0
    np.testing.assert_array_equal(got, counts)


def test_accesses_recorded_during_a_concurrent_ingest_are_all_applied_and_logged(tmp_path, monkeypatch):
    by_ingest = []
    run = SpaceLock._run

    def counting_run(self):
        if threading.current_thread().name.startswith("engram-ingest"):
            by_ingest.append(len(self._tasks))
        run(self)
    monkeypatch.setattr(SpaceLock, "_run", counting_run)
    dim, n = 16, 300
    with engram.Engine(path=tmp_path / "e", dim=dim, workers=0) as eng:
        mem, v = _space(eng, n, dim)
        counts = recall_during_ingest(mem, v, dim, recalls=300)
        assert counts.sum() > 0
        assert sum(by_ingest) > 0           # some recalls found the ingest worker holding the lock
        check_accesses(mem, counts, n)
        assert len(mem) > n                                   # the ingest ran beside the recalls
    with engram.Engine(path=tmp_path / "e", workers=0) as eng:   # the accesses were logged
        check_accesses(eng.space(), counts, n)


def test_negative_control_accesses_dropped_while_a_writer_holds_the_lock_are_caught(monkeypatch):
    """The check above fails if a recall drops its access when the lock is busy."""
    def drop_when_busy(self, task):
        if self._lock.acquire(blocking=False):
            self._lock.release()
            with self:
                task()

    dim, n = 16, 300
    with engram.Engine(dim=dim, workers=0) as eng:
        mem, v = _space(eng, n, dim)
        monkeypatch.setattr(SpaceLock, "defer", drop_when_busy)
        started, release = threading.Event(), threading.Event()
        t = holding(mem._lock, started, release)
        counts = np.zeros(n, np.int64)
        res = mem.recall(v[7], k=1, spread=False)       # the writer holds the lock: dropped
        np.add.at(counts, res.ids, 1)
        release.set()
        t.join(5)
        with pytest.raises(AssertionError):
            check_accesses(mem, counts, n)


def test_priming_recorded_while_a_writer_holds_the_lock_is_applied():
    with engram.Engine(dim=16, workers=0) as eng:
        mem, v = _space(eng)
        rng = np.random.default_rng(3)
        src, dst = rng.integers(0, 200, 800), rng.integers(0, 200, 800)
        keep = src != dst
        mem.link(src[keep], dst[keep], 0.8)
        mem.compact()
        mem.configure_recall(priming=True)
        started, release = threading.Event(), threading.Event()
        t = holding(mem._lock, started, release)
        mem.recall(v[5], k=5, budget_ms=None)
        before = mem._store.hot()["activation"].copy()
        release.set()
        t.join(5)
        after = mem._store.hot()["activation"]
        assert (before == 0).all() and (after > 0).any()   # semantic residuals, applied at release


# ---- coalesced STATE records -------------------------------------------------------------

CRASH_AFTER_RECALLS = textwrap.dedent("""
    import sys, time, numpy as np, engram
    from engram import persistence
    from engram.store import mutations
    if sys.argv[2] == "no-tick":           # the negative control: nothing logs the waiting updates
        persistence.Persistence._flush_states = lambda self, older_than=None: None
        mutations.STATE_COALESCE_S = 3600.0     # (nor a slow machine's last recall, 50 ms after the first)
    eng = engram.Engine(path=sys.argv[1], dim=16, workers=0)
    mem = eng.space()
    v = np.random.default_rng(0).standard_normal((60, 16)).astype(np.float32)
    mem.remember(v)
    eng.save()
    for i in range(40):                    # within a few ms: their updates wait for company
        mem.recall(v[i], k=1, spread=False)
    print("recalled", flush=True)
    time.sleep(60)
""")


def state_records(path) -> int:
    from engram.store.wal import RecordType, recover
    got = []
    recover(path / "wal", 0, lambda lsn, seq, space, rtype, flags, body: got.append(rtype))
    return got.count(RecordType.STATE)


@pytest.mark.parametrize("mode", ["tick", "no-tick"])
def test_recalls_access_updates_share_a_record_and_reach_the_log_when_recalls_stop(tmp_path, mode):
    """Each recall's access update (a STATE record) waits up to STATE_COALESCE_S for
    others, so a stream of recalls logs one record per 50 ms instead of one each (each cost
    a recall ~25 us); when recalls stop, the persistence thread's tick logs what waits, so
    a kill -9 a second later loses none of the 40 recalls' updates. Without the tick (the
    negative control) they wait for a recall that never comes, and the crash loses them."""
    p = subprocess.Popen([sys.executable, "-c", CRASH_AFTER_RECALLS, str(tmp_path), mode],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "recalled"
        time.sleep(1.0)          # past the wait (50 ms), the tick (50 ms) and the log's linger (50 ms)
        records = state_records(tmp_path)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    with engram.Engine(path=tmp_path, workers=0) as eng:
        counts = eng.space().get(np.arange(40)).access_count
    if mode == "tick":
        assert counts.tolist() == [1] * 40
        assert 1 <= records <= 20, records        # 40 recalls: one record per 50 ms, not one each
    else:
        assert counts.tolist() == [0] * 40 and records == 0
