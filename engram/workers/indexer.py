"""The approximate index's keeper: builds and extends each space's usearch index out of process.

usearch holds the GIL while it adds vectors (measured: a search waited up to 1.6 s behind
a batch), so the owner never adds in its own process. A keeper thread in the owner
watches each space and, when there is work, runs this module as a program:

    python -m engram.workers.indexrun ENGINE SPACE --out PATH --to HOT WARM
                                      [--prev PATH --from HOT WARM] [--threads N]

It attaches the space read-only, loads the previous generation's file (a copy: a viewed
index is immutable) or starts an empty index, adds the live rows of each tier between
``--from`` and ``--to``, saves the result under a fresh name and exits; its stdout
carries progress and the result as JSON lines. The keeper then publishes the new
generation in the space directory (engram/recall/ann.py) and removes the old file;
readers that still view it keep their mapping until they move on.

When it runs (IndexKeeper.due): a space with at least ``min_rows`` rows and no index gets
one; afterwards a tail of ``max(MIN_BATCH, GROWTH x index size)`` rows, or any tail
older than ``max(MAX_WAIT_S, 4 x the last run)``, is added; when more than STALE_SHARE of
the indexed rows were forgotten (or moved by reconsolidation) the index is built anew
without them; an index without its sketch (engram/recall/sketch.py; one loaded from a
snapshot, or one the audit has since found hard to search: Audit.hard raises the sketch's
size limit, for good) is rewritten with one when the sketch would be small enough, once
per row count and limit.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from engram.config import INDEX_MIN_ROWS
from engram.recall import sketch
from engram.recall.ann import BREADTH_GAUGE, AnnState, describe, index_path, sketch_path
from engram.recall.audit import Audit
from engram.store.shm.names import EngineName, fresh_salt
from engram.store.tables import SpaceStore
from engram.threads import named_thread

log = logging.getLogger("engram.index")

MIN_BATCH = 2048              # rows of tail worth a run
GROWTH = 0.02                 # ... or this share of the index
MAX_WAIT_S = 5.0              # a smaller tail waits at most this long (or 4x the last run)
STALE_SHARE = 0.25            # forgotten share of the indexed rows that triggers a rebuild
POLL_S = 0.2
PROGRAM = (sys.executable, "-m", "engram.workers.indexrun")


# ---------------------------------------------------------------- the owner's side
@dataclass
class _Kept:
    """The keeper's memory of one space: when its tail began waiting, how long a run took."""
    tail_since: float = 0.0
    last_run_s: float = 0.0
    built_rows: int = 0          # rows added by runs so far (the insert rate's numerator)
    built_s: float = 0.0
    hard: bool = False           # the audit found the index hard to search (Audit.hard), once: for good
    sketch_tried: tuple = ()     # (row count, size limit) a run last wrote its sketch under


