"""Deprecated: engram.metrics moved to engram.observe.metrics (serve: engram.serve_metrics)."""
import warnings

from engram.observe import metrics as _moved


def __getattr__(name):
    warnings.warn(f"engram.metrics.{name} is deprecated: use engram.serve_metrics or engram.observe.metrics",
                  DeprecationWarning, stacklevel=2)
    if name == "serve":
        from engram import serve_metrics
        return serve_metrics
    return getattr(_moved, name)
