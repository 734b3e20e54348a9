"""ActivationRecordPool: fixed-size activation records in shared memory, handed
out and taken back without allocating, from any process attached to the engine.

The segment holds a PoolHeader (freelist head, bump pointer, counters; see
engram/layout/schema.py) and then ActivationRecord[capacity]. The freelist is a
lock-free Treiber stack updated by C11 compare-exchange (csrc/kernels/pool.c);
each process keeps a local cache of record indices (default 256) and touches the
shared stack only to refill or spill half of it. Spreading results travel in
these records: a worker fills records for what a spread touched, the caller
reads them and releases them.

    pool = ActivationRecordPool.create(engine_name, capacity=1 << 16)
    idx = pool.acquire(100)                  # uint32 record indices
    pool.records[idx]["node"] = ...
    pool.release(idx)
    pool.stats()                             # hit rate, high-water mark, in use, ...
"""
from __future__ import annotations

import threading

import numpy as np

from engram.errors import EngramError, InvalidInputError, shown
from engram.kernels import abi
from engram.kernels.native import load_c
from engram.layout import ACTIVATION_RECORD_DTYPE, POOL_HEADER_DTYPE, schema
from engram.store.shm import find
from engram.store.shm.names import EngineName
from engram.store.shm.segment import Segment

KIND = schema.CONSTANTS["TABLE_POOL"]
DEFAULT_CAPACITY = 1 << 16
DEFAULT_CACHE = 256


class PoolExhaustedError(EngramError):
    """Every record of the pool is held."""


def views(seg: Segment) -> tuple:
    """(header, records) of a pool segment, its header checked: the C freelist code trusts
    the head, the bump pointer and the capacity, so a reader refuses them out of bounds."""
    header = seg.array(0, POOL_HEADER_DTYPE, 1, field="pool header")
    h = header[0]
    cap = int(h["capacity"])
    if cap != seg.h("capacity") or cap < 1:
        raise seg.refuse("capacity", f"(pool header) is {cap:,}, the segment header's is {seg.h('capacity'):,}")
    records = seg.array(POOL_HEADER_DTYPE.itemsize, ACTIVATION_RECORD_DTYPE, cap, field="capacity")
    head = int(h["head"]) & 0xFFFFFFFF
    if head != schema.CONSTANTS["NIL"] and head >= cap:
        raise seg.refuse("head", f"points at record {head:,} of {cap:,}")
    if int(h["bump"]) > cap:
        raise seg.refuse("bump", f"is {int(h['bump']):,}, more than the {cap:,} records")
    return header, records


