"""engram: a cognitive memory engine in shared memory.

    import engram
    with engram.Engine(dim=384) as eng:
        mem = eng.space("default")
        ids = mem.remember(vectors, content=texts)
        res = mem.recall(query, k=10)

The public face: Engine, Space (and SpaceView, what attach gives), attach, connect
(another process's reads and durable writes), Client (the daemon's HTTP API), the
results (RecallResult, SpreadResult, Memories), the settings (RecallConfig,
InterferenceConfig, ReconsolidationConfig, TieringConfig, TraceConfig), engram.errors,
engram.kernels, and serve_metrics. docs/architecture.md shows the rooms behind it.
"""
__version__ = "0.1.0"

from engram import errors, kernels  # noqa: F401
from engram.attached import Attached, attach  # noqa: F401
from engram.client import Client  # noqa: F401
from engram.config import InterferenceConfig, RecallConfig, ReconsolidationConfig, TieringConfig  # noqa: F401
from engram.connected import Connected, connect  # noqa: F401
from engram.engine import Engine  # noqa: F401
from engram.observe.tracing import TraceConfig  # noqa: F401
from engram.results import Memories, RecallResult, SpreadResult  # noqa: F401
from engram.space import Space, SpaceView  # noqa: F401


def serve_metrics(engine, port: int = 0, addr: str = "127.0.0.1"):
    """Serve Prometheus /metrics for a running engine (an Engine, or its name or pid from
    any process) on addr:port (0: a free port); returns a server with .url and .close()."""
    from engram.observe.attach.prometheus import serve
    return serve(engine, port, addr)
