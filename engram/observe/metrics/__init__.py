"""Metrics in shared memory, exported to Prometheus.

Each process that records owns one slot of its engine's metrics segment and
adds to it with one atomic add per event (engram/kernels/_cy/metrics.pyx); readers sum
the slots at scrape time. Turned off (``ENGRAM_METRICS=0``), every recorder is
bound once to a no-op object, so recording code never branches on a flag.

    server = engram.serve_metrics(eng, port=9464)   # http://127.0.0.1:9464/metrics
    server.port, server.close()                       # (engram/observe/attach/prometheus.py)

Names and meanings: engram/observe/metrics/definitions.py and docs/observability.md.
"""
from __future__ import annotations

from engram.observe.metrics.definitions import MAX_SPACES, METRICS  # noqa: F401
from engram.observe.metrics.recorder import NOOP, NOOP_RECORDER, Recorder, enabled, recorder  # noqa: F401
from engram.observe.metrics.segment import ROLE_OTHER, ROLE_OWNER, ROLE_WORKER, MetricsSegment  # noqa: F401
