"""RecallContext: what one process brings to recall in a space, besides the space itself.

The settings, the latency budget's models (they learn this process's speed), the
clock, and where the process records: its spreading metrics and trace events
(no-op objects when off), and a HopSplitter when idle workers may take part of
a large hop. The owner keeps one per space; a worker keeps one per space it
serves and swaps in the settings each request carries.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from engram.config import RecallConfig
from engram.observe.metrics.spreading import NO_SPREADING, SpreadingRecorder
from engram.observe.tracing.events import NO_EVENTS, SpaceEvents
from engram.recall.budget import AdaptiveBatcher, LatencyPredictor, topology


@dataclass
class RecallContext:
    config: RecallConfig = field(default_factory=RecallConfig)
    predictor: LatencyPredictor = field(default_factory=LatencyPredictor)
    batcher: AdaptiveBatcher = field(default_factory=lambda: AdaptiveBatcher(topology()))
    clock: object = time.time_ns        # wall-clock ns of access, retention and priming; tests inject one
    spreading: SpreadingRecorder = NO_SPREADING
    events: SpaceEvents = NO_EVENTS
    splitter: object = None             # engram.workers.stealing.HopSplitter, or None: hops run whole

    def stats(self, reset: bool = False) -> dict:
        """The latency predictor's error distribution and the batcher's state; reset: then
        forget the errors seen so far (the models keep what they learned)."""
        p, b = self.predictor, self.batcher
        out = {"prediction_error": p.stats.summary(), "spread_estimate_error": p.spread_stats.summary(),
               "hops_seen": p.hops_seen, "spreads_seen": p.spreads_seen,
               "batch_size": b.batch_size, "batch_changes": b.changes}
        if reset:
            p.stats.errors.clear()
            p.spread_stats.errors.clear()
        return out
