"""Boards in shared memory: slots whose state words change only by the C library's atomics,
and the task board, on which clients post recall requests and workers answer them.

A slot is claimed by compare-exchange on its state word (its first field), so two
processes can never both own it. The task board segment is a TaskBoardHeader (with
the offset of each region), TaskSlot[slots], a query row and a settings row per slot
(engram/layout/schema.py). A request's slot moves FREE -> FILLING (a client) -> READY
-> TAKEN (a worker) -> DONE | FAILED -> FREE (the client, after reading the answer).
"""
from __future__ import annotations

import time

import numpy as np
import posix_ipc

from engram.config import MAX_DIM, RecallConfig
from engram.errors import EngramError
from engram.kernels._cy.stream import chain
from engram.kernels.native import load_c
from engram.layout import TASK_BOARD_HEADER_DTYPE, TASK_SLOT_DTYPE, schema
from engram.recall.pipeline import Ranked
from engram.store.shm import create_semaphore, find, open_semaphore
from engram.store.shm.names import EngineName
from engram.store.shm.segment import Segment, plan

C = schema.CONSTANTS
FREE, FILLING, READY, TAKEN, DONE, FAILED = (C[f"TASK_{s}"] for s in
                                            ("FREE", "FILLING", "READY", "TAKEN", "DONE", "FAILED"))
NIL = C["NIL"]
KIND_RECALL = 1
FLAG_SPREAD, FLAG_BUDGET = 1, 2
STATUS_PARTIAL, STATUS_FALLBACK = 1, 2
CONFIG_FLOATS = 32          # recall settings travel beside the query (RecallConfig.to_vector)
SPACE_BYTES = TASK_SLOT_DTYPE["space"].shape[0]
MAX_WORKERS = 4096         # the most workers a board may say it has (an attach tool lists each)


class WorkerError(EngramError):
    """A worker could not answer: it died (twice) while running the request, or it failed."""


