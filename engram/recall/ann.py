"""Seeds from an approximate index: usearch's HNSW over a space's rows, shared by every process.

Above a size (engram/workers/indexer.py builds it, in a process of its own) a space's
vectors are also in a usearch index (cosine, int8 vectors) saved to a file in /dev/shm.
The owner publishes the file's generation and salt in the space directory together with
the rows of each tier the index covers (``rows``); every process, owner and workers
alike, views that one file read-only (memory-mapped, not copied).

Recall then takes the index's nearest candidates, drops the forgotten ones, scores each
exactly from its stored row (the same kernel as the exact scan) and merges them with an
exact scan of the *tail*: each tier's rows past ``rows``, which the index has not
taken yet. A memory is found by recall as soon as it is published, and a forgotten one
is gone at once; a reconsolidated memory's new vector is a new row (SpaceStore.rewrite_row),
so it is in the tail until the index takes it.

The directory's ``ann`` cells change under a sequence lock (the first cell: odd while the
owner writes them); a reader retries until it reads the same even value before and after.
"""
from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass, replace

import numpy as np

from engram.errors import AttachError
from engram.store.shm.names import SHM_DIR, EngineName
from engram.store.tables import TIER_TABLE

log = logging.getLogger("engram.recall")

#: candidates taken from the index per seed wanted (re-scored exactly, then cut), and at least
OVERSAMPLE, MIN_CANDIDATES = 2, 64
#: the index's search breadth (HNSW's ef) at 100K vectors, at least the candidates asked for;
#: it grows with the index (expansion()), since a larger graph needs a wider search for the
#: same recall: clustered 384-d, 64 candidates re-scored, recall@10 0.995 at 100K with ef 64,
#: and at 300K 0.953 / 0.984 / 0.997 with ef 64 / 128 / 256 (docs/scale.md)
EXPANSION, EXPANSION_AT, EXPANSION_GROWTH, MAX_EXPANSION = 64, 100_000, 0.6, 512
#: with a budget, the index search may take this share of the time left (SearchCost)
SEARCH_SHARE = 0.25
TIERS = len(TIER_TABLE)
CELLS = 1 + 2 + TIERS + 5          # of the directory's ann cells in use: seq, generation, salt, rows, the rest
#: AnnState.breadth meaning "do not use the index: scan every row exactly" (the audit found
#: no search breadth that reaches its target, and a scan that is cheap enough)
EXACT = (1 << 64) - 1
#: ... meaning "scan the index's quantised sketch, then score its candidates exactly"
#: (engram/recall/sketch.py; where the space has none, the exact scan)
SKETCH = (1 << 64) - 2
BREADTH_NAMES = {EXACT: "exact", SKETCH: "sketch"}
#: engram_index_breadth's value for each scan (describe()'s names); a breadth is itself
BREADTH_GAUGE = {"exact": -1, "sketch": -2}


def wanted(k: int) -> int:
    """The candidates a top-``k`` recall takes from the index (or its sketch) to score exactly."""
    return max(k * OVERSAMPLE, MIN_CANDIDATES)


def expansion(size: int, want: int, at_least: int = 0) -> int:
    """The search breadth for an index of ``size`` vectors asked for ``want`` candidates, or
    ``at_least`` (the owner's audit's breadth, engram/recall/audit.py) when that is broader."""
    grown = EXPANSION * max(size / EXPANSION_AT, 1.0) ** EXPANSION_GROWTH
    return max(int(min(max(grown, want), max(MAX_EXPANSION, want))), at_least)


def index_path(engine: EngineName, space: str, generation: int, salt: int) -> str:
    """Where generation ``generation`` of a space's index lives."""
    return SHM_DIR + engine.table(space, "ann", generation, salt)


def sketch_path(engine: EngineName, space: str, generation: int, salt: int) -> str:
    """Where the quantised sketch of generation ``generation``'s rows lives (engram/recall/sketch.py)."""
    return SHM_DIR + engine.table(space, "sketch", generation, salt)


@dataclass(frozen=True)
class AnnState:
    """What the directory says of a space's index, read consistently."""
    generation: int          # 0: no index
    salt: int
    rows: tuple              # rows of each tier's table in the index (emb_hot, emb_warm, emb_cold)
    size: int                # vectors in the index
    building: int            # rows the running build adds (0: none running)
    built: int               # ... of which it has added
    breadth: int = 0         # the audit's search breadth, at least (0: not chosen yet; EXACT, SKETCH: scan instead)
    sketch: int = 0          # rows in the generation's sketch file (0: it has none)

    @classmethod
    def read(cls, directory: np.ndarray) -> "AnnState":
        cell = directory[0]["ann"]     # u64: seq, generation, salt, rows of each tier, size, building, built, breadth,
                                       # sketch
        for _ in range(1000):
            seq = int(cell[0])
            if seq & 1:
                continue
            v = cell[1:CELLS].tolist()          # a copy, then checked against the sequence
            if int(cell[0]) == seq:
                return cls(v[0], v[1], tuple(v[2:2 + TIERS]), *v[2 + TIERS:])
        raise AttachError("the space directory's index fields kept changing while read (1,000 tries)", "ann")

    def publish(self, directory: np.ndarray) -> None:
        """The owner: write these fields under the sequence lock."""
        cell = directory[0]["ann"]
        cell[0] += 1
        cell[1:CELLS] = (self.generation, self.salt, *self.rows, self.size, self.building, self.built, self.breadth,
                         self.sketch)
        cell[0] += 1

    def progress(self, directory: np.ndarray, building: int, built: int) -> None:
        """The owner: a running build's progress (the rest unchanged)."""
        replace(self, building=building, built=built).publish(directory)


