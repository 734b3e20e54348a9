"""The trace events of one memory space, one method per kind (fields: docs/observability.md).

A space's code calls ``events.remember(first, n)`` and the like unconditionally;
with tracing off it holds NO_EVENTS, whose methods do nothing, bound once.

Every event carries a trace id. A recall takes one when it starts and hands it to
whoever runs its stages (this process, or a worker through the task board), so its
seeds, scan, spread, hops and results all carry it; remember, link and forget take
one each. Spans are written when they end, stamped with their start (CLOCK_MONOTONIC
ns, which is time.perf_counter_ns on Linux) and their duration as the value.
"""
from __future__ import annotations

import itertools
import os

import numpy as np

from engram.observe.tracing.config import KINDS

_ids = itertools.count(1)


def next_trace_id() -> int:
    """A request id unique across the engine's processes: pid in the high bits."""
    return (os.getpid() << 40) | next(_ids)


class SpaceEvents:
    """Events of one space written to this process's ring through ``writer`` (a
    TraceWriter); ``space`` is the space's label index (engram/observe/metrics)."""

    def __init__(self, writer, space: int):
        self._emit, self._each, self._space = writer.emit, writer.emit_each, space

    def trace_id(self) -> int:
        return next_trace_id()

    def recall(self, trace_id: int, k: int, ids, hops, scores, start_ns: int, total_ns: int) -> None:
        """The recall span (on the caller's process and thread) and its results."""
        self._emit(KINDS["recall"], self._space, trace_id, k, len(ids), float(total_ns), 1.0, start_ns)
        self._each(KINDS["result"], self._space, trace_id, np.asarray(ids, np.int64), np.asarray(hops, np.int64),
                   np.zeros(len(ids)), np.asarray(scores, np.float32))

    def scan(self, trace_id: int, found: int, start_ns: int, ns: int) -> None:
        """The similarity scan's span: node_a the seeds it found."""
        self._emit(KINDS["scan"], self._space, trace_id, found, 0, float(ns), 1.0, start_ns)

    def seeds(self, trace_id: int, ids, cosine, activation) -> None:
        """The scan's seeds: node_a the memory, node_b its rank, value its cosine, strength
        its seed activation (its cosine when the recall does not spread)."""
        n = len(ids)
        self._each(KINDS["seed"], self._space, trace_id, np.asarray(ids, np.int64), np.arange(n, dtype=np.int64),
                   np.asarray(cosine, np.float64), np.asarray(activation, np.float32))

    def spread(self, trace_id: int, hops: int, touched: int, start_ns: int, ns: int) -> None:
        self._emit(KINDS["spread"], self._space, trace_id, hops, touched, float(ns), 1.0, start_ns)

    def hop(self, trace_id: int, hop: int, frontier: int, start_ns: int, ns: int) -> None:
        self._emit(KINDS["hop"], self._space, trace_id, hop, frontier, float(ns), 1.0, start_ns)

    def remember(self, first: int, n: int) -> int:
        """Returns the trace id it used: the interference the batch caused carries it too."""
        trace_id = next_trace_id()
        self._emit(KINDS["remember"], self._space, trace_id, first, n, 0.0, 1.0)
        return trace_id

    def link(self, src: int, dst: int, n: int, weight: float) -> None:
        self._emit(KINDS["link"], self._space, next_trace_id(), src, dst, float(n), weight)

    def forget(self, first: int, n: int) -> None:
        self._emit(KINDS["forget"], self._space, next_trace_id(), first, n, 0.0, 1.0)

    def interference(self, trace_id: int, weakened, partner, confidence, similarity) -> None:
        """node_a the weakened memory, node_b its closest competitor, value its confidence
        after, strength their cosine (proactive or retroactive: by id order)."""
        self._each(KINDS["interference"], self._space, trace_id, np.asarray(weakened, np.int64),
                   np.asarray(partner, np.int64), np.asarray(confidence, np.float64),
                   np.asarray(similarity, np.float32))

    def reconsolidation(self, memory: int, versions: int, plasticity: float) -> None:
        self._emit(KINDS["reconsolidation"], self._space, next_trace_id(), memory, versions, 0.0, plasticity)

    def priming(self, first: int, type_code: int, n: int) -> None:
        """node_b: 0 repetition, 1 semantic, 2 associative."""
        self._emit(KINDS["priming"], self._space, next_trace_id(), first, type_code, float(n), 1.0)


class NoEvents(SpaceEvents):
    """Tracing off: every event method does nothing."""

    def __init__(self):
        self._space = 0

    def trace_id(self) -> int:
        return 0

    def recall(self, *a) -> None:
        pass

    def scan(self, *a) -> None:
        pass

    def seeds(self, *a) -> None:
        pass

    def spread(self, *a) -> None:
        pass

    def hop(self, *a) -> None:
        pass

    def remember(self, *a) -> int:
        return 0

    def link(self, *a) -> None:
        pass

    def forget(self, *a) -> None:
        pass

    def interference(self, *a) -> None:
        pass

    def reconsolidation(self, *a) -> None:
        pass

    def priming(self, *a) -> None:
        pass


NO_EVENTS = NoEvents()
