"""The trace events of one memory space, one method per kind (fields: docs/observability.md).

A space's code calls ``events.remember(first, n)`` and the like unconditionally;
with tracing off it holds NO_EVENTS, whose methods do nothing, bound once.
"""
from __future__ import annotations

import itertools
import os

from engram.observe.tracing.config import KINDS

_ids = itertools.count(1)


def next_trace_id() -> int:
    """A request id unique across the engine's processes: pid in the high bits."""
    return (os.getpid() << 40) | next(_ids)


class SpaceEvents:
    """Events of one space written to this process's ring through ``emit``; ``space`` is
    the space's label index (engram/observe/metrics)."""

    def __init__(self, emit, space: int):
        self._emit, self._space = emit, space

    def trace_id(self) -> int:
        return next_trace_id()

    def recall(self, trace_id: int, k: int, ids, hops, scores, timings: dict, info: dict, total_ns: int) -> None:
        emit, sp = self._emit, self._space
        emit(KINDS["recall"], sp, trace_id, k, len(ids), float(total_ns), 1.0)
        emit(KINDS["scan"], sp, trace_id, 0, 0, timings.get("scan_ms", 0.0) * 1e6, 1.0)
        if "spread_ms" in timings:
            emit(KINDS["spread"], sp, trace_id, info.get("hops", 0), info.get("touched", 0),
                 timings["spread_ms"] * 1e6, 1.0)
        for i, h, score in zip(ids.tolist(), hops.tolist(), scores.tolist()):
            emit(KINDS["result"], sp, trace_id, i, h, 0.0, score)

    def hop(self, trace_id: int, hop: int, frontier: int, ns: int) -> None:
        self._emit(KINDS["hop"], self._space, trace_id, hop, frontier, float(ns), 1.0)

    def remember(self, first: int, n: int) -> None:
        self._emit(KINDS["remember"], self._space, 0, first, n, 0.0, 1.0)

    def link(self, src: int, dst: int, n: int, weight: float) -> None:
        self._emit(KINDS["link"], self._space, 0, src, dst, float(n), weight)

    def forget(self, first: int, n: int) -> None:
        self._emit(KINDS["forget"], self._space, 0, first, n, 0.0, 1.0)

    def interference(self, weakened, partner, confidence, similarity) -> None:
        """node_a the weakened memory, node_b its closest competitor, value its confidence
        after, strength their cosine (proactive or retroactive: by id order)."""
        for a, b, c, s in zip(weakened.tolist(), partner.tolist(), confidence.tolist(), similarity.tolist()):
            self._emit(KINDS["interference"], self._space, 0, a, b, c, s)

    def reconsolidation(self, memory: int, versions: int, plasticity: float) -> None:
        self._emit(KINDS["reconsolidation"], self._space, 0, memory, versions, 0.0, plasticity)

    def priming(self, first: int, type_code: int, n: int) -> None:
        """node_b: 0 repetition, 1 semantic, 2 associative."""
        self._emit(KINDS["priming"], self._space, 0, first, type_code, float(n), 1.0)


class NoEvents(SpaceEvents):
    """Tracing off: every event method does nothing."""

    def __init__(self):
        super().__init__(None, 0)

    def trace_id(self) -> int:
        return 0

    def recall(self, *a) -> None:
        pass

    def hop(self, *a) -> None:
        pass

    def remember(self, *a) -> None:
        pass

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
