"""What the index tests share."""
from __future__ import annotations

from contextlib import contextmanager

import engram


@contextmanager
def indexed_space(name: str, parts, dim: int, min_rows: int):
    """(engine, space): a space ``name`` holding ``parts`` ((vectors, tier) pairs) whose
    index covers every row, in an engine without workers."""
    with engram.Engine(dim=dim, workers=0, index_min_rows=min_rows) as eng:
        sp = eng.space(name)
        for x, tier in parts:
            sp.remember(x, tier=tier)
        assert eng.wait_for_index(120), "the index was not built within 2 minutes"
        yield eng, sp
