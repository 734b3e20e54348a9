"""The owner's worker processes: started on the first recall, supervised, stopped at close.

The owner creates the task board (engram/workers/board.py), the shared record pool,
the hop board of work stealing and the semaphores, then starts N worker processes
(engram/workers/main.py). A client claims a FREE slot, posts its request, wakes a
worker on `work` and waits on the slot's `done` semaphore; it reads the answer from
pool records, gives them back and frees the slot. The owner then records the access,
as for an in-process recall. Threads of the owner and other processes are served in
parallel, one worker each.

A supervisor thread polls the workers: a dead worker's task is put back on the board
once (then it fails with an error naming the worker), and a new worker takes the dead
one's place; a worker that keeps dying at start is given up, and recalls run in the
calling process. Budgets run from the submit time (CLOCK_MONOTONIC is the same clock
in every process), so queueing counts.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import posix_ipc

from engram.store.shm.names import EngineName
from engram.threads import named_thread
from engram.workers import stealing
from engram.workers.board import DONE, FAILED, FREE, READY, TAKEN, TaskBoard, WorkerError, semaphore
from engram.workers.pool import ActivationRecordPool

log = logging.getLogger("engram.workers")
MAX_ATTEMPTS = 2            # a task whose worker dies twice fails
DEFAULT_SLOTS = 64
POLL_S = 0.05
EARLY_DEATH_S = 3.0         # a worker that dies this soon after starting, CRASH_LOOP times running,
CRASH_LOOP = 3              # is not restarted again: recalls then run in the calling process
# the program a worker runs (the engine and the worker id follow); tests start another
# program that wraps this one to inject faults and holds
WORKER_PROGRAM = (sys.executable, "-m", "engram.workers.main")


class WorkerPool:
    """The owner's workers: started on first use, supervised, stopped by close()."""

    def __init__(self, engine: EngineName, dim: int, workers: int, slots: int = DEFAULT_SLOTS):
        self.engine, self.dim, self.size, self.n_slots = engine, dim, workers, slots
        self.board = None
        self.pool = None
        self.hops, self.hop_sems = None, []
        self._splitter = None
        self._stealing = {"min_edges": stealing.MIN_EDGES, "min_batch": 0}
        self.procs: dict = {}
        self._started_at: dict = {}
        self._early: dict = {}
        self.broken = None                    # why workers are no longer used, once they crash-loop
        self._lock = threading.Lock()
        self._closed = False
        self._supervisor = None

    @property
    def started(self) -> bool:
        return self.board is not None

    def splitter(self):
        """The owner's own HopSplitter, so an in-process recall also splits its large hops
        among idle workers; None until the workers are up (or when they are given up)."""
        if self.hops is None or self.broken is not None or not self.board.header["ready"][0]:
            return None
        if self._splitter is None:
            self._splitter = stealing.HopSplitter(self.hops, self.board, self.work, self.hop_sems)
        return self._splitter

    def configure_stealing(self, min_edges: int | None, min_batch: int | None) -> dict:
        """Set what the hop board tells the workers (now, or when it is made)."""
        if min_edges is not None:
            self._stealing["min_edges"] = min_edges
        if min_batch is not None:
            self._stealing["min_batch"] = min_batch
        if self.hops is not None:
            for k, v in self._stealing.items():
                self.hops.header[k] = v
        return {f"steal_{k}": v for k, v in self._stealing.items()}

    def start(self) -> None:
        with self._lock:
            if self.board is not None or self._closed:
                return
            # each request in flight holds k result records and up to 256 primed ones (semantic_keep)
            self.pool = ActivationRecordPool.create(self.engine, capacity=max(1 << 16, self.n_slots * 2048))
            self.board = TaskBoard.create(self.engine, self.n_slots, self.dim, self.size)
            # batches of split hops, for idle workers to take (from another worker's spread
            # or the owner's own): two slots per worker, at least 8 (2.4 MB each, touched
            # only when used: 8 workers take 42 MB of /dev/shm at most)
            self.hops, self.hop_sems = stealing.create_owner_side(self.engine, max(8, 2 * self.size + 2))
            self.configure_stealing(None, None)
            self.work = semaphore(self.engine, "work", create=True)
            self.done = [semaphore(self.engine, f"done{i}", create=True) for i in range(self.n_slots)]
            for w in range(self.size):
                self._spawn(w)
            self._supervisor = named_thread(self._supervise, "engram-supervisor")
            self._supervisor.start()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Start the workers if needed and wait until all of them take tasks."""
        self.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.broken is None:
            if int(self.board.header["ready"][0]) >= self.size:
                return True
            time.sleep(0.01)
        return False

    def _spawn(self, w: int) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])       # where this engram is imported from
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        p = subprocess.Popen([*WORKER_PROGRAM, str(self.engine), str(w)],
                             stdin=subprocess.DEVNULL, env=env, close_fds=True)
        self.procs[w] = p
        self._started_at[w] = time.monotonic()

    def _supervise(self) -> None:
        while not self._closed:
            time.sleep(POLL_S)
            for w, p in list(self.procs.items()):
                if self._closed:
                    return
                if p.poll() is not None:
                    self._worker_died(w, p)

    def _worker_died(self, w: int, p) -> None:
        with self._lock:
            if self._closed or self.procs.get(w) is not p:
                return
            early = time.monotonic() - self._started_at[w] < EARLY_DEATH_S
            self._early[w] = self._early.get(w, 0) + 1 if early else 0
            b = self.board
            if self.hops is not None:
                self.hops.release_dead(p.pid)       # hop batches it offered or held
            for i in np.flatnonzero((b.slots["state"] == TAKEN) & (b.slots["worker"] == w)).tolist():
                if int(b.slots["attempt"][i]) < MAX_ATTEMPTS and b.cas(i, TAKEN, READY):
                    b.count("retried")
                    self.work.release()
                elif b.state(i) == TAKEN:
                    b.fail(i, f"worker {w} (pid {p.pid}) died twice while running this request")
                    self.done[i].release()
            del self.procs[w]
            if p.returncode != 0 and b.header["ready"][0] > len(self.procs):
                b.count("ready", -1)   # it died without saying it left
            if self._early[w] >= CRASH_LOOP:
                self.broken = (f"worker {w} exited {CRASH_LOOP} times within {EARLY_DEATH_S:.0f} s of starting "
                               f"(last exit code {p.returncode}); recalls run in the calling process")
                log.error("engram: %s", self.broken)
                if not self.procs:
                    self._fail_waiting("no worker process is running: " + self.broken)
                return
            log.warning("engram: worker %d (pid %s) exited with %s; starting a new one", w, p.pid, p.returncode)
            b.count("restarts")
            self._spawn(w)

    def _fail_waiting(self, message: str) -> None:
        b = self.board
        for i in np.flatnonzero(np.isin(b.slots["state"], (READY, TAKEN))).tolist():
            st = b.state(i)
            if st in (READY, TAKEN) and b.cas(i, st, FAILED):
                b.fail(i, message)
                self.done[i].release()

    def recall(self, space: str, q: np.ndarray, k: int, spread: bool, budget_ms, cfg, t_begin: int,
               trace_id: int = 0):
        """Ranked result from a worker, or None when every slot is busy (serve in-process)."""
        if not self.started and self.broken is None:
            try:
                self.start()
            except Exception as e:           # cannot spawn here: serve in the calling process
                self.broken = f"the worker processes could not start: {type(e).__name__}: {e}"
                log.error("engram: %s; recalls run in the calling process", self.broken)
                return None
        b = self.board
        if self.broken is not None or b is None or not b.header["ready"][0]:
            return None            # broken, or still starting: the caller serves itself meanwhile
        i = b.claim()
        if i is None:
            return None
        b.post(i, space, q, k, spread, budget_ms, cfg, t_begin, trace_id)
        self.work.release()
        try:
            while True:
                try:
                    self.done[i].acquire(0.5)
                except posix_ipc.BusyError:
                    if self._closed:
                        raise WorkerError("the engine closed while a recall was waiting for a worker") from None
                    # a worker that died between marking the slot DONE and posting leaves no post
                st = b.state(i)
                if st in (DONE, FAILED):
                    break
            if st == FAILED:
                raise WorkerError(b.message(i))
            return b.result(i, self.pool, t_begin, cfg.priming)
        finally:
            b.set_state(i, FREE)

    def stats(self) -> dict:
        if not self.started:
            return {"workers": self.size, "started": False, "broken": self.broken}
        h = self.board.header[0]
        procs = self.procs.copy()        # (one C call: the watcher may replace a dead worker meanwhile)
        alive = sum(p.poll() is None for p in procs.values())
        return {"workers": self.size, "started": True, "alive": alive, "broken": self.broken,
                "submitted": int(h["submitted"]), "completed": int(h["completed"]), "failed": int(h["failed"]),
                "retried": int(h["retried"]), "restarts": int(h["restarts"]),
                "pids": {w: p.pid for w, p in procs.items()}, "pool": self.pool.stats(),
                "hop_batches": self.hops.stats() if self.hops is not None else None}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.board is None:
            return
        self.board.header["stop"] = 1
        for _ in self.procs:
            self.work.release()
        deadline = time.monotonic() + 5
        for p in self.procs.values():
            try:
                p.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(1)
        for s in [self.work, *self.done, *self.hop_sems]:
            s.close()
