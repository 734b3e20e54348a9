"""Every metric engram records, declared once: name, kind, help, and whether it is
labelled by memory space. The segment layout, the recorders and the Prometheus
exporter all follow this table.

Histograms have fixed power-of-two buckets in nanoseconds (1.024 us .. 2^40 ns,
about 18 minutes): the bucket of a value is its bit length, so recording is a
shift and two adds, and sums are exact integers of nanoseconds (fixed point).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAX_SPACES = 16              # label values; spaces beyond MAX_SPACES - 1 fold into "other"
OTHER = "other"
HIST_MIN_BITS = 10           # first bucket: <= 2^10 ns
HIST_BUCKETS = 31            # 2^10 .. 2^40 ns, then +Inf
HIST_CELLS = HIST_BUCKETS + 1 + 2     # buckets, +Inf bucket, count, sum_ns


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str                # "counter" | "gauge" | "histogram"
    help: str
    per_space: bool = True
    unit: str = ""           # "seconds" for histograms of nanoseconds
    types: tuple = ()        # values of a second label (cognitive events' type, a trace sink)
    label: str = "type"      # that label's name

    @property
    def cells_per_label(self) -> int:
        """Cells per space label: one per type (or one), times a histogram's cells."""
        return (HIST_CELLS if self.kind == "histogram" else 1) * max(len(self.types), 1)


METRICS = (
    Metric("engram_recalls_total", "counter", "Recalls answered."),
    Metric("engram_recall_latency_seconds", "histogram", "Recall latency as the caller sees it.", unit="seconds"),
    Metric("engram_recall_partial_total", "counter", "Recalls whose spreading or scan stopped for the budget."),
    Metric("engram_recall_fallback_total", "counter", "Recalls answered from similarity alone for the budget."),
    Metric("engram_spread_hops_total", "counter", "Spreading hops run by recalls."),
    Metric("engram_spread_latency_seconds", "histogram", "Time in the spreading stage of recall.", unit="seconds"),
    Metric("engram_remembered_total", "counter", "Memories stored."),
    Metric("engram_remember_latency_seconds", "histogram", "Time of a remember call (a batch of memories).",
           unit="seconds"),
    Metric("engram_forgotten_total", "counter", "Memories forgotten."),
    Metric("engram_links_total", "counter", "Associations added."),
    Metric("engram_memories", "gauge", "Memories held (not forgotten)."),
    Metric("engram_priming_total", "counter", "Priming events.", types=("semantic", "associative", "repetition")),
    Metric("engram_interference_total", "counter", "Interference events.", types=("proactive", "retroactive", "fan")),
    Metric("engram_reconsolidation_total", "counter", "Reconsolidation updates applied."),
    # the approximate index (engram/workers/indexer.py): rate(rows_added) is its insert rate
    Metric("engram_index_vectors", "gauge", "Vectors in the space's approximate index (0: exact scan only)."),
    Metric("engram_index_tail_rows", "gauge", "Rows not in the index yet, which recall scans exactly."),
    Metric("engram_index_runs_total", "counter", "Index builds and extensions completed."),
    Metric("engram_index_rows_added_total", "counter", "Rows the index runs took."),
    Metric("engram_index_run_seconds", "histogram", "Time of one index build or extension.", unit="seconds"),
    Metric("engram_index_breadth", "gauge", "The index's search breadth (HNSW ef) the owner's audit chose: 0 not "
           "chosen yet, -1 the exact scan instead, -2 a scan of the index's 4-bit sketch (engram/recall/audit.py)."),
    Metric("engram_index_audits_total", "counter", "Audits of the index against an exact scan of a recall's query."),
    Metric("engram_tier_memories", "gauge", "Live memories whose vector is in each tier (hot f32, warm f16, "
           "cold int8).", types=("hot", "warm", "cold"), label="tier"),
    Metric("engram_tier_migrations_total", "counter", "Memories moved between tiers, by the tier they moved to.",
           types=("hot", "warm", "cold"), label="tier"),
    # spreading internals, from whichever process spreads (the owner, the workers)
    Metric("engram_spreading_requests_total", "counter", "Recalls that spread.", per_space=False),
    Metric("engram_spreading_predicted_total", "counter", "Of those, with a latency prediction.", per_space=False),
    Metric("engram_spreading_prediction_within_20pct_total", "counter", "Predictions within 20% of the hops' time.",
           per_space=False),
    Metric("engram_spreading_prediction_error_ppm_total", "counter",
           "Sum of relative prediction errors, in millionths.", per_space=False),
    Metric("engram_spreading_l1d_reads_total", "counter", "L1D reads over sampled spreads (hardware counters).",
           per_space=False),
    Metric("engram_spreading_l1d_misses_total", "counter", "L1D misses over sampled spreads.", per_space=False),
    Metric("engram_spreading_hw_counters", "gauge", "1 if this machine's hardware cache counters work.",
           per_space=False),
    # the trace collector (engram/observe/attach/collector.py): what never reached a consumer
    Metric("engram_trace_dropped_total", "counter", "Trace events dropped: overwritten in a full ring, or given up "
           "by an exporter.", per_space=False, types=("ring", "otlp", "loki"), label="sink"),
)
BY_NAME = {m.name: m for m in METRICS}


def layout():
    """{metric name: first cell index}, and the cells per slot (after the slot header)."""
    offsets, cell = {}, 0
    for m in METRICS:
        offsets[m.name] = cell
        cell += m.cells_per_label * (MAX_SPACES if m.per_space else 1)
    return offsets, cell


def schema_hash() -> int:
    text = ";".join(f"{m.name}:{m.kind}:{m.per_space}:{m.label}={','.join(m.types)}" for m in METRICS)
    text += f";{MAX_SPACES};{HIST_MIN_BITS};{HIST_BUCKETS}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def bucket_bounds_seconds():
    """Upper bounds (le) of the finite buckets, in seconds."""
    return [(1 << (HIST_MIN_BITS + i)) / 1e9 for i in range(HIST_BUCKETS)]
