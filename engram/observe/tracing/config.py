"""What tracing keeps: the event kinds, the filters, the ring size, the collector's outputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engram.errors import InvalidInputError, shown

FORMATS = ("jsonl", "perfetto")
KINDS = {                     # id: what node_a / node_b / value / strength mean
    "recall": 1,              # span: node_a = k, node_b = results, value = duration ns
    "scan": 2,                # span: node_a = rows scanned, value = ns
    "spread": 3,              # span: node_a = hops run, node_b = nodes touched, value = ns
    "hop": 4,                 # span: node_a = hop, node_b = frontier nodes, value = ns
    "seed": 5,                # instant: node_a = memory id, strength = seed activation
    "result": 6,              # instant: node_a = memory id, node_b = hops, strength = score
    "remember": 7,            # instant: node_a = first id, node_b = count
    "link": 8,                # instant: node_a = src, node_b = dst, strength = weight
    "forget": 9,              # instant: node_a = first id, node_b = count
    "priming": 10,            # cognitive events (recorded by the cognitive-recall work)
    "interference": 11,
    "reconsolidation": 12,
}
KIND_NAMES = {v: k for k, v in KINDS.items()}
SPANS = {"recall", "scan", "spread", "hop"}
DEFAULT_RING = 1 << 16


@dataclass(frozen=True)
class ExportPolicy:
    """How the collector's network exporters (OTLP, Loki) deliver: every batch is retried
    on 429, 5xx and connection errors with exponential backoff (or the receiver's
    Retry-After) up to ``attempts`` tries; what still fails, or overflows the queue of
    ``queue_bytes`` waiting to be sent, is counted as dropped (never silently)."""
    attempts: int = 8                 # tries per batch (1: no retry)
    backoff_s: float = 0.2            # first wait; doubles per try, with jitter
    max_backoff_s: float = 10.0
    timeout_s: float = 10.0           # per request
    queue_bytes: int = 64 << 20       # encoded batches waiting; past it the oldest are dropped
    close_timeout_s: float = 30.0     # at shutdown, how long the queue may take to drain
    otlp_batch_spans: int = 1000      # spans per OTLP request
    loki_push_bytes: int = 1 << 20    # bytes per Loki push (a default Loki takes 4 MiB/s, 6 MiB bursts)

    def check(self) -> "ExportPolicy":
        if not (isinstance(self.attempts, int) and self.attempts >= 1):
            raise InvalidInputError(f"attempts must be an integer >= 1, got {shown(self.attempts)}")
        for name in ("backoff_s", "max_backoff_s", "timeout_s", "close_timeout_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise InvalidInputError(f"{name} must be a finite number >= 0, got {shown(v)}")
        for name, least in (("queue_bytes", 1 << 16), ("otlp_batch_spans", 1), ("loki_push_bytes", 4096)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise InvalidInputError(f"{name} must be an integer >= {least}, got {shown(v)}")
        return self


@dataclass(frozen=True)
class TraceConfig:
    """Which events are kept: kinds (names; default all), min_strength, and a
    sample fraction (1.0: every event). ring_size: events per process ring."""
    kinds: tuple = tuple(KINDS)
    min_strength: float = 0.0
    sample: float = 1.0
    ring_size: int = DEFAULT_RING
    collect_to: str | None = None     # a directory: the Engine starts a collector writing there
    formats: tuple = ("jsonl", "perfetto")
    loki_url: str | None = None       # the collector also pushes to Loki here
    otlp_url: str | None = None       # and exports OTLP/HTTP spans here
    export: ExportPolicy = ExportPolicy()

    def check(self) -> "TraceConfig":
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise InvalidInputError(f"unknown trace event kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        if not (0.0 < float(self.sample) <= 1.0):
            raise InvalidInputError(f"sample must be in (0, 1], got {shown(self.sample)}")
        if not np.isfinite(self.min_strength):
            raise InvalidInputError("min_strength must be finite")
        n = self.ring_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 64 or n & (n - 1):
            raise InvalidInputError(f"ring_size must be a power of two >= 64, got {shown(n)}")
        bad = set(self.formats) - set(FORMATS)
        if bad:
            raise InvalidInputError(f"unknown trace formats {sorted(bad)}; known: {', '.join(FORMATS)}")
        self.export.check()
        return self

    @property
    def mask(self) -> int:
        return sum(1 << KINDS[k] for k in self.kinds)


