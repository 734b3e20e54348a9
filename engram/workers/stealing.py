"""Work stealing: a large hop's frontier split into batches that idle workers take.

A process running a recall (the spread's owner: a worker, or the engine's owner
recalling in its own thread) whose next hop fires at least ``min_edges`` edges
while workers wait for work splits the hop
(SpreadRun.begin_split): it cuts the frontier into batches of at least the
AdaptiveBatcher's size, offers all but the first on the hop board (a shared
segment: HopBoardHeader, HopSlot[slots], then each slot's input and output
areas), posts the workers' `work` semaphore once per idle worker, and fires
its own batch in place (eg_spread_fire). An idle worker wakes, takes
the oldest offered batch, gathers it (eg_spread_gather: the batch's
contributions summed per target; it reads only the graph, which every worker
has attached) into the slot's output area and posts the slot's `hop<j>`
semaphore. The owner takes back whatever nobody took and fires it in place,
and merges the stolen batches' sums into its own spreading state
(eg_spread_merge), so the hop ends as one kernel call would have (up to
float summation order).

Slot states (u32, by compare-exchange; a holder's pid rides in the same word,
so a dead holder is recognised without a race):
    FREE -> FILLING|owner -> READY -> TAKEN|taker -> DONE | FAILED -> FREE (owner)
    READY -> FILLING|owner -> FREE          the owner takes an untaken batch back
    TAKEN|taker -> REVOKED|taker -> FREE    the owner gave up waiting; the taker frees it
The `hop<j>` semaphores only wake the owner: it always reads the state word
before acting, so a post left over (a taker that finished while the owner
looked) costs one extra turn of its loop, never a wrong merge.
A batch whose taker died, or that is still out when the spread's deadline (or
a second) passes, is fired by the owner itself; a revoked batch's slot is
freed by its taker when it finishes. Slots whose holders died are freed by the
supervisor (release_dead) or taken over by the next owner that needs one.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import posix_ipc

from engram.config import FAN_MODES
from engram.kernels.spreadrun import SpreadParams
from engram.layout import HOP_BOARD_HEADER_DTYPE, HOP_SLOT_DTYPE, schema
from engram.store.shm import create_semaphore, find, objects_of, open_semaphore
from engram.store.shm.names import EngineName, pid_alive
from engram.store.shm.segment import Segment, plan
from engram.workers.board import SlotBoard, name_bytes, name_text

C = schema.CONSTANTS
FREE, FILLING, READY, TAKEN, DONE, FAILED, REVOKED = (
    C[f"TASK_{s}"] for s in ("FREE", "FILLING", "READY", "TAKEN", "DONE", "FAILED", "REVOKED"))
STATE_MASK = 0xFF
MAX_WAIT_NS = 1_000_000_000   # without a deadline, a taker this slow has its batch revoked
# a hop firing fewer edges runs as one kernel call (measured: docs/workers.md);
# ENGRAM_STEAL_MIN_EDGES overrides it (0 turns stealing off)
MIN_EDGES = int(os.environ.get("ENGRAM_STEAL_MIN_EDGES", 32768))
BATCHES_PER_WORKER = 4     # batches per participant: enough to even out, few enough to stay cheap
WAIT_S = 0.02


def held(state: int, pid: int) -> int:
    """A state word naming the process that holds the slot in it."""
    return state | (pid << 8)


def taken_by(pid: int) -> int:
    return held(TAKEN, pid)


def _dead(pid: int) -> bool:
    return pid == 0 or not pid_alive(pid)


class HopBoard(SlotBoard):
    """The hop board segment: offered batches of split hops and their gathered sums."""

    def __init__(self, seg: Segment):
        self.seg = seg
        header = seg.array(0, HOP_BOARD_HEADER_DTYPE, 1, field="hop board header")
        h = header[0]
        n = int(h["slots"])
        self.in_cap, self.out_cap = int(h["in_cap"]), int(h["out_cap"])
        if n != seg.h("capacity"):
            raise seg.refuse("slots", f"is {n:,}, the segment header's capacity is {seg.h('capacity'):,}")
        for cap in ("in_cap", "out_cap"):
            if int(h[cap]) < 1:
                raise seg.refuse(cap, "is 0: a batch must hold something")
        slots = seg.array(h["slots_at"], HOP_SLOT_DTYPE, n, field="slots_at / slots")
        self.in_nodes = seg.array(h["in_nodes_at"], np.uint32, n * self.in_cap, shape=(n, self.in_cap),
                                  field="in_nodes_at / slots x in_cap")
        self.in_fire = seg.array(h["in_fire_at"], np.float32, n * self.in_cap, shape=(n, self.in_cap),
                                 field="in_fire_at / slots x in_cap")
        self.out_v = seg.array(h["out_v_at"], np.uint32, n * self.out_cap, shape=(n, self.out_cap),
                               field="out_v_at / slots x out_cap")
        self.out_s = seg.array(h["out_s_at"], np.float32, n * self.out_cap, shape=(n, self.out_cap),
                               field="out_s_at / slots x out_cap")
        super().__init__(header, slots, ("published", "stolen", "reclaimed", "failed"))

    @classmethod
    def create(cls, engine: EngineName, slots: int, in_cap: int = 32768, out_cap: int = 262144) -> "HopBoard":
        at, size = plan(HOP_BOARD_HEADER_DTYPE.itemsize, slots * HOP_SLOT_DTYPE.itemsize, slots * in_cap * 4,
                        slots * in_cap * 4, slots * out_cap * 4, slots * out_cap * 4)
        seg = Segment.create_fresh(lambda salt: engine.unique("hops", salt), kind=C["TABLE_HOPS"], data_bytes=size,
                                   capacity=slots)
        h = seg.array(0, HOP_BOARD_HEADER_DTYPE, 1)
        h["slots"], h["in_cap"], h["out_cap"], h["min_edges"] = slots, in_cap, out_cap, MIN_EDGES
        h["slots_at"], h["in_nodes_at"], h["in_fire_at"], h["out_v_at"], h["out_s_at"] = at[1:]
        return cls(seg)

    @classmethod
    def attach(cls, engine: EngineName) -> "HopBoard":
        return cls(Segment.attach(find(engine, "hops"), kind=C["TABLE_HOPS"], writable=True))

    def claim(self, pid: int):
        """A slot for an offer, now FILLING|pid: a FREE one, or one whose holders died."""
        st = self.slots["state"]
        mine = held(FILLING, pid)
        got = self._grab(np.flatnonzero(st == FREE).tolist(), FREE, mine)
        if got is not None:
            return got
        for i in np.flatnonzero(st != FREE).tolist():
            s = self.state(i)
            if self._orphaned(i, s, pid) and self.cas(i, s, mine):
                return i
        return None

    def _orphaned(self, i: int, s: int, pid: int) -> bool:
        """No live process will ever act on slot i in state s again."""
        kind, holder, owner = s & STATE_MASK, s >> 8, int(self.slots["owner_pid"][i])
        if kind == FILLING:
            return holder != pid and _dead(holder)
        if kind in (READY, DONE, FAILED):
            return owner != pid and _dead(owner)
        if kind == REVOKED:
            return _dead(holder)
        if kind == TAKEN:          # the taker finishes it for the owner; if both are gone, nobody will
            return _dead(holder) and owner != pid and _dead(owner)
        return False

    def release_dead(self, pid: int) -> int:
        """Free what a process that died left behind (the supervisor calls this); returns slots freed."""
        freed = 0
        for i in range(self.n):
            s = self.state(i)
            if s != FREE and (s >> 8 == pid or int(self.slots["owner_pid"][i]) == pid) \
                    and self._orphaned(i, s, 0) and self.cas(i, s, FREE):
                freed += 1
        return freed

    def take(self, pid: int):
        """The oldest offered batch, now taken by ``pid``; None if none."""
        return self.take_oldest(READY, taken_by(pid))

    def stats(self) -> dict:
        h = self.header[0]
        return {f: int(h[f]) for f in ("published", "stolen", "reclaimed", "failed", "min_edges", "min_batch")}


def _semaphores(engine: EngineName, n: int, create: bool) -> list:
    if create:
        return [create_semaphore(engine, f"hop{j}") for j in range(n)]
    listed = objects_of(engine, semaphores=True)
    return [open_semaphore(engine, f"hop{j}", listed) for j in range(n)]


# ----------------------------------------------------------------------------- the taker

def serve_batch(hops: HopBoard, j: int, reader_of, sems: list) -> None:
    """Gather offered batch j (already taken by this process) into its output area;
    ``reader_of(space)``: a refreshed SpaceReader of the space the batch belongs to."""
    pid = os.getpid()
    slot = hops.slots[j]
    ok = False
    try:
        reader = reader_of(name_text(slot["space"]))
        g = reader.links(FAN_MODES[int(slot["fan"])])
        if g.generation == int(slot["csr_generation"]):
            graph = g.csr
            p = SpreadParams(1, float(slot["decay"]), float(slot["threshold"]), 0.0, int(slot["prefetch_distance"]))
            n_in, kern = int(slot["n_in"]), reader.kern
            got = kern._gather((graph.offsets, graph.targets, graph.weights), p, hops.in_nodes[j, :n_in],
                               hops.in_fire[j, :n_in], kern.gather_acc(graph.n_nodes), hops.out_v[j], hops.out_s[j])
            if got >= 0:
                slot["n_out"] = got
                ok = True
    except Exception:            # the owner gathers the batch itself; this worker keeps serving
        ok = False
    if not ok:
        hops.count("failed")
    if hops.cas(j, taken_by(pid), DONE if ok else FAILED):
        sems[j].release()
    else:                        # the owner gave up waiting (REVOKED|pid): the slot is ours to free
        hops.cas(j, held(REVOKED, pid), FREE)


# ----------------------------------------------------------------------------- the owner

class HopSplitter:
    """What a worker needs to split hops: the boards, the semaphores, its pid."""

    def __init__(self, hops: HopBoard, tasks, work: posix_ipc.Semaphore, sems: list):
        self.hops, self.tasks, self.work, self.sems = hops, tasks, work, sems
        self._min_edges = hops.header["min_edges"]         # the owner may change these while we run
        self._min_batch = hops.header["min_batch"]
        self.pid = os.getpid()

    def min_edges(self) -> int:
        """Edges a hop must fire to be split (0: never), as the owner set it now."""
        return int(self._min_edges[0])

    def helpers(self, frontier_edges: int) -> int:
        """Idle workers worth splitting this hop for (0: run it as one call)."""
        least = int(self._min_edges[0])
        return self.tasks.idle() if 0 < least <= frontier_edges else 0

    def hop(self, run, frontier_edges: int, batch_size: int, idle: int, space: str, fan: str,
            csr_generation: int, deadline_ns: int | None = None) -> None:
        """Run the next hop of ``run`` in batches, offering some to ``idle`` workers."""
        nodes, fire = run.begin_split()
        f = nodes.shape[0]
        # batches: at least the batcher's size, about BATCHES_PER_WORKER per participant, and
        # within a slot's output area at the mean out-degree with room to spare (a batch that
        # still overflows it comes back FAILED and is fired here)
        least = int(self._min_batch[0]) or batch_size
        fits = max(int(0.5 * self.hops.out_cap * f / max(frontier_edges, 1)), 1)
        size = max(least, math.ceil(f / (BATCHES_PER_WORKER * (idle + 1))))
        size = min(size, self.hops.in_cap, fits)
        bounds = [(lo, min(lo + size, f)) for lo in range(0, f, size)]
        offered, local = [], bounds[:1]
        try:
            for lo, hi in bounds[1:]:
                j = self.hops.claim(self.pid)
                if j is None:
                    local.append((lo, hi))
                    continue
                offered.append((j, lo, hi))
                self._offer(j, run, nodes[lo:hi], fire[lo:hi], space, fan, csr_generation)
            if offered:
                self.hops.count("published", len(offered))
                for _ in range(min(idle, len(offered))):
                    self.work.release()
            for lo, hi in local:               # the owner's share fires in place, as in a whole hop
                run.fire_part(lo, hi)
            pending = []
            for j, lo, hi in offered:          # take back what nobody took (no waiting)
                if self.hops.cas(j, READY, held(FILLING, self.pid)):
                    self.hops.count("reclaimed")
                    run.fire_part(lo, hi)
                    self.hops.set_state(j, FREE)
                else:
                    pending.append((j, lo, hi))
            until = deadline_ns if deadline_ns is not None else time.perf_counter_ns() + MAX_WAIT_NS
            while pending:
                j, lo, hi = pending.pop(0)
                if self._wait(j, until):
                    n_out = int(self.hops.slots["n_out"][j])
                    run.merge(self.hops.out_v[j, :n_out], self.hops.out_s[j, :n_out])
                    self.hops.count("stolen")
                    self.hops.set_state(j, FREE)
                else:                          # failed, revoked, or its taker died: fire it here
                    run.fire_part(lo, hi)
            offered = []
        finally:
            self._abandon(offered)             # only after an exception: leave nothing held
        run.end_split()

    def _offer(self, j, run, nodes, fire, space: str, fan: str, gen: int) -> None:
        h, slot, n = self.hops, self.hops.slots[j], nodes.shape[0]
        h.in_nodes[j, :n] = nodes
        h.in_fire[j, :n] = fire
        slot["space"] = name_bytes(space)
        slot["hop"], slot["n_in"], slot["n_out"] = run.hop, n, 0
        slot["owner_pid"], slot["fan"] = self.pid, FAN_MODES.index(fan)
        slot["prefetch_distance"], slot["decay"], slot["threshold"] = (run.params.prefetch_distance,
                                                                       run.params.decay, run.params.threshold)
        slot["csr_generation"] = gen
        slot["seq"] = time.perf_counter_ns()             # CLOCK_MONOTONIC: takers serve the oldest first
        h.cas(j, held(FILLING, self.pid), READY)

    def _wait(self, j: int, until_ns: int) -> bool:
        """Wait for a taken batch: True when DONE (the caller merges and frees it); False when
        it FAILED, its taker died, or it is still out at ``until_ns`` (then it is revoked and
        the taker frees it): the caller fires the batch itself."""
        h = self.hops
        while True:
            st = h.state(j)
            if st == DONE:
                return True
            if st == FAILED:
                h.set_state(j, FREE)
                return False
            if st & STATE_MASK != TAKEN:   # not ours any more (cannot happen while we live): redo it
                return False
            if _dead(st >> 8):
                if h.cas(j, st, held(FILLING, self.pid)):
                    h.count("failed")
                    h.set_state(j, FREE)
                    return False
                continue
            if time.perf_counter_ns() >= until_ns:
                if h.cas(j, st, held(REVOKED, st >> 8)):
                    h.count("failed")
                    return False
                continue
            try:
                self.sems[j].acquire(WAIT_S)
            except posix_ipc.BusyError:
                pass

    def _abandon(self, offered) -> None:
        """After an exception mid-hop: free what is ours; a batch still being gathered is
        left ownerless (owner_pid 0), so the next claim takes it once its taker is done."""
        h = self.hops
        for j, _, _ in offered:
            for s in (READY, DONE, FAILED, held(FILLING, self.pid)):
                if h.cas(j, s, FREE):
                    break
            else:
                h.slots["owner_pid"][j] = 0


def open_worker_side(engine: EngineName, tasks, work) -> HopSplitter | None:
    """A worker's splitter over the owner's hop board (None if the owner made none)."""
    try:
        hops = HopBoard.attach(engine)
        return HopSplitter(hops, tasks, work, _semaphores(engine, hops.n, create=False))
    except (posix_ipc.ExistentialError, FileNotFoundError, OSError):
        return None


def create_owner_side(engine: EngineName, slots: int) -> tuple:
    """The owner makes the board and its semaphores (when it starts the workers)."""
    return HopBoard.create(engine, slots), _semaphores(engine, slots, create=True)
