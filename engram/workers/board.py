"""Slots in shared memory whose state words change only by the C library's atomics.

The task board (engram/workers.py) and the hop board (engram/stealing.py) are
both a header of u64 counters and an array of slots whose first field is a u32
state; a slot is claimed by compare-exchange on that word, so two processes
can never both own it.
"""
from __future__ import annotations

import numpy as np

from engram.kernels.native import load_c


class SlotBoard:
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
