"""Trace rings: one per process, in a shared segment; the producer's writer and readers' cursors."""
from __future__ import annotations

import math
import os
import re

import numpy as np

from engram.errors import EngramError
from engram.layout import TRACE_EVENT_DTYPE, TRACE_RING_HEADER_DTYPE, schema
from engram.observe.tracing.config import KINDS, TraceConfig
from engram.store.shm.names import EngineName, find, objects_of
from engram.store.shm.segment import Segment, align_up

KIND = schema.CONSTANTS["TABLE_TRACE"]


def ring_name(engine: EngineName, pid: int) -> str:
    """The name of the trace ring of process ``pid`` (AttachError if it has none)."""
    return find(engine, f"trace.{pid}")


def ring_names(engine: EngineName) -> list:
    return sorted(n for what, names in objects_of(engine).items() if _RING.match(what) for n in names)


_RING = re.compile(r"^trace\.\d+$")


class Ring:
    """A trace ring segment: the producer's view (writable) or a reader's (read-only)."""

    def __init__(self, seg: Segment):
        self.seg = seg
        self.header = seg.array(0, TRACE_RING_HEADER_DTYPE, 1, field="trace ring header")
        h = self.header[0]
        self.capacity = int(h["capacity"])
        if self.capacity != seg.h("capacity") or self.capacity < 1 or self.capacity & (self.capacity - 1):
            raise seg.refuse("capacity", f"(ring header) is {self.capacity:,}: not a power of two, or not the "
                             f"segment header's {seg.h('capacity'):,}")
        if int(h["head"]) >= 1 << 62:
            raise seg.refuse("head", f"is {int(h['head']):,}: no ring has written that many events")
        if int(h["pid"]) == 0:
            raise seg.refuse("pid", "is 0: no process writes this ring")
        if int(h["worker"]) > 0xFFFF:
            raise seg.refuse("worker", f"is {int(h['worker']):,}, more than a trace event can name")
        if not 0.0 < float(h["sample"]) <= 1.0:
            raise seg.refuse("sample", f"is {float(h['sample'])}, not in (0, 1]")
        if not math.isfinite(float(h["min_strength"])):
            raise seg.refuse("min_strength", f"is {float(h['min_strength'])}, not a finite number")
        self.events = seg.array(align_up(TRACE_RING_HEADER_DTYPE.itemsize), TRACE_EVENT_DTYPE, self.capacity,
                                field="capacity")

    @classmethod
    def create(cls, engine: EngineName, cfg: TraceConfig, worker: int) -> "Ring":
        data = align_up(TRACE_RING_HEADER_DTYPE.itemsize) + cfg.ring_size * TRACE_EVENT_DTYPE.itemsize
        seg = Segment.create_fresh(lambda salt: engine.unique(f"trace.{os.getpid()}", salt), kind=KIND,
                                   data_bytes=data, capacity=cfg.ring_size)
        h = seg.array(0, TRACE_RING_HEADER_DTYPE, 1)
        h["capacity"], h["pid"], h["worker"] = cfg.ring_size, os.getpid(), worker
        h["kinds"], h["min_strength"], h["sample"] = cfg.mask, cfg.min_strength, cfg.sample
        return cls(seg)

    @classmethod
    def attach(cls, name: str) -> "Ring":
        return cls(Segment.attach(name, kind=KIND))

    def writer(self):
        from engram.kernels._cy.trace import TraceWriter
        return TraceWriter(self.header.ctypes.data, self.events.ctypes.data, int(self.header["worker"][0]), self)

    def close(self) -> None:
        self.header["closed"] = 1


class Cursor:
    """A reader's position in one ring: read() returns the events written since, in
    order, and counts those overwritten before it got to them (drop-oldest)."""

    def __init__(self, ring: Ring, from_start: bool = True):
        self.ring = ring
        self.pos = 0 if from_start else int(ring.header["head"][0])
        self.lost = 0

    def read(self, limit: int = 1 << 20) -> np.ndarray:
        head = int(self.ring.header["head"][0])
        cap = self.ring.capacity
        if head - self.pos > cap:                      # lapped: the oldest are gone
            self.lost += head - cap - self.pos
            self.pos = head - cap
        end = min(head, self.pos + limit)
        if end <= self.pos:
            return np.zeros(0, TRACE_EVENT_DTYPE)
        idx = np.arange(self.pos, end, dtype=np.uint64)
        slots = (idx & np.uint64(cap - 1)).astype(np.int64)
        ev = self.ring.events[slots].copy()
        # a seqlock read: the writer zeroes seq before it touches a slot and sets it last,
        # so an event whose seq is right both in the copy and again after it is whole
        again = self.ring.events["seq"][slots]
        want = idx + np.uint64(1)
        ok = (ev["seq"] == want) & (again == want)    # rewritten while we copied: lost, never torn
        self.lost += int((~ok).sum())
        self.pos = end
        return ev[ok]


class Tracer:
    """This process's writer (a no-op when tracing is off)."""

    def __init__(self, engine: EngineName | None, cfg: TraceConfig | None, worker: int = 0):
        self.ring = None
        if engine is None or cfg is None:
            from engram.kernels._cy.trace import NoopWriter
            self.writer = NoopWriter()
        else:
            self.ring = Ring.create(engine, cfg, worker)
            self.writer = self.ring.writer()
        self.emit = self.writer.emit

    @property
    def enabled(self) -> bool:
        return self.ring is not None

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()


def config_of(engine: EngineName):
    """The engine's trace configuration, read from the owner's ring (None: tracing off)."""
    try:
        r = Ring.attach(ring_name(engine, engine.pid))
    except EngramError:
        return None
    h = r.header[0]
    kinds = tuple(k for k, v in KINDS.items() if (int(h["kinds"]) >> v) & 1)
    return TraceConfig(kinds=kinds, min_strength=float(h["min_strength"]), sample=float(h["sample"]),
                       ring_size=int(h["capacity"]))