class IndexKeeper:
    """The owner's thread that keeps every space's index current (one run at a time)."""

    def __init__(self, engine: EngineName, spaces, min_rows: int = INDEX_MIN_ROWS, threads: int = 1):
        """spaces: a callable giving the owner's spaces now, {name: (SpaceStore, its metrics
        recorder, its SpaceReader)}; the keeper also audits each index (engram/recall/audit.py)."""
        self.engine, self.spaces, self.min_rows, self.threads = engine, spaces, min_rows, threads
        self._kept: dict = {}
        self._stop = threading.Event()
        self._proc = None
        self._lock = threading.Lock()
        self.failures = 0
        self._hurry = 0              # wait_idle() running: any tail is due
        self._thread = named_thread(self._run, "engram-index-keeper")
        self._thread.start()

    def stats(self) -> dict:
        out = {}
        for name, k in self._kept.items():
            out[name] = {"insert_rate": k.built_rows / k.built_s if k.built_s else None,
                         "last_run_s": k.last_run_s}
        for name, (_, _, reader) in self.spaces().items():
            if reader.ann.audit is not None:
                out.setdefault(name, {})["audit"] = reader.ann.audit.stats()
        return out

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
        self._thread.join(timeout=10)

    def wait_idle(self, timeout: float = 600.0) -> bool:
        """Until every index covers all its space's rows, any tail taken at once (tests,
        benches): True if that happened within ``timeout`` seconds."""
        end = time.monotonic() + timeout
        self._hurry += 1
        try:
            while time.monotonic() < end:
                if self._proc is None and all(self.due(st) is None for st, _, _ in self.spaces().values()):
                    return True
                time.sleep(POLL_S / 2)
            return False
        finally:
            self._hurry -= 1

    def due(self, store: SpaceStore, now: float | None = None):
        """(rows_from, rebuild) of the run a space needs now, or None."""
        counts = store.tier_counts()
        state = AnnState.read(store.dir)
        if state.generation == 0:
            return ((0,) * len(counts), True) if store.n_live >= self.min_rows else None
        tail = sum(counts) - sum(state.rows)
        live = [store.tier_rows(t)[2] for t in range(len(counts))]
        indexed_live = sum(int(np.count_nonzero(rl[:r])) for rl, r in zip(live, state.rows))
        # a memory that moved (a new tier, a new vector) has a dead row in the index and a
        # live one in the tail, which the next extension puts in its place: not stale
        moved = sum(int(np.count_nonzero(rl[r:])) for rl, r in zip(live, state.rows))
        if state.size and (state.size - indexed_live - moved) > STALE_SHARE * state.size:
            return (0,) * len(counts), True
        k = self._kept.setdefault(store.space, _Kept())
        limit = self.sketch_limit(store)
        if (not state.sketch and k.sketch_tried != (sum(counts), limit)
                and sketch.fits(indexed_live + moved, store.dim, limit)):     # every live row
            return state.rows, False      # an index without its sketch (one loaded at a restart, a hard one)
        if tail <= 0:
            return None
        now = time.monotonic() if now is None else now
        if not k.tail_since:
            k.tail_since = now
        if (self._hurry or tail >= max(MIN_BATCH, GROWTH * state.size)
                or now - k.tail_since >= max(MAX_WAIT_S, 4 * k.last_run_s)):
            return state.rows, False
        return None

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            for store, rec, reader in list(self.spaces().values()):
                if self._stop.is_set():
                    return
                try:
                    need = self.due(store)
                    if need is not None:
                        self._extend(store, rec, *need)
                    self._audit(store, rec, reader)
                    _gauges(store, rec)
                except Exception:      # a failed run leaves the last good index in place
                    self.failures += 1
                    log.exception("engram: indexing space %r failed; recall goes on with the last index "
                                  "and the exact tail", store.space)
                    self._stop.wait(MAX_WAIT_S)

    def sketch_limit(self, store: SpaceStore) -> int:
        """The largest sketch (bytes of rows) a run writes for this space now."""
        k = self._kept.get(store.space)
        return sketch.HARD_MAX_BYTES if k is not None and k.hard else sketch.MAX_BYTES

    def _audit(self, store: SpaceStore, rec, reader) -> None:
        """One audit of the space's index when one is due; publish the breadth it chooses."""
        audit = reader.ann.audit
        if audit is None:
            reader.ann.audit = Audit()       # recalls offer it queries from now on
            return
        now = time.monotonic()
        if not audit.due(now):
            return
        state = AnnState.read(store.dir)
        choice = audit.run(reader.similar, now, sketch=bool(state.sketch), size=state.size,
                           generation=state.generation)
        rec.index_audits_total.inc()
        k = self._kept.setdefault(store.space, _Kept())
        k.hard = k.hard or audit.hard()     # sticky: a moving average near the target would flap
        state = AnnState.read(store.dir)
        if choice is not None and state.generation and choice != state.breadth:
            replace(state, breadth=choice).publish(store.dir)

    def _extend(self, store: SpaceStore, rec, rows_from: tuple, rebuild: bool) -> None:
        counts = store.tier_counts()
        old = AnnState.read(store.dir)
        gen, salt = old.generation + 1, fresh_salt()
        out = index_path(self.engine, store.space, gen, salt)
        out_sketch = sketch_path(self.engine, store.space, gen, salt)
        limit = self.sketch_limit(store)
        cmd = [*PROGRAM, str(self.engine), store.space, "--out", out, "--to", *map(str, counts),
               "--threads", str(self.threads), "--sketch", out_sketch, "--sketch-max-bytes", str(limit)]
        if not rebuild:
            cmd += ["--from", *map(str, rows_from), "--prev",
                    index_path(self.engine, store.space, old.generation, old.salt)]
        t0 = time.monotonic()
        total = sum(counts) - sum(rows_from)
        old.progress(store.dir, total, 0)
        result = {}
        try:
            with self._lock:
                if self._stop.is_set():
                    return
                self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            for line in self._proc.stdout:
                msg = json.loads(line)
                if "done" in msg:
                    old.progress(store.dir, total, int(msg["done"]))
                result.update(msg)
            rc = self._proc.wait()
        finally:
            with self._lock:
                self._proc = None
        if rc != 0 or "size" not in result:
            old.progress(store.dir, 0, 0)
            _unlink(out)
            _unlink(out_sketch)
            if not self._stop.is_set():
                raise RuntimeError(f"the indexer exited with {rc}: {result.get('error', 'see its stderr')}")
            return
        AnnState(gen, salt, counts, int(result["size"]), 0, 0, old.breadth, int(result.get("sketch", 0))
                 ).publish(store.dir)
        k = self._kept.setdefault(store.space, _Kept())
        k.sketch_tried = (sum(counts), limit)
        if old.generation:
            _unlink(index_path(self.engine, store.space, old.generation, old.salt))
            _unlink(sketch_path(self.engine, store.space, old.generation, old.salt))
        k.last_run_s = time.monotonic() - t0
        rec.index_runs_total.inc()
        rec.index_rows_added_total.inc(total)
        rec.index_run_seconds.observe_ns(int(k.last_run_s * 1e9))
        k.tail_since = 0.0
        k.built_rows += total
        k.built_s += float(result.get("seconds", k.last_run_s))


def _gauges(store: SpaceStore, rec) -> None:
    ix = describe(store.dir, store.tier_counts())
    rec.index_vectors.set(ix["size"])
    rec.index_tail_rows.set(ix["tail"] or 0)
    rec.index_breadth.set(BREADTH_GAUGE.get(ix["breadth"], ix["breadth"] or 0))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


