"""Watching an engine: metrics and tracing recorded in shared memory, hardware counters, attach tools."""
