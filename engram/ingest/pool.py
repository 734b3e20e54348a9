"""Ingest lanes and the workers that drain them (seed 001's streaming pipeline).

A producer's ``Stream.put`` checks a batch and queues it on its stream's home
worker, in one of three lanes (high, normal, low). Each lane is bounded in
observations over all workers: past capacity ``put`` raises OverloadError with
a retry-after hint, and nothing accepted is ever dropped. A worker thread takes
from its own lanes by priority, merges consecutive batches of one stream up to
``batch_max`` observations, and applies them to the tables (which logs them);
an idle worker steals from the busiest one. A stream being applied is not
taken by another worker, so each stream's batches are applied in put order.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from engram.errors import ClosedError, EngramError, InvalidInputError, OverloadError, StorageFullError
from engram.threads import named_thread

log = logging.getLogger("engram")
LANES = ("high", "normal", "low")
#: lane capacities in observations (seed 001's tuned configuration)
DEFAULT_CAPACITY = {"high": 1_000, "normal": 50_000, "low": 10_000}
DEFAULT_BATCH_MAX = 500
RETRY_FULL_S = 0.05


@dataclass
class Batch:
    """One put: checked arrays, the stream's ``apply`` and what became of it."""
    stream: int
    first_seq: int
    vectors: np.ndarray
    tier: int
    texts: list
    confidence: np.ndarray
    apply: object                      # (vectors, tier, texts, confidence) -> (ids, lsn)
    ids: np.ndarray | None = None
    lsn: int = 0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def n(self) -> int:
        return self.vectors.shape[0]


class IngestPool:
    """The ingest workers of one engine and their lanes."""

    def __init__(self, workers: int = 1, capacity: dict | None = None, batch_max: int = DEFAULT_BATCH_MAX):
        self.capacity = {**DEFAULT_CAPACITY, **(capacity or {})}
        self.batch_max = batch_max
        self._cond = threading.Condition()
        self._lanes = [{lane: collections.deque() for lane in LANES} for _ in range(workers)]
        self._queued = dict.fromkeys(LANES, 0)
        self._busy: set = set()
        self._closing = False
        self._rate = 0.0                 # observations applied per second (moving average)
        self.applied = self.rejected = self.stolen = self.batches = 0
        self._threads = [named_thread(self._run, f"engram-ingest-{w}", args=(w,))
                         for w in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def workers(self) -> int:
        return len(self._lanes)

    def submit(self, lane: str, batch: Batch) -> None:
        """Queue a batch, or raise OverloadError (nothing queued) if its lane is full."""
        cap = self.capacity[lane]
        if batch.n > cap:
            raise InvalidInputError(f"a batch of {batch.n} observations is larger than the {lane} lane's "
                                    f"capacity ({cap}): put smaller batches")
        with self._cond:
            self._refuse(lane, batch.n)
            self._lanes[batch.stream % len(self._lanes)][lane].append(batch)
            self._queued[lane] += batch.n
            self._cond.notify()

    def admit(self, lane: str, n: int) -> None:
        """Raise OverloadError now if ``n`` observations would not fit ``lane``: a producer
        checks before it spends its time checking and copying a batch the lane would refuse
        (``submit`` decides again, with the batch; a batch larger than the lane is its error)."""
        if n > self.capacity[lane]:
            return
        with self._cond:
            self._refuse(lane, n)

    def _refuse(self, lane: str, n: int) -> None:
        """Raise (lock held) ClosedError when closing, OverloadError when the lane is full."""
        if self._closing:
            raise ClosedError("the engine is closing: no more ingest")
        cap = self.capacity[lane]
        if self._queued[lane] + n > cap:
            self.rejected += n
            backlog = self._queued[lane]
            retry = max(backlog + n - cap, 1) / max(self._rate, 1000.0)
            raise OverloadError(f"the {lane} ingest lane is full ({backlog} of {cap} observations queued): "
                                f"nothing was queued; retry in {retry:.3f} s", retry_after=retry)

    def queued(self) -> dict:
        with self._cond:
            return dict(self._queued)

    def stats(self) -> dict:
        with self._cond:
            return {"workers": len(self._lanes), "queued": dict(self._queued), "capacity": dict(self.capacity),
                    "applied": self.applied, "batches": self.batches, "rejected": self.rejected,
                    "stolen": self.stolen, "rate": self._rate, "batch_max": self.batch_max}

    # ---- workers -------------------------------------------------------------------------
    def _take(self, w: int):
        """(lane, batches) for worker ``w`` (lock held): its own lanes first, by priority,
        then the busiest other worker's; consecutive batches of one stream are merged."""
        order = [w] + sorted((i for i in range(len(self._lanes)) if i != w),
                             key=lambda i: -sum(b.n for q in self._lanes[i].values() for b in q))
        for lane in LANES:
            for i in order:
                q = self._lanes[i][lane]
                for k, b in enumerate(q):
                    if b.stream in self._busy:
                        continue
                    taken, n = [b], b.n
                    del q[k]
                    while k < len(q) and q[k].stream == b.stream and q[k].tier == b.tier and \
                            q[k].apply is b.apply and n + q[k].n <= self.batch_max:
                        n += q[k].n
                        taken.append(q[k])
                        del q[k]
                    self._busy.add(b.stream)
                    if i != w:
                        self.stolen += 1
                    return lane, taken
        return None, None

    def _run(self, w: int) -> None:
        while True:
            with self._cond:
                lane, taken = self._take(w)
                while taken is None:
                    if self._closing and not any(self._queued.values()):
                        return
                    self._cond.wait(0.1)
                    lane, taken = self._take(w)
            requeue = self._apply(taken)
            with self._cond:
                self._busy.discard(taken[0].stream)
                if requeue:       # refused before anything changed: back to the front, in order
                    self._lanes[w][lane].extendleft(reversed(taken))
                else:
                    self._queued[lane] -= sum(b.n for b in taken)
                self._cond.notify_all()
            if requeue:
                time.sleep(RETRY_FULL_S)

    def _apply(self, taken: list) -> bool:
        """Apply merged batches; True if they must be retried (the disk is full for now)."""
        b0 = taken[0]
        t0 = time.perf_counter()
        try:
            if len(taken) == 1:
                ids, lsn = b0.apply(b0.vectors, b0.tier, b0.texts, b0.confidence)
            else:
                ids, lsn = b0.apply(np.concatenate([b.vectors for b in taken]), b0.tier,
                                    [t for b in taken for t in b.texts],
                                    np.concatenate([b.confidence for b in taken]))
        except StorageFullError:
            return True
        except (EngramError, OSError) as e:
            for b in taken:
                b.error = e
                b.done.set()
            log.error("engram: an ingest batch failed: %s", e)
            return False
        at = 0
        for b in taken:
            b.ids, b.lsn = ids[at:at + b.n], lsn
            at += b.n
            b.done.set()
        n = at
        dt = max(time.perf_counter() - t0, 1e-6)
        with self._cond:
            self.applied += n
            self.batches += 1
            self._rate = n / dt if not self._rate else 0.9 * self._rate + 0.1 * (n / dt)
        return False

    def close(self) -> None:
        """Apply everything accepted, then stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()
