"""Worker processes: recalls served by N processes attached to the engine.

The owner keeps a task board in shared memory (a TaskBoardHeader, TaskSlot[slots]
and one query row per slot; see engram/layout/schema.py) and N worker processes,
started on the first recall. A request:

    client   claims a FREE slot (compare-exchange FREE -> FILLING), writes the query,
             its settings and the submit time, marks it READY, posts the `work`
             semaphore, and waits on the slot's `done` semaphore
    worker   wakes on `work`, takes a READY slot (READY -> TAKEN), runs the same
             recall pipeline as in-process (engram/recall.py) on its read-only view
             of the space, writes the ranked answer into activation records from
             the shared ActivationRecordPool, marks the slot DONE, posts `done`
    client   reads the records, releases them to the pool, frees the slot; the
             owner then records the access, as for an in-process recall

Threads of the owner and other processes are served in parallel, one worker each.
A supervisor thread in the owner polls the workers: a dead worker's task is put
back on the board once (then it fails with an error naming the worker), and a new
worker takes the dead one's place. Budgets run from the submit time
(CLOCK_MONOTONIC is the same clock in every process), so queueing counts.
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

from . import stealing
from .board import SlotBoard
from .errors import EngramError
from .layout import TASK_BOARD_HEADER_DTYPE, TASK_SLOT_DTYPE, schema
from .pool import ActivationRecordPool
from .spreading_metrics import SpreadingRecorder
from .shm.names import EngineName, pid_alive
from .shm.segment import Segment, align_up

log = logging.getLogger("engram.workers")
C = schema.CONSTANTS
FREE, FILLING, READY, TAKEN, DONE, FAILED = (C[f"TASK_{s}"] for s in
                                            ("FREE", "FILLING", "READY", "TAKEN", "DONE", "FAILED"))
NIL = C["NIL"]
KIND_RECALL = 1
FLAG_SPREAD, FLAG_BUDGET = 1, 2
STATUS_PARTIAL, STATUS_FALLBACK = 1, 2
CONFIG_FLOATS = 32          # recall settings travel beside the query (RecallConfig.to_vector)
MAX_ATTEMPTS = 2            # a task whose worker dies twice fails
DEFAULT_SLOTS = 64
POLL_S = 0.05
EARLY_DEATH_S = 3.0         # a worker that dies this soon after starting, CRASH_LOOP times running,
CRASH_LOOP = 3              # is not restarted again: recalls then run in the calling process


class WorkerError(EngramError):
    """A worker could not answer: it died (twice) while running the request, or it failed."""


def _config_vector(cfg) -> np.ndarray:
    v = cfg.to_vector()
    if len(v) > CONFIG_FLOATS:
        raise AssertionError(f"recall settings outgrew CONFIG_FLOATS ({len(v)} > {CONFIG_FLOATS})")
    return np.array(v + [0.0] * (CONFIG_FLOATS - len(v)), np.float64)


def _config_from(v: np.ndarray):
    from .recall import RecallConfig
    return RecallConfig.from_vector(v)


class TaskBoard(SlotBoard):
    """The task board segment: requests in slots, states changed by atomics (SlotBoard)."""

    def __init__(self, seg: Segment):
        self.seg = seg
        header = seg.array(0, TASK_BOARD_HEADER_DTYPE, 1)
        n = int(header["slots"][0])
        self.dim = int(header["dim"][0])
        off = align_up(TASK_BOARD_HEADER_DTYPE.itemsize)
        slots = seg.array(off, TASK_SLOT_DTYPE, n)
        off = align_up(off + n * TASK_SLOT_DTYPE.itemsize)
        self.queries = seg.array(off, np.float32, n * self.dim, shape=(n, self.dim))
        off = align_up(off + n * self.dim * 4)
        self.configs = seg.array(off, np.float64, n * CONFIG_FLOATS, shape=(n, CONFIG_FLOATS))
        super().__init__(header, slots, ("submitted", "completed", "failed", "retried", "restarts", "ready"))

    @staticmethod
    def size(slots: int, dim: int) -> int:
        return (align_up(TASK_BOARD_HEADER_DTYPE.itemsize) + align_up(slots * TASK_SLOT_DTYPE.itemsize)
                + align_up(slots * dim * 4) + slots * CONFIG_FLOATS * 8)

    @classmethod
    def create(cls, engine: EngineName, slots: int, dim: int, workers: int) -> "TaskBoard":
        seg = Segment.create(engine.engine_object("tasks"), kind=C["TABLE_TASKS"],
                             data_bytes=cls.size(slots, dim), capacity=slots, dim=dim)
        h = seg.array(0, TASK_BOARD_HEADER_DTYPE, 1)
        h["slots"], h["dim"], h["workers"] = slots, dim, workers
        return cls(seg)

    @classmethod
    def attach(cls, engine: EngineName) -> "TaskBoard":
        return cls(Segment.attach(engine.engine_object("tasks"), kind=C["TABLE_TASKS"], writable=True))

    def claim(self):
        """A FREE slot, now FILLING and this caller's; None when every slot is busy."""
        return self._grab(np.flatnonzero(self.slots["state"] == FREE).tolist(), FREE, FILLING)

    def take(self):
        """The oldest READY request, now TAKEN; None if none."""
        return self.take_oldest(READY, TAKEN)

    def idle(self) -> int:
        """Workers waiting for work: ready minus the requests taken now (read from the
        slots, not kept in a counter that a worker dying at the wrong moment would skew)."""
        taken = int(np.count_nonzero(self.slots["state"] == TAKEN))
        return max(int(self.header["ready"][0]) - taken, 0)


