"""The metrics segment: a header, the memory-space label table, and one
cache-line-aligned slot per process (a claim word, then u64 cells laid out by
engram/observe/metrics/definitions.py). A process adds only to its own slot; readers sum
every slot, so a dead process's counts are kept."""
from __future__ import annotations

import os
import time

import numpy as np

from engram.errors import EngramError, SegmentLayoutError
from engram.layout import METRICS_HEADER_DTYPE, METRICS_SLOT_HEADER_DTYPE, schema
from engram.observe.metrics import definitions as d
from engram.store.shm.names import EngineName, find, pid_alive
from engram.store.shm.segment import Segment, align_up

KIND = schema.CONSTANTS["TABLE_METRICS"]
DEFAULT_SLOTS = 64
MAX_SLOTS = 1 << 16
ROLE_OWNER, ROLE_WORKER, ROLE_OTHER = 0, 1, 2
NAME_BYTES = 64


class MetricsSegment:
    def __init__(self, seg: Segment):
        self.seg = seg
        self.header = seg.array(0, METRICS_HEADER_DTYPE, 1, field="metrics header")
        h = self.header[0]
        if int(h["schema_hash"]) != d.schema_hash():
            raise seg.refuse("schema_hash", f"is 0x{int(h['schema_hash']):016x}: its metric definitions differ from "
                             "this engram's (another version wrote it)", SegmentLayoutError)
        self.n_slots, self.slot_bytes = int(h["slots"]), int(h["slot_bytes"])
        self.offsets, self.n_cells = d.layout()
        if not 1 <= self.n_slots <= MAX_SLOTS or self.n_slots != seg.h("capacity"):
            raise seg.refuse("slots", f"is {self.n_slots:,}: not in [1, {MAX_SLOTS:,}] or not the segment "
                             f"header's capacity {seg.h('capacity'):,}")
        if self.slot_bytes != self._slot_bytes():
            raise seg.refuse("slot_bytes", f"is {self.slot_bytes:,}, this engram's slots take {self._slot_bytes():,}")
        if int(h["cells"]) != self.n_cells:
            raise seg.refuse("cells", f"is {int(h['cells']):,}, this engram's slots hold {self.n_cells:,}")
        if int(h["labels"]) != d.MAX_SPACES:
            raise seg.refuse("labels", f"is {int(h['labels']):,}, this engram keeps {d.MAX_SPACES}")
        if int(h["spaces"]) > d.MAX_SPACES - 1:
            raise seg.refuse("spaces", f"is {int(h['spaces']):,}, more than the {d.MAX_SPACES - 1} labels of spaces")
        off = METRICS_HEADER_DTYPE.itemsize
        self.names = seg.array(off, np.uint8, d.MAX_SPACES * NAME_BYTES, shape=(d.MAX_SPACES, NAME_BYTES),
                               field="labels")
        self.base = align_up(off + d.MAX_SPACES * NAME_BYTES)
        raw = seg.array(self.base, np.uint64, self.n_slots * self.slot_bytes // 8,
                        shape=(self.n_slots, self.slot_bytes // 8), field="slots x slot_bytes")
        hdr_cells = METRICS_SLOT_HEADER_DTYPE.itemsize // 8
        self.slot_headers = [raw[i, :hdr_cells].view(METRICS_SLOT_HEADER_DTYPE) for i in range(self.n_slots)]
        self.cells = raw[:, hdr_cells:hdr_cells + self.n_cells]       # (slots, cells)
        self._space_index: dict = {}

    @staticmethod
    def _slot_bytes() -> int:
        return align_up(METRICS_SLOT_HEADER_DTYPE.itemsize + d.layout()[1] * 8)

    @classmethod
    def create(cls, engine: EngineName, slots: int = DEFAULT_SLOTS) -> "MetricsSegment":
        sb = cls._slot_bytes()
        base = align_up(METRICS_HEADER_DTYPE.itemsize + d.MAX_SPACES * NAME_BYTES)
        seg = Segment.create_fresh(lambda salt: engine.unique("metrics", salt), kind=KIND,
                                   data_bytes=base + slots * sb, capacity=slots)
        h = seg.array(0, METRICS_HEADER_DTYPE, 1)
        h["slots"], h["slot_bytes"], h["labels"] = slots, sb, d.MAX_SPACES
        h["cells"], h["schema_hash"] = d.layout()[1], d.schema_hash()
        m = cls(seg)
        m._assign(d.OTHER, d.MAX_SPACES - 1)
        return m

    @classmethod
    def attach(cls, engine: EngineName, writable: bool = False) -> "MetricsSegment":
        return cls(Segment.attach(find(engine, "metrics"), kind=KIND, writable=writable))

    # -- labels ------------------------------------------------------------------------
    def _assign(self, name: str, i: int) -> None:
        b = name.encode()[:NAME_BYTES - 1]
        row = np.zeros(NAME_BYTES, np.uint8)
        row[:len(b)] = np.frombuffer(b, np.uint8)
        self.names[i] = row

    def label_names(self) -> list:
        return [bytes(r).rstrip(b"\0").decode(errors="replace") for r in self.names]

    def space_index(self, space: str, assign: bool = False) -> int:
        """The label index of a memory space; the owner assigns new ones (beyond the
        cap, spaces share the "other" label, so the label set stays bounded)."""
        i = self._space_index.get(space)
        if i is not None:
            return i
        names = self.label_names()
        if space in names:
            i = names.index(space)
        elif assign and int(self.header["spaces"][0]) < d.MAX_SPACES - 1:
            i = int(self.header["spaces"][0])
            self._assign(space, i)
            self.header["spaces"] = i + 1
        else:
            i = d.MAX_SPACES - 1
        self._space_index[space] = i
        return i

    # -- slots -------------------------------------------------------------------------
    def claim(self, role: int) -> int:
        """A free slot, now this process's (compare-exchange on its pid word); when none is
        free, a dead process's slot, adopted with its counts (readers sum every slot, so a
        counter goes on from there and never goes back): without this every worker restart
        or `engram trace collect` run kept a slot for good, and the 65th failed."""
        from engram.kernels.native import load_c
        cas = load_c().fns["eg_cas_u32"]
        pid = os.getpid()
        for i, h in enumerate(self.slot_headers):
            if int(h["pid"][0]) == pid:
                return i
            if int(h["pid"][0]) == 0 and cas(h.ctypes.data, 0, pid):
                h["claimed_ns"], h["role"] = time.time_ns(), role
                return i
        for i, h in enumerate(self.slot_headers):
            old = int(h["pid"][0])
            if old and not pid_alive(old) and cas(h.ctypes.data, old, pid):
                h["claimed_ns"], h["role"] = time.time_ns(), role
                return i
        raise EngramError(f"all {self.n_slots} metrics slots are taken by live processes")

    def cell_address(self, slot: int, metric: str, label: int, cell: int = 0) -> int:
        m = d.BY_NAME[metric]
        idx = self.offsets[metric] + (label if m.per_space else 0) * m.cells_per_label + cell
        return self.cells[slot].ctypes.data + 8 * idx

    # -- reading -----------------------------------------------------------------------
    def totals(self) -> dict:
        """{metric: {label: value or (buckets, count, sum_ns)}}, summed over every slot."""
        total = self.cells.sum(axis=0, dtype=np.uint64)
        names = self.label_names()
        used = [i for i, n in enumerate(names) if n]
        out = {}
        for m in d.METRICS:
            base = self.offsets[m.name]
            per = {}
            for li in (used if m.per_space else [0]):
                c = total[base + li * m.cells_per_label: base + (li + 1) * m.cells_per_label]
                label = names[li] if m.per_space else ""
                if m.types:
                    per[label] = {t: int(c[j]) for j, t in enumerate(m.types)}
                elif m.kind == "histogram":
                    per[label] = (c[:d.HIST_BUCKETS + 1].astype(np.int64), int(c[d.HIST_BUCKETS + 1]),
                                  int(c[d.HIST_BUCKETS + 2]))
                elif m.kind == "gauge":
                    per[label] = int(np.int64(np.uint64(c[0])))
                else:
                    per[label] = int(c[0])
            out[m.name] = per
        return out