NO_INDEX = AnnState(0, 0, (0,) * TIERS, 0, 0, 0)


def describe(directory: np.ndarray, counts: tuple) -> dict:
    """A space's index as its directory tells, for stats and the attach tools: vectors in it,
    rows of the exact tail (``counts``: each tier's rows), a running build's progress."""
    state = AnnState.read(directory)
    return {"generation": state.generation, "size": state.size,
            "tail": sum(counts) - sum(state.rows) if state.generation else None,
            "building": state.building, "built": state.built,
            "breadth": BREADTH_NAMES.get(state.breadth, state.breadth or None), "sketch": state.sketch}


class AnnView:
    """One process's read-only view of a space's current index file (and its sketch, when
    the generation has one), re-opened when the owner publishes a new generation."""

    def __init__(self, engine: EngineName, space: str, dim: int):
        self.engine, self.space, self.dim = engine, space, dim
        self.state = NO_INDEX
        self.index = None
        self.sketch = None           # the generation's Sketch (engram/recall/sketch.py), or None
        self.cost = SearchCost()
        self.audit = None            # the owner's Audit of this space (engram/recall/audit.py)
        self._warned = set()

    def current(self, directory: np.ndarray):
        """(state, index) to search now, or (NO_INDEX, None) when the space has none; ``sketch``
        is then the generation's sketch or None. The index may cover rows past what a
        reader's snapshot sees: its candidates past the snapshot's nodes are dropped, and
        such a reader's tail is empty."""
        for _ in range(3):     # the owner replaces the file as the index grows: a file gone meanwhile
            state = AnnState.read(directory)     # means a newer generation is published
            if state.generation == 0:
                break
            if (state.generation, state.salt) == (self.state.generation, self.state.salt) and self.index is not None:
                self.state = state
                return state, self.index
            try:
                self.index = _view(index_path(self.engine, self.space, state.generation, state.salt), state.size)
            except AttachError as e:
                failed = e
                continue
            self.sketch = self._sketch(state)
            self.state = state
            return state, self.index
        else:      # an exact scan of everything is always right, only slower
            self._warn("index", f"engram: space {self.space!r}: its index could not be opened ({failed}); "
                                "scanning exactly")
        self.state, self.index, self.sketch = NO_INDEX, None, None
        return NO_INDEX, None

    def _sketch(self, state: AnnState):
        from engram.recall.sketch import Sketch

        if not state.sketch:
            return None
        path = sketch_path(self.engine, self.space, state.generation, state.salt)
        try:
            return Sketch(path, self.dim, state.sketch)
        except AttachError as e:    # its recalls scan exactly instead: right, only slower
            if os.path.exists(path):      # (a file gone was replaced: the next call opens the newer one)
                self._warn("sketch", f"engram: space {self.space!r}: its sketch could not be used ({e}); "
                                     "scanning exactly instead")
            return None

    def _warn(self, what: str, msg: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(msg)

    def close(self) -> None:
        self.index = self.sketch = None
        self.state = NO_INDEX


def _view(path: str, size: int):
    """Memory-map an index file read-only, after checking it is this user's regular file."""
    from usearch.index import Index

    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError as e:
        raise AttachError(f"the space's index file is gone ({e.strerror}); the owner replaces it as it grows",
                          path) from None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        raise AttachError("the index file is not a regular file of this user: not opened", path)
    index = Index.restore(path, view=True)
    if index is None or len(index) != size:
        raise AttachError(f"the index file holds {0 if index is None else len(index):,} vectors, the directory "
                          f"says {size:,}: not used", path)
    return index


class SearchCost:
    """What one unit of search breadth costs here (ns, a moving average over this process's
    searches), so a budgeted recall can choose the breadth that fits: at 1M x 768 on two
    shared cores the full breadth (ef 254) took 7 ms of the 10 ms budget and left spreading
    no room in 37% of recalls (docs/scale.md)."""

    def __init__(self):
        self.ns_per_unit = 0.0        # 0: not measured yet

    def breadth(self, size: int, want: int, deadline_ns: int | None, at_least: int = 0) -> int:
        full = expansion(size, want, at_least)
        if deadline_ns is None or not self.ns_per_unit:
            return full
        fits = SEARCH_SHARE * (deadline_ns - time.perf_counter_ns()) / self.ns_per_unit
        return int(min(full, max(fits, want, EXPANSION)))

    def observe(self, breadth: int, ns: int) -> None:
        unit = ns / max(breadth, 1)
        self.ns_per_unit = unit if not self.ns_per_unit else 0.9 * self.ns_per_unit + 0.1 * unit


def candidates(index, q: np.ndarray, n: int, deadline_ns: int | None = None, cost: SearchCost | None = None,
               at_least: int = 0):
    """Up to ``n`` ids nearest to ``q`` by the index, as int64 (forgotten ones included). With
    a deadline and a ``cost`` model the search is as broad as fits SEARCH_SHARE of the time
    left (never narrower than EXPANSION), else as broad as ``expansion`` says, or
    ``at_least`` (the audit's breadth, engram/recall/audit.py) when that is broader."""
    want = min(n, len(index))
    if want <= 0:
        return np.zeros(0, np.int64)
    breadth = cost.breadth(len(index), want, deadline_ns, at_least) if cost is not None else \
        expansion(len(index), want, at_least)
    index.expansion_search = breadth
    t0 = time.perf_counter_ns()
    found = index.search(q, want, threads=1)
    if cost is not None:
        cost.observe(breadth, time.perf_counter_ns() - t0)
    return np.asarray(found.keys, dtype=np.int64)