def _semaphore(engine: EngineName, what: str, create: bool) -> posix_ipc.Semaphore:
    name = engine.engine_object(what)
    if create:
        return posix_ipc.Semaphore(name, flags=posix_ipc.O_CREX, mode=0o600, initial_value=0)
    return posix_ipc.Semaphore(name)


# ----------------------------------------------------------------- the worker process

def worker_main(engine_text: str, worker_id: int) -> None:
    """Entry point of a worker process (started with the spawn method)."""
    from .engine import Attached
    from . import recall as _recall
    engine = EngineName.parse(engine_text)
    board = TaskBoard.attach(engine)
    pool = ActivationRecordPool.attach(engine)
    work = _semaphore(engine, "work", create=False)
    done = [_semaphore(engine, f"done{i}", create=False) for i in range(board.n)]
    eng = Attached(engine_text)
    from .metrics.segment import ROLE_WORKER, MetricsSegment
    mseg = MetricsSegment.attach(engine, writable=True)
    metrics = SpreadingRecorder(mseg, mseg.claim(ROLE_WORKER), bool(mseg.totals()["engram_spreading_hw_counters"][""]))
    from .tracing import Tracer, config_of
    cfg = config_of(engine)
    tracer = Tracer(engine if cfg else None, cfg, worker=worker_id + 1)
    labels = mseg if cfg else None
    pid = os.getpid()
    if os.environ.get("ENGRAM_WORKER_FAULT") == "exit-at-start":    # fault injection for the tests
        os._exit(3)
    splitter = stealing.open_worker_side(engine, board, work)
    board.count("ready")
    while not board.header["stop"][0]:
        try:
            work.acquire(1.0)
        except posix_ipc.BusyError:
            if not pid_alive(engine.pid):       # the owner is gone: nothing left to serve
                break
            continue
        while not board.header["stop"][0]:
            # a batch of another worker's hop first: a request is already waiting on it
            j = splitter.hops.take(pid) if splitter is not None else None
            if j is not None:
                stealing.serve_batch(splitter.hops, j, eng, splitter.sems)
                continue
            i = board.take()
            if i is None:
                break
            _serve(board, pool, eng, _recall, i, worker_id, pid, metrics, tracer, labels, splitter)
            done[i].release()
    pool.flush()
    tracer.close()
    board.count("ready", -1)


