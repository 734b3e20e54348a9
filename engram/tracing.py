"""Deprecated: engram.tracing moved to engram.observe.tracing (TraceConfig: engram.TraceConfig)."""
import warnings

from engram.observe import tracing as _moved


def __getattr__(name):
    warnings.warn(f"engram.tracing.{name} is deprecated: use engram.TraceConfig or engram.observe.tracing",
                  DeprecationWarning, stacklevel=2)
    return getattr(_moved, name)
