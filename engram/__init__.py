"""engram: a cognitive memory engine in shared memory.

    import engram
    with engram.Engine(dim=384) as eng:
        mem = eng.space("default")
        ids = mem.remember(vectors, content=texts)
        res = mem.recall(query, k=10)
"""
__version__ = "0.1.0"

from engram import errors, kernels  # noqa: E402,F401
from engram.engine import Attached, Engine, Memories, RecallResult, Space, SpaceView, attach  # noqa: E402,F401