def _serve(board, pool, eng, _recall, i, worker_id, pid, metrics, tracer, labels, splitter=None):
    slot = board.slots[i]          # a record view: field stores go straight to shared memory
    slot["taken_ns"] = time.perf_counter_ns()
    slot["worker"], slot["worker_pid"] = worker_id, pid
    slot["attempt"] += 1
    hold = int(board.header["test_hold_ns"][0])
    if hold:                     # tests: hold the task this long, or until the field is cleared
        until = time.perf_counter_ns() + hold
        while board.header["test_hold_ns"][0] and time.perf_counter_ns() < until:
            time.sleep(0.001)
    try:
        space = bytes(slot["space"]).rstrip(b"\0").decode()
        view = eng.space(space)
        view._metrics = metrics
        view._splitter = splitter
        view._tracing, view._trace = tracer.enabled, tracer.emit
        if labels is not None:
            view._trace_space = labels.space_index(space)
        view._open()
        raw = board.configs[i].tobytes()
        if raw != getattr(view, "_config_raw", None):      # settings changed (or first use)
            cfg = _config_from(board.configs[i])
            view._recall_cfg, view._spread_params, view._config_raw = cfg, cfg.spread_params(), raw
        cfg = view._recall_cfg
        flags = int(slot["flags"])
        budget = float(slot["budget_ns"]) / 1e6 if flags & FLAG_BUDGET else None
        r = _recall.recall(view, board.queries[i], int(slot["k"]), spread=bool(flags & FLAG_SPREAD),
                           budget_ms=budget, cfg=cfg, predictor=view._predictor, batcher=view._batcher,
                           t_begin=int(slot["submit_ns"]))
        n = int(r.ids.shape[0])
        p_ids, p_act = r.primed if r.primed is not None else (r.ids[:0], r.activation[:0])
        m = int(p_ids.shape[0])
        idx = pool.acquire(n + m)         # the result, then what the spread reached most (priming)
        rec = pool.records
        res, pri = idx[:n], idx[n:]
        rec["node"][res] = r.ids
        rec["activation"][res] = r.activation
        rec["score"][res] = r.scores
        rec["similarity"][res] = r.similarity
        rec["hop"][res] = r.hops
        rec["confidence"][res] = view._store.hot()["confidence"][r.ids]
        rec["node"][pri] = p_ids
        rec["activation"][pri] = p_act
        rec["source"][idx] = worker_id
        if n + m:
            rec["next"][idx[:-1]] = idx[1:]
            rec["next"][idx[-1]] = NIL
        t = r.timings
        slot["result_head"] = int(idx[0]) if n + m else NIL
        slot["result_count"] = n
        slot["primed_count"] = m
        slot["scan_ms"], slot["spread_ms"], slot["rank_ms"] = (t.get("scan_ms", 0.0), t.get("spread_ms", 0.0),
                                                               t.get("rank_ms", 0.0))
        info = r.info or {}
        slot["hops_run"], slot["touched"] = info.get("hops", 0), info.get("touched", 0)
        slot["status"] = (STATUS_PARTIAL if r.partial else 0) | (STATUS_FALLBACK if r.fallback else 0)
        slot["done_ns"] = time.perf_counter_ns()
        board.set_state(i, DONE)
        board.count("completed")
    except Exception as e:       # the client gets the message; the worker keeps serving
        _fail(board, i, f"worker {worker_id}: {type(e).__name__}: {e}")


def _fail(board, i: int, message: str) -> None:
    size = board.slots.dtype["message"].shape[0]
    msg = message.encode()[:size - 1]
    err = np.zeros(size, np.uint8)
    err[:len(msg)] = np.frombuffer(msg, np.uint8)
    board.slots["message"][i] = err
    board.set_state(i, FAILED)
    board.count("failed")


