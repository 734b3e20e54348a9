"""This process's metric recorders: real ones over its slot of the metrics segment, or a
no-op object bound once when metrics are off (ENGRAM_METRICS=0)."""
from __future__ import annotations

import os

from engram.observe.metrics.definitions import METRICS
from engram.observe.metrics.segment import MetricsSegment


def enabled() -> bool:
    return os.environ.get("ENGRAM_METRICS", "1").lower() not in ("0", "false", "off", "no")


class _Noop:
    """What every recorder is when metrics are off: calls that do nothing."""
    __slots__ = ()

    def inc(self, v=1):
        pass

    def set(self, v):
        pass

    def add(self, v):
        pass

    def observe_ns(self, ns):
        pass


try:                                   # the compiled no-op, when the Cython drivers are built
    from engram.kernels._cy.metrics import Noop as _CNoop
    NOOP = _CNoop()
except ImportError:
    NOOP = _Noop()


class Recorder:
    """This process's recorders for one memory space (or NOOPs when metrics are off)."""

    def __init__(self, seg: MetricsSegment | None, slot: int, space: str, assign: bool):
        self.space = space
        on = seg is not None
        if on:
            from engram.kernels._cy.metrics import Counter, Gauge, Histogram
            label = seg.space_index(space, assign=assign)
            kinds = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
        for m in METRICS:
            attr = m.name.removeprefix("engram_")
            if m.types:       # one recorder per type: rec.priming_total["semantic"].inc()
                setattr(self, attr, {t: kinds[m.kind](seg.cell_address(slot, m.name, label, j), seg) if on else NOOP
                                     for j, t in enumerate(m.types)})
            else:
                setattr(self, attr, kinds[m.kind](seg.cell_address(slot, m.name, label), seg) if on else NOOP)


def recorder(seg, slot, space: str, assign: bool = False) -> Recorder:
    return Recorder(seg if enabled() else None, slot, space, assign)


NOOP_RECORDER = Recorder(None, 0, "", False)    # records nothing: an attached reader's
