"""A recall worker process: ``python -m engram.workers.main <engine> <worker id>``.

It attaches to the engine's task board, record pool and (if the owner made one)
hop board, and to each memory space a request names, read-only, through a
SpaceReader; it never imports the engine. It sleeps on the `work` semaphore,
takes the oldest READY request (or first a batch of another process's split
hop: someone is already waiting on it), runs the same recall pipeline as an
in-process recall, writes the answer into pool records and posts the slot's
`done` semaphore. It exits when the owner sets `stop` or is gone.
"""
from __future__ import annotations

import gc
import os
import sys
import time

import posix_ipc

from engram import kernels
from engram.config import RecallConfig
from engram.observe.metrics.segment import ROLE_WORKER, MetricsSegment
from engram.observe.metrics.spreading import SpreadingRecorder
from engram.observe.tracing import Tracer, config_of
from engram.observe.tracing.events import NO_EVENTS, SpaceEvents
from engram.recall import pipeline
from engram.recall.context import RecallContext
from engram.recall.reader import SpaceReader
from engram.store.shm.names import EngineName, objects_of, pid_alive
from engram.store.tables import SpaceStore
from engram.threads import name_current
from engram.workers import stealing
from engram.workers.board import TaskBoard, semaphore
from engram.workers.pool import ActivationRecordPool


class Worker:
    """One worker's attachments and its per-space readers and recall contexts."""

    def __init__(self, engine_text: str, worker_id: int):
        self.engine = EngineName.parse(engine_text)
        self.id, self.pid = worker_id, os.getpid()
        self.board = TaskBoard.attach(self.engine)
        self.pool = ActivationRecordPool.attach(self.engine)
        sems = objects_of(self.engine, semaphores=True)
        self.work = semaphore(self.engine, "work", create=False, objects=sems)
        self.done = [semaphore(self.engine, f"done{i}", create=False, objects=sems) for i in range(self.board.n)]
        self.kern = kernels.backend()
        mseg = MetricsSegment.attach(self.engine, writable=True)
        hw = bool(mseg.totals()["engram_spreading_hw_counters"][""])
        self.spreading = SpreadingRecorder(mseg, mseg.claim(ROLE_WORKER), hw)
        cfg = config_of(self.engine)
        self.tracer = Tracer(self.engine if cfg else None, cfg, worker=worker_id + 1)
        self.labels = mseg if cfg else None
        self.splitter = stealing.open_worker_side(self.engine, self.board, self.work)
        self.readers: dict = {}        # space -> SpaceReader
        self.contexts: dict = {}       # space -> (settings vector it was built from, RecallContext)

    def reader(self, space: str) -> SpaceReader:
        r = self.readers.get(space)
        if r is None:
            r = self.readers[space] = SpaceReader(SpaceStore(self.engine, space, create=False), self.kern)
        r.refresh()
        return r

    def context(self, space: str, settings) -> RecallContext:
        """The space's context, with the settings this request carries (decoded once per change)."""
        raw = settings.tobytes()
        known = self.contexts.get(space)
        if known is None:
            events = (SpaceEvents(self.tracer.writer, self.labels.space_index(space)) if self.labels is not None
                      else NO_EVENTS)
            known = self.contexts[space] = [None, RecallContext(spreading=self.spreading, events=events,
                                                                splitter=self.splitter)]
        if known[0] != raw:
            known[0], known[1].config = raw, RecallConfig.from_vector(settings)
        return known[1]

    def run(self) -> None:
        board = self.board
        board.count("ready")
        try:
            while not board.header["stop"][0]:
                try:
                    self.work.acquire(1.0)
                except posix_ipc.BusyError:
                    if not pid_alive(self.engine.pid):       # the owner is gone: nothing left to serve
                        break
                    continue
                self.drain()
        finally:
            self.pool.flush()
            self.tracer.close()
            board.count("ready", -1)

    def drain(self) -> None:
        """Serve until nothing is waiting: batches of split hops first, then requests."""
        board = self.board
        while not board.header["stop"][0]:
            j = self.splitter.hops.take(self.pid) if self.splitter is not None else None
            if j is not None:
                stealing.serve_batch(self.splitter.hops, j, self.reader, self.splitter.sems)
                continue
            i = board.take()
            if i is None:
                return
            self.serve(i)
            self.done[i].release()

    def serve(self, i: int) -> None:
        board = self.board
        slot = board.slots[i]
        slot["taken_ns"] = time.perf_counter_ns()
        slot["worker"], slot["worker_pid"] = self.id, self.pid
        slot["attempt"] += 1
        try:
            space, q, k, spread, budget_ms, settings, t_begin, trace_id = board.request(i)
            reader = self.reader(space)
            ctx = self.context(space, settings)
            ranked = pipeline.recall(reader, ctx, q, k, spread=spread, budget_ms=budget_ms, t_begin=t_begin,
                                     trace_id=trace_id)
            board.answer(i, self.pool, ranked, reader.hot()["confidence"][ranked.ids], self.id)
        except Exception as e:       # the client gets the message; the worker keeps serving
            board.fail(i, f"worker {self.id}: {type(e).__name__}: {e}")


def main(argv) -> None:
    name_current(f"engram-worker-{argv[2]}")      # `ps`, `top`: which process is which
    worker = Worker(argv[1], int(argv[2]))
    gc.freeze()       # what startup made lives as long as the worker: keep it out of full collections
    worker.run()


if __name__ == "__main__":
    main(sys.argv)