# ----------------------------------------------------------------- the owner's side

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
            self.work = _semaphore(self.engine, "work", create=True)
            self.done = [_semaphore(self.engine, f"done{i}", create=True) for i in range(self.n_slots)]
            for w in range(self.size):
                self._spawn(w)
            self._supervisor = threading.Thread(target=self._supervise, name="engram-supervisor", daemon=True)
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
        root = str(Path(__file__).resolve().parent.parent)       # where this engram is imported from
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        p = subprocess.Popen([sys.executable, "-m", "engram._worker_main", str(self.engine), str(w)],
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
                    _fail(b, i, f"worker {w} (pid {p.pid}) died twice while running this request")
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
                _fail(b, i, message)
                self.done[i].release()

    def recall(self, space: str, q: np.ndarray, k: int, spread: bool, budget_ms, cfg, t_begin: int):
        """Ranked result from a worker, or None when every slot is busy (serve in-process)."""
        from .recall import Ranked
        if not self.started and self.broken is None:
            try:
                self.start()
            except Exception as e:           # cannot spawn here: serve in the calling process
                self.broken = f"the worker processes could not start: {type(e).__name__}: {e}"
                log.error("engram: %s; recalls run in the calling process", self.broken)
                return None
        if self.broken is not None or not self.started:
            return None
        b = self.board
        if self.broken is not None or not b.header["ready"][0]:
            return None            # broken, or still starting: the caller serves itself meanwhile
        i = b.claim()
        if i is None:
            return None
        slot = b.slots[i]
        name = space.encode()
        sp = np.zeros(64, np.uint8)
        sp[:len(name)] = np.frombuffer(name, np.uint8)
        slot["space"] = sp
        slot["kind"], slot["k"], slot["attempt"] = KIND_RECALL, k, 0
        slot["flags"] = (FLAG_SPREAD if spread else 0) | (FLAG_BUDGET if budget_ms is not None else 0)
        slot["budget_ns"] = 0 if budget_ms is None else int(budget_ms * 1e6)
        slot["submit_ns"] = t_begin
        slot["seq"] = b.count("submitted")
        slot["message"] = 0
        b.queries[i] = q
        b.configs[i] = _config_vector(cfg)
        b.set_state(i, READY)
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
                raise WorkerError(bytes(slot["message"]).rstrip(b"\0").decode(errors="replace"))
            n, m = int(slot["result_count"]), int(slot["primed_count"])
            idx = np.empty(n + m, np.uint32)
            j = int(slot["result_head"])
            nxt = self.pool.records["next"]
            for x in range(n + m):
                idx[x] = j
                j = int(nxt[j])
            all_rec = self.pool.records[idx]
            self.pool.release(idx, local=False)     # the workers acquire: give them back at once
            rec, pri = all_rec[:n], all_rec[n:]
        finally:
            b.set_state(i, FREE)
        status = int(slot["status"])
        timings = {"scan_ms": float(slot["scan_ms"]), "spread_ms": float(slot["spread_ms"]),
                   "rank_ms": float(slot["rank_ms"]),
                   "queue_ms": (int(slot["taken_ns"]) - t_begin) / 1e6,
                   "worker_ms": (int(slot["done_ns"]) - int(slot["taken_ns"])) / 1e6}
        info = {"hops": int(slot["hops_run"]), "touched": int(slot["touched"]), "worker": int(slot["worker"])}
        return Ranked(rec["node"].astype(np.int64), rec["score"].copy(), rec["activation"].copy(),
                      rec["similarity"].copy(), rec["hop"].astype(np.int8), bool(status & STATUS_PARTIAL),
                      bool(status & STATUS_FALLBACK), timings, info,
                      (pri["node"].astype(np.int64), pri["activation"].copy()) if cfg.priming else None)

    def stats(self) -> dict:
        if not self.started:
            return {"workers": self.size, "started": False, "broken": self.broken}
        h = self.board.header[0]
        alive = sum(p.poll() is None for p in self.procs.values())
        return {"workers": self.size, "started": True, "alive": alive, "broken": self.broken,
                "submitted": int(h["submitted"]), "completed": int(h["completed"]), "failed": int(h["failed"]),
                "retried": int(h["retried"]), "restarts": int(h["restarts"]),
                "pids": {w: p.pid for w, p in self.procs.items()}, "pool": self.pool.stats(),
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
