"""Spreading metrics, kept in the engine's metrics segment (engram/observe/metrics) like
every other metric: each process that spreads (the owner, each worker) adds to
its own slot, and readers sum the slots.

    engram_spreading_latency_prediction_error   mean relative error; share within 20%
    engram_spreading_cache_miss_rate            L1D misses / reads over sampled spreads,
                                                or "not supported" (no hardware counters)
    engram_spreading_pool_utilization           records held / capacity
    activation pool hit rate, high-water mark   from the pool's own header
"""
from __future__ import annotations

from engram.observe.metrics.recorder import recorder

SAMPLE_EVERY = 64           # spreads between hardware-counter samples (a read costs ~1 us)


class SpreadingRecorder:
    """This process's spreading recorders (over its metrics slot): no allocation per call."""

    def __init__(self, seg, slot: int, counters: bool):
        r = recorder(seg, slot, "")
        self._spreads, self._predicted = r.spreading_requests_total, r.spreading_predicted_total
        self._within, self._error = r.spreading_prediction_within_20pct_total, r.spreading_prediction_error_ppm_total
        self._reads, self._misses = r.spreading_l1d_reads_total, r.spreading_l1d_misses_total
        self.counters = counters
        self._n = 0

    def sample_counters(self) -> bool:
        """Whether this spread should be measured with hardware counters."""
        self._n += 1
        return self.counters and self._n % SAMPLE_EVERY == 0

    def record(self, predicted_ns: float, hop_ns: float, partial: bool, fallback: bool, warm: bool,
               cache: dict | None = None) -> None:
        if fallback:
            return
        self._spreads.inc()
        if warm and predicted_ns > 0 and hop_ns > 0:
            err = abs(predicted_ns - hop_ns) / hop_ns
            self._predicted.inc()
            self._error.inc(int(min(err, 1e6) * 1e6))
            if err < 0.2:
                self._within.inc()
        if cache is not None and cache.get("supported"):
            self._reads.inc(cache["l1d_reads"])
            self._misses.inc(cache["l1d_misses"])


def summary(seg, pool_stats: dict | None = None) -> dict:
    """The spreading metrics summed over every process's slot."""
    t = {m: v[""] for m, v in seg.totals().items() if "" in v}
    pred = t["engram_spreading_predicted_total"]
    reads = t["engram_spreading_l1d_reads_total"]
    out = {
        "spreads": t["engram_spreading_requests_total"],
        "engram_spreading_latency_prediction_error":
            t["engram_spreading_prediction_error_ppm_total"] / 1e6 / pred if pred else None,
        "prediction_within_20pct": t["engram_spreading_prediction_within_20pct_total"] / pred if pred else None,
        "engram_spreading_cache_miss_rate": (t["engram_spreading_l1d_misses_total"] / reads if reads else None)
        if t["engram_spreading_hw_counters"] else "not supported",
    }
    if pool_stats is not None:
        out["engram_spreading_pool_utilization"] = pool_stats["utilization"]
        out["activation_pool_hit_rate"] = pool_stats["hit_rate"]
        out["pool_high_water_mark"] = pool_stats["high_water"]
    return out


NO_SPREADING = SpreadingRecorder(None, 0, False)    # a process that records nothing (an attached reader)