class ActivationRecordPool:
    """The engine's shared record pool, as seen from this process (owner or attached)."""

    def __init__(self, seg: Segment, cache_size: int = DEFAULT_CACHE):
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or not 1 <= cache_size <= abi.POOL_CACHE_MAX:
            raise InvalidInputError(f"cache_size must be an integer in [1, {abi.POOL_CACHE_MAX}], "
                                    f"got {shown(cache_size)}")
        self.seg = seg
        self.header, self.records = views(seg)
        self.capacity = int(self.header["capacity"][0])
        self._fns = load_c().fns
        if "eg_pool_acquire" not in self._fns:
            raise EngramError("the C kernel library has no pool functions: rebuild (pip install -e .)")
        self._h = self.header.ctypes.data
        self._r = self.records.ctypes.data
        self._cache_size = cache_size
        self._local = threading.local()      # one cache per thread of this process

    @classmethod
    def create(cls, engine: EngineName, capacity: int = DEFAULT_CAPACITY, cache_size: int = DEFAULT_CACHE):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity < 0xFFFFFFFF:
            raise InvalidInputError(f"capacity must be an integer in [1, 2**32 - 1), got {shown(capacity)}")
        data = POOL_HEADER_DTYPE.itemsize + capacity * ACTIVATION_RECORD_DTYPE.itemsize
        seg = Segment.create_fresh(lambda salt: engine.unique("pool", salt), kind=KIND, data_bytes=data,
                                   capacity=capacity)
        hdr = seg.array(0, POOL_HEADER_DTYPE, 1)
        if load_c().fns["eg_pool_init"](hdr.ctypes.data, capacity) != 0:
            raise EngramError("eg_pool_init refused the pool")
        return cls(seg, cache_size)

    @classmethod
    def attach(cls, engine: EngineName, cache_size: int = DEFAULT_CACHE):
        return cls(Segment.attach(find(engine, "pool"), kind=KIND, writable=True), cache_size)

    def _cache(self) -> np.ndarray:
        c = getattr(self._local, "cache", None)
        if c is None:
            c = np.zeros(abi.POOL_CACHE_BYTES // 8, np.uint64)   # 8-byte aligned eg_pool_cache_t
            c.view(np.uint32)[1] = self._cache_size
            c[1] = int(self.header["resets"][0])
            self._local.cache = c
        return c

    def acquire(self, n: int) -> np.ndarray:
        """n record indices (uint32), each marked held; PoolExhaustedError (nothing taken) if not all fit."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InvalidInputError(f"n must be an integer >= 0, got {shown(n)}")
        out = np.empty(int(n), np.uint32)
        got = self._fns["eg_pool_acquire"](self._h, self._r, self._cache().ctypes.data, out.ctypes.data, int(n))
        if got < 0:
            raise EngramError(f"eg_pool_acquire failed ({got})")
        if got < n:
            self._fns["eg_pool_release"](self._h, self._r, self._cache().ctypes.data, out.ctypes.data, got)
            raise PoolExhaustedError(f"the activation record pool is exhausted: {n} records asked, "
                                     f"{self.capacity - int(self.header['in_use'][0])} of {self.capacity} free")
        return out

    def release(self, idx, local: bool = True) -> None:
        """Give records back (all or nothing): each must be held, and appear once.
        local=False pushes them straight to the shared freelist instead of this
        thread's cache: for a process that releases what others acquire."""
        a = np.ascontiguousarray(np.atleast_1d(np.asarray(idx)))
        if a.dtype.kind not in "iu" or a.ndim != 1:
            raise InvalidInputError(f"record indices must be a 1-D integer array, got {a.dtype} {a.shape}")
        if a.size and (int(a.min()) < 0 or int(a.max()) >= self.capacity):
            raise InvalidInputError(f"record indices must be in [0, {self.capacity})")
        a = a.astype(np.uint32, copy=False)
        rc = self._fns["eg_pool_release"](self._h, self._r, self._cache().ctypes.data if local else None,
                                          a.ctypes.data, a.size)
        if rc < 0:
            held = (self.records["flags"][a] & 1) != 0
            if not held.all():
                raise InvalidInputError(f"record {int(a[~held][0])} is not held: released twice, or never acquired")
            raise InvalidInputError("the same record appears twice in one release")

    def flush(self) -> int:
        """Return this thread's cached records to the shared freelist."""
        c = getattr(self._local, "cache", None)
        return 0 if c is None else int(self._fns["eg_pool_flush"](self._h, self._r, c.ctypes.data))

    def reset(self) -> None:
        """While the engine is idle (nothing held, no call in flight): every record becomes
        never-used again and every process's cache is dropped."""
        if self._fns["eg_pool_reset"](self._h) != 0:
            raise InvalidInputError(f"the pool cannot be reset while {int(self.header['in_use'][0])} records are held")

    def stats(self) -> dict:
        h = self.header[0]
        acquired = int(h["acquired"])
        return {"capacity": self.capacity, "in_use": int(h["in_use"]), "high_water": int(h["high_water"]),
                "acquired": acquired, "released": int(h["released"]), "reused": int(h["reused"]),
                "allocations": int(h["fresh"]), "failed": int(h["failed"]), "resets": int(h["resets"]),
                "hit_rate": (int(h["reused"]) / acquired) if acquired else 0.0,
                "utilization": int(h["in_use"]) / self.capacity, "never_used": self.capacity - int(h["bump"])}

    def close(self, unlink: bool = False) -> None:
        self.flush()
        if unlink:
            Segment.unlink(self.seg.name)
