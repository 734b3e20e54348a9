"""Cache miss rates from hardware counters (perf_event_open), where the machine allows.

    with CacheCounters() as cc:
        ...work...
    cc.result()   # {"l1d_miss_rate": ..., "llc_miss_rate": ...} or {"supported": False, "reason": ...}

Generic perf events name the L1 data cache and the last-level cache; L2 has no
generic event (it needs model-specific raw events), so it is not reported. Many
VMs expose no counters at all: then every figure is "not supported" with the
kernel's reason, never a made-up number.
"""
from __future__ import annotations

import os

from engram.kernels.native import load_c

PERF_TYPE_HW_CACHE = 3
CACHE_L1D, CACHE_LL = 0, 2
OP_READ = 0
RESULT_ACCESS, RESULT_MISS = 0, 1
EVENTS = {
    "l1d_reads": (PERF_TYPE_HW_CACHE, CACHE_L1D | OP_READ << 8 | RESULT_ACCESS << 16),
    "l1d_misses": (PERF_TYPE_HW_CACHE, CACHE_L1D | OP_READ << 8 | RESULT_MISS << 16),
    "llc_reads": (PERF_TYPE_HW_CACHE, CACHE_LL | OP_READ << 8 | RESULT_ACCESS << 16),
    "llc_misses": (PERF_TYPE_HW_CACHE, CACHE_LL | OP_READ << 8 | RESULT_MISS << 16),
}


def probe() -> tuple:
    """(supported, reason): whether this thread can count L1D reads here."""
    fns = load_c().fns
    fd = fns["eg_perf_open"](*EVENTS["l1d_reads"])
    if fd < 0:
        return False, f"perf_event_open: {os.strerror(-fd)}"
    fns["eg_perf_close"](int(fd))
    return True, ""


class CacheCounters:
    """Counts L1D and last-level-cache reads and misses of the calling thread."""

    def __init__(self):
        self._fns = load_c().fns
        self.fds, self.reason = {}, ""
        for name, (typ, cfg) in EVENTS.items():
            fd = self._fns["eg_perf_open"](typ, cfg)
            if fd < 0:
                self.reason = self.reason or f"{name}: perf_event_open: {os.strerror(-fd)}"
                continue
            self.fds[name] = int(fd)
        self.supported = "l1d_reads" in self.fds and "l1d_misses" in self.fds
        self.start = self.end = None

    def read(self) -> dict:
        return {n: int(self._fns["eg_perf_read"](fd)) for n, fd in self.fds.items()}

    def __enter__(self):
        self.start = self.read()
        return self

    def __exit__(self, *exc):
        self.end = self.read()
        self.close()

    def result(self) -> dict:
        if not self.supported or self.start is None or self.end is None:
            return {"supported": False, "reason": self.reason or "not measured"}
        d = {n: self.end[n] - self.start[n] for n in self.start}
        out = {"supported": True, **d}
        out["l1d_miss_rate"] = d["l1d_misses"] / d["l1d_reads"] if d.get("l1d_reads") else float("nan")
        if "llc_reads" in d and "llc_misses" in d:
            out["llc_miss_rate"] = d["llc_misses"] / d["llc_reads"] if d["llc_reads"] else float("nan")
        return out

    def close(self) -> None:
        for fd in self.fds.values():
            self._fns["eg_perf_close"](fd)
        self.fds = {}
