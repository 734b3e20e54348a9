"""Tracing: every process that records has its own ring of 64-byte events in a
shared segment (``/eg.<uid>.<pid>.<token>.trace.<process pid>``); a collector
process drains every ring and exports the events (engram/observe/attach/collector.py).

    eng = engram.Engine(trace=engram.TraceConfig(kinds=("recall", "hop")))
    ...
    eng.close()            # drains every ring into the collector's files first

Memory is bounded by ring_size x 64 bytes x processes. A full ring drops its
oldest events; readers count what they lost. Off (the default), the writer is a
compiled no-op bound once. Event kinds and fields: docs/observability.md.
"""
from engram.observe.tracing.config import DEFAULT_RING, FORMATS, KIND_NAMES, KINDS, SPANS, TraceConfig  # noqa: F401
from engram.observe.tracing.ring import Cursor, Ring, Tracer, config_of, ring_name, ring_names  # noqa: F401
