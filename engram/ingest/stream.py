"""A producer's stream into one memory space: ``put`` returns at once, ``wait``/``flush``
wait for durability.

    st = mem.stream(lane="normal")
    seqs = st.put(vectors, content=texts)     # sequence numbers in this stream, 0, 1, 2, ...
    ids = st.wait(seqs[-1])                   # applied and durable: the memory ids of that put
    st.flush()                                # everything put so far

An observation is visible to recall once its batch is applied (an ingest
worker does that within milliseconds at the rates the lanes admit), and
durable under the engine's policy once ``wait`` returns for it.
"""
from __future__ import annotations

import bisect
import itertools
import threading

import numpy as np

from engram.errors import InvalidInputError
from engram.ingest.pool import LANES, Batch, IngestPool

_STREAM_IDS = itertools.count()


class Stream:
    """Made by ``Space.stream``. ``check(vectors, content, confidence, tier) -> (vectors, tier
    code, texts, confidence)`` is the space's input check; ``apply`` its trusted store of a
    checked batch -> (ids, lsn); ``durable(lsn)`` waits under the engine's policy."""

    def __init__(self, pool: IngestPool, lane: str, check, apply, durable, name: str = ""):
        if lane not in LANES:
            raise InvalidInputError(f"lane must be one of {', '.join(LANES)}, got {lane!r}")
        self.lane, self.name = lane, name
        self._pool, self._check, self._apply, self._durable = pool, check, apply, durable
        self._id = next(_STREAM_IDS)
        self._lock = threading.Lock()
        self._next = 0
        self._firsts: list = []           # first sequence number of each batch, ascending
        self._batches: list = []
        self._forgot_lsn = 0              # the last LSN of the batches dropped from the front

    def put(self, vectors, content=None, confidence=None, tier: str = "hot") -> np.ndarray:
        """Queue observations; returns their sequence numbers in this stream. Raises
        OverloadError (nothing queued; ``retry_after`` seconds) when the lane is full."""
        b = self.submit(vectors, content, confidence, tier)
        return np.arange(b.first_seq, b.first_seq + b.n, dtype=np.int64)

    def submit(self, vectors, content=None, confidence=None, tier: str = "hot") -> Batch:
        """``put``, returning the queued Batch itself, for ``settle`` (a channel from another
        process acknowledges each put in order and needs its ids however late it asks)."""
        if isinstance(vectors, np.ndarray) and vectors.ndim in (1, 2) and vectors.size:
            # a full lane refuses before the batch is checked and copied: under overload a
            # producer would otherwise spend most of its time on batches that are refused
            self._pool.admit(self.lane, 1 if vectors.ndim == 1 else vectors.shape[0])
        v, code, texts, conf = self._check(vectors, content, confidence, tier)
        if isinstance(vectors, np.ndarray) and np.may_share_memory(v, vectors):
            v = v.copy()        # applied later: a producer may refill its buffer once put returns
        with self._lock:     # one put at a time per stream, so its sequence numbers are in order
            b = Batch(self._id, self._next, v, code, texts, conf, self._apply)
            self._pool.submit(self.lane, b)
            self._next += b.n
            self._firsts.append(b.first_seq)
            self._batches.append(b)
            self._forget_done()
        return b

    def settle(self, b: Batch, timeout: float | None = None) -> np.ndarray:
        """Wait until batch ``b`` is applied and durable; its memory ids. Raises what applying
        it raised."""
        if not b.done.wait(timeout):
            raise TimeoutError(f"sequence number {b.first_seq} was not applied within {timeout} s")
        if b.error is not None:
            raise b.error
        self._durable(b.lsn)
        return b.ids

    def _forget_done(self) -> None:
        """Drop finished batches from the front (lock held) so a long stream stays small;
        their sequence numbers then wait for nothing."""
        k = 0
        while k < len(self._batches) - 1 and self._batches[k].done.is_set() and self._batches[k].error is None:
            k += 1
        if k > 64:
            self._forgot_lsn = max(b.lsn for b in self._batches[:k])
            del self._firsts[:k], self._batches[:k]

    def wait(self, seq: int, timeout: float | None = None) -> np.ndarray:
        """Wait until the put holding ``seq`` is applied and durable; returns that put's memory
        ids (empty if it finished long ago). Raises what applying it raised."""
        seq = int(seq)
        if not 0 <= seq < self._next:
            raise InvalidInputError(f"sequence number {seq} was not put on this stream (0..{self._next - 1})")
        with self._lock:
            i = bisect.bisect_right(self._firsts, seq) - 1
            b = self._batches[i] if i >= 0 else None
            forgot = self._forgot_lsn
        if b is None:               # applied long ago: durable once the last one dropped is
            self._durable(forgot)
            return np.zeros(0, np.int64)
        return self.settle(b, timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything put so far is applied and durable."""
        with self._lock:
            last = self._next - 1
        if last >= 0:
            self.wait(last, timeout)

    def __repr__(self):
        return f"<engram stream {self.name!r} lane={self.lane} put={self._next}>"