def name_bytes(text: str) -> np.ndarray:
    """A NUL-padded name field (space names are 3-64 ASCII characters)."""
    out = np.zeros(SPACE_BYTES, np.uint8)
    raw = text.encode()[:SPACE_BYTES]
    out[:len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def name_text(field) -> str:
    return bytes(field).rstrip(b"\0").decode(errors="replace")


def semaphore(engine: EngineName, what: str, create: bool, objects: dict | None = None) -> posix_ipc.Semaphore:
    """The engine's semaphore ``what``: a new one (the owner) or the owner's (``objects``: an
    ``objects_of(engine, semaphores=True)`` listing to find it in)."""
    return create_semaphore(engine, what) if create else open_semaphore(engine, what, objects)


class SlotBoard:
    """A header of u64 counters and an array of slots whose first field is a u32 state."""

    def __init__(self, header: np.ndarray, slots: np.ndarray, counters: tuple):
        self.header, self.slots = header, slots
        self.n = slots.shape[0]
        fns = load_c().fns
        self._cas, self._load, self._store, self._add = (fns["eg_cas_u32"], fns["eg_load_u32"],
                                                         fns["eg_store_u32"], fns["eg_add_u64"])
        base, size = slots.ctypes.data, slots.dtype.itemsize
        self._state = [base + i * size for i in range(self.n)]          # state is at offset 0
        h = header.ctypes.data
        self._counter = {f: h + header.dtype.fields[f][1] for f in counters}

    def state(self, i: int) -> int:
        return self._load(self._state[i])

    def cas(self, i: int, expected: int, desired: int) -> bool:
        return bool(self._cas(self._state[i], expected, desired))

    def set_state(self, i: int, value: int) -> None:
        self._store(self._state[i], value)

    def count(self, field: str, v: int = 1) -> int:
        """Atomic add to a header counter (v < 0 wraps: subtracts); returns the new value."""
        return int(self._add(self._counter[field], v & 0xFFFFFFFFFFFFFFFF))

    def _grab(self, candidates, want: int, new: int):
        for i in candidates:
            if self.cas(i, want, new):
                return i
        return None

    def take_oldest(self, ready: int, taken: int):
        """The oldest slot in state ``ready`` (by its seq: first come, first served, so
        nothing starves behind newer work in lower slots), now ``taken``; None if none."""
        st = self.slots["state"]
        idx = np.flatnonzero(st == ready)
        if idx.size > 1:
            idx = idx[np.argsort(self.slots["seq"][idx], kind="stable")]
        return self._grab(idx.tolist(), ready, taken)


class TaskBoard(SlotBoard):
    """The task board segment, as the owner, a worker or an attach tool sees it."""

    def __init__(self, seg: Segment):
        self.seg = seg
        header = seg.array(0, TASK_BOARD_HEADER_DTYPE, 1, field="task board header")
        h = header[0]
        n, self.dim, floats = int(h["slots"]), int(h["dim"]), int(h["config_floats"])
        if n != seg.h("capacity"):
            raise seg.refuse("slots", f"is {n:,}, the segment header's capacity is {seg.h('capacity'):,}")
        if not 1 <= self.dim <= MAX_DIM or self.dim != seg.h("dim"):
            raise seg.refuse("dim", f"(board header) is {self.dim:,}, the segment header's is {seg.h('dim'):,}; "
                             f"both must be one dimension in [1, {MAX_DIM:,}]")
        if floats != CONFIG_FLOATS:
            raise seg.refuse("config_floats", f"is {floats:,}, a request carries {CONFIG_FLOATS} settings")
        if int(h["workers"]) > MAX_WORKERS:
            raise seg.refuse("workers", f"is {int(h['workers']):,}, more than {MAX_WORKERS:,}")
        slots = seg.array(h["slots_at"], TASK_SLOT_DTYPE, n, field="slots_at / slots")
        self.queries = seg.array(h["queries_at"], np.float32, n * self.dim, shape=(n, self.dim),
                                 field="queries_at / slots x dim")
        self.configs = seg.array(h["configs_at"], np.float64, n * floats, shape=(n, floats),
                                 field="configs_at / slots x config_floats")
        super().__init__(header, slots, ("submitted", "completed", "failed", "retried", "restarts", "ready"))

    @classmethod
    def create(cls, engine: EngineName, slots: int, dim: int, workers: int) -> "TaskBoard":
        at, size = plan(TASK_BOARD_HEADER_DTYPE.itemsize, slots * TASK_SLOT_DTYPE.itemsize, slots * dim * 4,
                        slots * CONFIG_FLOATS * 8)
        seg = Segment.create_fresh(lambda salt: engine.unique("tasks", salt), kind=C["TABLE_TASKS"], data_bytes=size,
                                   capacity=slots, dim=dim)
        h = seg.array(0, TASK_BOARD_HEADER_DTYPE, 1)
        h["slots"], h["dim"], h["workers"], h["config_floats"] = slots, dim, workers, CONFIG_FLOATS
        h["slots_at"], h["queries_at"], h["configs_at"] = at[1:]
        return cls(seg)

    @classmethod
    def attach(cls, engine: EngineName, writable: bool = True) -> "TaskBoard":
        return cls(Segment.attach(find(engine, "tasks"), kind=C["TABLE_TASKS"], writable=writable))

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

    # ---- a request -------------------------------------------------------------------
    def post(self, i: int, space: str, q: np.ndarray, k: int, spread: bool, budget_ms, cfg: RecallConfig,
             t_begin: int, trace_id: int) -> None:
        """Fill claimed slot i with a recall request and mark it READY; the worker's trace
        events carry ``trace_id``, the owner's recall's."""
        slot = self.slots[i]          # a record view: field stores go straight to shared memory
        slot["space"] = name_bytes(space)
        slot["kind"], slot["k"], slot["attempt"] = KIND_RECALL, k, 0
        slot["flags"] = (FLAG_SPREAD if spread else 0) | (FLAG_BUDGET if budget_ms is not None else 0)
        slot["budget_ns"] = 0 if budget_ms is None else int(budget_ms * 1e6)
        slot["submit_ns"], slot["trace_id"] = t_begin, trace_id
        slot["seq"] = self.count("submitted")
        slot["message"] = 0
        self.queries[i] = q
        v = cfg.to_vector()
        if len(v) > self.configs.shape[1]:
            raise AssertionError(f"recall settings outgrew the board ({len(v)} > {self.configs.shape[1]})")
        self.configs[i, :len(v)] = v
        self.configs[i, len(v):] = 0.0
        self.set_state(i, READY)

    def request(self, i: int):
        """(space, query, k, spread, budget_ms, settings vector, t_begin, trace_id) of taken slot i."""
        slot = self.slots[i]
        flags = int(slot["flags"])
        budget = float(slot["budget_ns"]) / 1e6 if flags & FLAG_BUDGET else None
        return (name_text(slot["space"]), self.queries[i], int(slot["k"]), bool(flags & FLAG_SPREAD), budget,
                self.configs[i], int(slot["submit_ns"]), int(slot["trace_id"]))

    def answer(self, i: int, pool, ranked, confidence: np.ndarray, source: int) -> None:
        """Write a worker's ranked result into pool records linked from slot i (the result,
        then what the spread reached most, for priming), then mark it DONE."""
        n = int(ranked.ids.shape[0])
        p_ids, p_act = ranked.primed if ranked.primed is not None else (ranked.ids[:0], ranked.activation[:0])
        m = int(p_ids.shape[0])
        idx = pool.acquire(n + m)
        rec = pool.records
        res, pri = idx[:n], idx[n:]
        rec["node"][res] = ranked.ids
        rec["activation"][res] = ranked.activation
        rec["score"][res] = ranked.scores
        rec["similarity"][res] = ranked.similarity
        rec["hop"][res] = ranked.hops
        rec["confidence"][res] = confidence
        rec["node"][pri] = p_ids
        rec["activation"][pri] = p_act
        rec["source"][idx] = source
        if n + m:
            rec["next"][idx[:-1]] = idx[1:]
            rec["next"][idx[-1]] = NIL
        slot, t, info = self.slots[i], ranked.timings, ranked.info or {}
        slot["result_head"] = int(idx[0]) if n + m else NIL
        slot["result_count"], slot["primed_count"] = n, m
        slot["scan_ms"], slot["spread_ms"], slot["rank_ms"] = (t.get("scan_ms", 0.0), t.get("spread_ms", 0.0),
                                                               t.get("rank_ms", 0.0))
        slot["hops_run"], slot["touched"] = info.get("hops", 0), info.get("touched", 0)
        slot["status"] = (STATUS_PARTIAL if ranked.partial else 0) | (STATUS_FALLBACK if ranked.fallback else 0)
        slot["done_ns"] = time.perf_counter_ns()
        self.set_state(i, DONE)
        self.count("completed")

    def fail(self, i: int, message: str) -> None:
        """Mark slot i FAILED with a message for its client."""
        size = self.slots.dtype["message"].shape[0]
        msg = message.encode()[:size - 1]
        err = np.zeros(size, np.uint8)
        err[:len(msg)] = np.frombuffer(msg, np.uint8)
        self.slots["message"][i] = err
        self.set_state(i, FAILED)
        self.count("failed")

    def result(self, i: int, pool, t_begin: int, primed: bool):
        """The answer in DONE slot i as a Ranked, its pool records given back."""
        slot = self.slots[i]
        n, m = int(slot["result_count"]), int(slot["primed_count"])
        idx = chain(pool.records["next"], int(slot["result_head"]), n + m)
        all_rec = pool.records[idx]
        pool.release(idx, local=False)     # the workers acquire: give them back at once
        rec, pri = all_rec[:n], all_rec[n:]
        status = int(slot["status"])
        timings = {"scan_ms": float(slot["scan_ms"]), "spread_ms": float(slot["spread_ms"]),
                   "rank_ms": float(slot["rank_ms"]), "queue_ms": (int(slot["taken_ns"]) - t_begin) / 1e6,
                   "worker_ms": (int(slot["done_ns"]) - int(slot["taken_ns"])) / 1e6}
        info = {"hops": int(slot["hops_run"]), "touched": int(slot["touched"]), "worker": int(slot["worker"])}
        return Ranked(rec["node"].astype(np.int64), rec["score"].copy(), rec["activation"].copy(),
                      rec["similarity"].copy(), rec["hop"].astype(np.int8), bool(status & STATUS_PARTIAL),
                      bool(status & STATUS_FALLBACK), timings, info,
                      (pri["node"].astype(np.int64), pri["activation"].copy()) if primed else None)

    def message(self, i: int) -> str:
        return name_text(self.slots["message"][i])
