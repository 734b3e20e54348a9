"""Spreading metrics in shared memory: one 64-byte slot per process (the owner is
slot 0, worker w is slot w + 1), each written only by its process, summed by
whoever reads (the owner, `engram inspect`, the Prometheus exporter to come).

    engram_spreading_latency_prediction_error   mean relative error; share within 20%
    engram_spreading_cache_miss_rate            L1D misses / reads over sampled spreads,
                                                or "not supported" (no hardware counters)
    engram_spreading_pool_utilization           records held / capacity
    activation pool hit rate, high-water mark   from the pool's own header
"""
from __future__ import annotations

import numpy as np

from .layout import SPREADING_METRICS_DTYPE, SPREADING_METRICS_HEADER_DTYPE, schema
from .shm.names import EngineName
from .shm.segment import Segment

KIND = schema.CONSTANTS["TABLE_SPREADING"]
SAMPLE_EVERY = 64           # spreads between hardware-counter samples (a read costs ~1 us)


def segment_name(engine: EngineName) -> str:
    return engine.engine_object("spreading")


class SpreadingMetrics:
    def __init__(self, seg: Segment):
        self.seg = seg
        self.header = seg.array(0, SPREADING_METRICS_HEADER_DTYPE, 1)
        self.slots = seg.array(SPREADING_METRICS_HEADER_DTYPE.itemsize, SPREADING_METRICS_DTYPE,
                               int(self.header["slots"][0]))

    @classmethod
    def create(cls, engine: EngineName, slots: int, counters: bool) -> "SpreadingMetrics":
        data = SPREADING_METRICS_HEADER_DTYPE.itemsize + slots * SPREADING_METRICS_DTYPE.itemsize
        seg = Segment.create(segment_name(engine), kind=KIND, data_bytes=data, capacity=slots)
        h = seg.array(0, SPREADING_METRICS_HEADER_DTYPE, 1)
        h["slots"], h["counters"] = slots, int(counters)
        return cls(seg)

    @classmethod
    def attach(cls, engine: EngineName, writable: bool = False) -> "SpreadingMetrics":
        return cls(Segment.attach(segment_name(engine), kind=KIND, writable=writable))

    def slot(self, i: int) -> "SlotWriter":
        return SlotWriter(self.slots[i:i + 1], bool(self.header["counters"][0]))

    def summary(self, pool_stats: dict | None = None) -> dict:
        s = {f: int(self.slots[f].sum()) for f in SPREADING_METRICS_DTYPE.names}
        pred = s["predicted"]
        out = {
            "spreads": s["spreads"], "partial": s["partial"], "fallback": s["fallback"],
            "engram_spreading_latency_prediction_error": (s["error_ppm"] / 1e6 / pred) if pred else None,
            "prediction_within_20pct": (s["within_20pct"] / pred) if pred else None,
            "engram_spreading_cache_miss_rate": ((s["l1d_misses"] / s["l1d_reads"]) if s["l1d_reads"] else None)
            if self.header["counters"][0] else "not supported",
        }
        if pool_stats is not None:
            out["engram_spreading_pool_utilization"] = pool_stats["utilization"]
            out["activation_pool_hit_rate"] = pool_stats["hit_rate"]
            out["pool_high_water_mark"] = pool_stats["high_water"]
        return out


class SlotWriter:
    """This process's slot: plain stores (single writer), no allocation per call."""

    def __init__(self, rec: np.ndarray, counters: bool):
        self.rec = rec
        self.counters = counters
        self._n = 0

    def sample_counters(self) -> bool:
        """Whether this spread should be measured with hardware counters."""
        self._n += 1
        return self.counters and self._n % SAMPLE_EVERY == 0

    def record(self, predicted_ns: float, hop_ns: float, partial: bool, fallback: bool, warm: bool,
               cache: dict | None = None) -> None:
        r = self.rec
        if fallback:
            r["fallback"] += 1
            return
        r["spreads"] += 1
        if partial:
            r["partial"] += 1
        if warm and predicted_ns > 0 and hop_ns > 0:
            err = abs(predicted_ns - hop_ns) / hop_ns
            r["predicted"] += 1
            r["error_ppm"] += int(min(err, 1e6) * 1e6)
            if err < 0.2:
                r["within_20pct"] += 1
        if cache is not None and cache.get("supported"):
            r["l1d_reads"] += cache["l1d_reads"]
            r["l1d_misses"] += cache["l1d_misses"]
