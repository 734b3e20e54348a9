"""The Engine: owns memory spaces in shared memory, their workers and trace collector; and attach.

    with engram.Engine(dim=384) as eng:
        mem = eng.space("default")
        ids = mem.remember(vectors, content=texts)
        res = mem.recall(query, k=10)

Another process reads a live engine with ``engram.attach(eng.name)``.
"""
from __future__ import annotations

import logging
import os
import weakref
from dataclasses import asdict
from pathlib import Path

import numpy as np

from engram import kernels, validate
from engram.attached import SpaceNames
from engram.cognition.fan import fan_weights
from engram.cognition.reconsolidation import Reconsolidation
from engram.config import DEFAULT_DIM, INDEX_MIN_ROWS, MAX_DIM, TieringConfig
from engram.errors import DimensionError, InvalidInputError, shown
from engram.ingest import LANES
from engram.ingest.listener import DEFAULT_MAX_CHANNELS, Listener
from engram.ingest.pool import DEFAULT_BATCH_MAX
from engram.lifecycle import LIVE, Lifecycle, handle_sigterm
from engram.observe import hwcounters, metrics
from engram.observe.metrics.spreading import SpreadingRecorder
from engram.observe.metrics.spreading import summary as spreading_summary
from engram.observe.tracing import TraceConfig, Tracer
from engram.observe.tracing.events import NO_EVENTS, SpaceEvents
from engram.observe.tracing.process import start_collector
from engram.owned import Owned
from engram.persistence import Persistence
from engram.recall.context import RecallContext
from engram.recall.reader import SpaceReader
from engram.space import ROUTINGS, Space
from engram.store.files import FILES, Files
from engram.store.shm import EngineName, cleanup_stale
from engram.store.tables import MAX_COLD_DIR, SpaceStore
from engram.store.wal import POLICIES
from engram.text import resolve as resolve_embedder
from engram.workers.indexer import IndexKeeper
from engram.workers.supervisor import WorkerError, WorkerPool
from engram.workers.tiering import TierKeeper

log = logging.getLogger("engram")


class Engine:
    """Owner of memory spaces in shared memory.

    path: None keeps everything in shared memory only (ephemeral). A directory keeps the
    engine there (engram/persistence.py): every change is logged before it is
    acknowledged, snapshots are taken in the background (every ``checkpoint_mb`` of log
    or ``checkpoint_s`` seconds) and at close, and opening a directory after a crash
    recovers it (docs/durability/wal-format.md). durability (with a path): "group" (the
    default: a call returns after the fdatasync of a group of concurrent changes that
    holds it), "always" (after its own fdatasync) or "none" (after write(): survives the
    process, not the machine). dim: embedding dimension of every space; None takes it
    from the data at ``path``, else 384. workers: recall worker processes (None: CPU
    count; 0: recall runs in the calling thread); they start on the first recall
    (docs/workers.md). trace: None (off), True, or an engram.TraceConfig (with
    collect_to=DIR, a collector process writes the events there). routing: "auto" (a
    lone caller recalls in its own thread, concurrent callers go to the workers) or
    "workers" (every recall goes to a worker once they are up). Streams (``Space.stream``)
    are applied by ``ingest_workers`` threads, merging up to ``ingest_batch`` observations
    at a time, from lanes bounded by ``lanes`` ({"high": 1000, "normal": 50000, "low":
    10000} observations by default). channels: how many streams other processes may have
    open at once through ``engram.connect`` (0: none). log_segment_mb: the size of each
    preallocated log segment (default 64; docs/durability/wal-format.md). index_min_rows:
    spaces this large take seeds from an approximate index (docs/scale.md; None: never),
    kept by a process at nice 10 with ``index_threads`` threads (default one a core).
    tiering: None (memories stay in the tier they were stored in, unless Space.migrate
    moves them), True or an engram.TieringConfig: move memories to the cold tier (int8) and
    back by access recency and strength in the background (docs/scale.md, Tiers). With a
    path the cold tier's tables are files in path/cold, whose pages can leave RAM.
    files: the operations durability goes through (engram.store.files.Files): fault injection.
    embedder: "default" (the text extra's model, docs/embedding.md), None (vectors only), or
    an object with encode(list[str]) -> array: then spaces take ``texts=`` and ``text=``
    (engram/text/), and ``dim`` is the model's.
    """

    def __init__(self, path=None, dim: int | None = None, workers=None, routing: str = "auto", trace=None,
                 durability: str | None = None, checkpoint_mb: float = 256.0, checkpoint_s: float = 300.0,
                 ingest_workers: int = 1, lanes: dict | None = None, ingest_batch: int = DEFAULT_BATCH_MAX,
                 channels: int = DEFAULT_MAX_CHANNELS, log_segment_mb: float | None = None,
                 index_min_rows: int | None = INDEX_MIN_ROWS, index_threads: int | None = None,
                 tiering=None, files: Files | None = None, embedder=None):
        path = None if path is None else Path(path)
        if dim is not None:
            dim = validate.positive_int(dim, "dim", 1)
            if dim > MAX_DIM:
                raise InvalidInputError(f"dim {dim} is larger than the maximum {MAX_DIM}")
        self.workers = (os.cpu_count() or 1) if workers is None else validate.positive_int(workers, "workers")
        if routing not in ROUTINGS:
            raise InvalidInputError(f"routing must be one of {', '.join(ROUTINGS)}, got {shown(routing)}")
        self.routing = routing
        if trace is True:
            trace = TraceConfig()
        if trace is not None and not isinstance(trace, TraceConfig):
            raise InvalidInputError(f"trace must be None, True or an engram.TraceConfig, got {shown(trace)}")
        self.trace_config = trace.check() if trace is not None else None
        if durability is not None and path is None:
            raise InvalidInputError(f"durability={shown(durability)} needs a path: an engine without one keeps "
                                    "nothing on disk")
        durability = "group" if durability is None else durability
        if durability not in POLICIES:
            raise InvalidInputError(f"durability must be one of {', '.join(POLICIES)}, got {shown(durability)}")
        checkpoint_mb = validate.positive_float(checkpoint_mb, "checkpoint_mb")
        checkpoint_s = validate.positive_float(checkpoint_s, "checkpoint_s")
        channels = validate.positive_int(channels, "channels")
        self._embedder = resolve_embedder(embedder)      # before the path is locked: loading may fail
        if self._embedder is not None:
            if dim is not None and dim != self._embedder.dim:
                raise DimensionError(f"dim={dim} but the embedder {self._embedder.identity} makes vectors of "
                                     f"{self._embedder.dim}: leave dim out (it comes from the embedder)")
            dim = self._embedder.dim
        self._path = path
        self.durability = durability if path is not None else None
        segment = None if log_segment_mb is None else \
            max(int(validate.positive_float(log_segment_mb, "log_segment_mb") * (1 << 20)), 1 << 16)
        persist = Persistence(path, durability, files or FILES, checkpoint_mb=checkpoint_mb,
                              checkpoint_s=checkpoint_s, segment_bytes=segment) if path is not None else None
        stored = persist.dim if persist is not None else None
        if dim is not None and stored is not None and stored != dim:
            persist.lock.release()
            if self._embedder is not None:
                raise DimensionError(f"{path} holds memories of dimension {stored}; the embedder "
                                     f"{self._embedder.identity} makes {dim}: open it with the embedder that made "
                                     "them, or without one (vectors only)")
            raise DimensionError(f"{path} holds memories of dimension {stored}, not {dim}: open it "
                                 f"without dim (it is read from the data) or with dim={stored}")
        self._dim = dim if dim is not None else stored if stored is not None else DEFAULT_DIM
        if persist is not None:
            persist.dim = self._dim
        if tiering is True:
            tiering = TieringConfig()
        if tiering is not None and not isinstance(tiering, TieringConfig):
            raise InvalidInputError(f"tiering must be None, True or an engram.TieringConfig, got {shown(tiering)}")
        tiering = tiering.check() if tiering is not None else None
        self._cold_dir = str(persist.cold_dir) if persist is not None else ""
        if len(os.fsencode(self._cold_dir)) > MAX_COLD_DIR:
            log.warning("engram: %s is longer than %d bytes: the cold tier stays in /dev/shm", self._cold_dir,
                        MAX_COLD_DIR)
            self._cold_dir = ""
        self.cleaned = cleanup_stale()
        life = self._life = Lifecycle(EngineName.new())
        life.dim = self._dim
        life.ingest_settings = {"workers": validate.positive_int(ingest_workers, "ingest_workers", 1),
                                "capacity": validate.lane_capacities(lanes, LANES),
                                "batch_max": validate.positive_int(ingest_batch, "ingest_batch", 1)}
        try:
            self._kern = kernels.backend()
            self._metrics_seg = metrics.MetricsSegment.create(life.name)
            self._metrics_slot = self._metrics_seg.claim(metrics.ROLE_OWNER)
            hw = hwcounters.probe()[0]
            metrics.recorder(self._metrics_seg, self._metrics_slot, "").spreading_hw_counters.set(int(hw))
            self._spreading = SpreadingRecorder(self._metrics_seg, self._metrics_slot, hw)
            life.tracer = Tracer(life.name if self.trace_config else None, self.trace_config, worker=0)
            life.workers = WorkerPool(life.name, self._dim, self.workers) if self.workers else None
            # an engine never closed is closed when collected or at interpreter exit; the
            # lifecycle holds no reference back to the engine, so the engine can be collected
            weakref.finalize(self, life.close, True)
            if self.trace_config is not None and self.trace_config.collect_to:
                life.collector = start_collector(life.name, self.trace_config)
            if persist is not None:
                persist.open(self._new_space, life.writers_held)
                for o in persist.owned.values():
                    o.metrics.memories.set(o.store.n_live)
            if channels:
                life.listener = Listener(life.name, self._dim, self.space, channels)
            if index_min_rows is not None:
                threads = os.cpu_count() if index_threads is None else index_threads
                life.indexer = IndexKeeper(life.name, lambda: {n: (o.store, o.metrics, o.reader)
                                                              for n, o in life.owned.items()},
                                           validate.positive_int(index_min_rows, "index_min_rows", 1),
                                           validate.positive_int(threads, "index_threads", 1))
            if tiering is not None:
                life.tiering = TierKeeper(lambda: dict(life.spaces), tiering)
        except BaseException:
            if persist is not None:    # released before close(), so a half-opened engine writes nothing
                persist.close(checkpoint=False)
            self.close()
            raise
        life.persist = persist         # from here close() checkpoints into the path
        LIVE.add(life)
        handle_sigterm()

    @property
    def name(self) -> str:
        """The engine's name, for ``engram.attach`` and the attach tools."""
        return str(self._life.name)

    @property
    def dim(self) -> int:
        """The embedding dimension of every space."""
        return self._dim

    @property
    def embedder(self):
        """The engine's engram.text.Embedder (``.identity``: name, version, dim; ``.encode(texts)``), or None."""
        return self._embedder

    @property
    def path(self):
        """The engine's directory (a Path), or None for an ephemeral engine."""
        return self._path

    @property
    def closed(self) -> bool:
        return self._life.closed

    def _check_open(self):
        self._life.check_open()

    def wait_for_index(self, timeout: float = 600.0) -> bool:
        """Until every space's approximate index covers all its rows (any tail is taken at
        once): after a bulk load, before measuring or serving recall. True if that happened
        within ``timeout`` seconds; also True with no indexer (``index_min_rows=None``).
        Recall never needs it: rows the index has not taken yet are scanned exactly."""
        self._life.check_open()
        timeout = validate.positive_float(timeout, "timeout")
        indexer = self._life.indexer
        return True if indexer is None else indexer.wait_idle(timeout)

    def space(self, name: str = "default") -> Space:
        """The memory space ``name``, created on first use (and logged, with a path)."""
        life = self._life
        life.check_open()
        name = validate.space_name(name)
        with life.lock:
            sp = life.spaces.get(name)
            if sp is None:
                if life.persist is not None:
                    life.persist.log.admit()      # a space the log cannot name is not made
                owned = self._new_space(name)
                if life.persist is not None:
                    life.persist.added(name, owned)
                sp = life.spaces[name]
            return sp

    def _new_space(self, name: str) -> Owned:
        """Make a space's tables and its Space (with the engine's lock held, or at open)."""
        life = self._life
        store = SpaceStore(life.name, name, self._dim, create=True, cold_dir=self._cold_dir)
        reader = SpaceReader(store, self._kern, derive=fan_weights)
        rec = metrics.recorder(self._metrics_seg, self._metrics_slot, name, assign=True)   # labels first
        events = (SpaceEvents(life.tracer.writer, self._metrics_seg.space_index(name)) if life.tracer.enabled
                  else NO_EVENTS)
        ctx = RecallContext(spreading=self._spreading, events=events)
        owned = life.owned[name] = Owned(store, reader, ctx, Reconsolidation(self._dim), metrics=rec,
                                         embedder=self._embedder)
        life.spaces[name] = Space(owned, life.check_open, life.workers, self.routing, life.ingest_pool)
        return owned

    @property
    def spaces(self) -> SpaceNames:
        """The names of this engine's memory spaces, sorted."""
        self._check_open()
        return SpaceNames(sorted(self._life.spaces))

    def spreading_metrics(self) -> dict:
        """Spreading metrics summed over the owner and every worker (shared memory):
        prediction error, cache miss rate (or "not supported"), pool use and hit rate."""
        self._check_open()
        w = self._life.workers
        pool = w.pool.stats() if w is not None and w.started else None
        return spreading_summary(self._metrics_seg, pool)

    def start_workers(self, timeout: float = 30.0) -> bool:
        """Start the worker processes now (they otherwise start on the first recall, which
        then runs in-process until they are up) and wait until they take tasks."""
        self._check_open()
        w = self._life.workers
        if w is None:
            return False
        if not w.wait_ready(timeout):
            raise WorkerError(f"the worker processes did not start within {timeout} s"
                              + (f": {w.broken}" if w.broken else ""))
        return True

    def configure_workers(self, steal_min_edges: int | None = None, steal_min_batch: int | None = None) -> dict:
        """Work stealing (docs/workers.md): a worker splits a hop that fires at least
        ``steal_min_edges`` edges among idle workers (0: never split), in batches of at
        least ``steal_min_batch`` frontier nodes (0: the AdaptiveBatcher's size). Takes
        effect at once; returns the settings now in force."""
        self._check_open()
        given = {"steal_min_edges": steal_min_edges, "steal_min_batch": steal_min_batch}
        for name, v in given.items():
            if v is not None and (isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                                  or not 0 <= v < 2**32):
                raise InvalidInputError(f"{name} must be an integer in [0, 2^32), got {shown(v)}")
        steal_min_edges, steal_min_batch = (None if v is None else int(v) for v in given.values())
        if self._life.workers is None:
            raise InvalidInputError("this engine runs without workers (workers=0): there is nothing to configure")
        return self._life.workers.configure_stealing(steal_min_edges, steal_min_batch)

    def worker_stats(self) -> dict:
        """The worker processes: alive, requests served, failed, retried, restarts, the record pool."""
        self._check_open()
        return {"workers": 0} if self._life.workers is None else self._life.workers.stats()

    def ingest_stats(self) -> dict:
        """The ingest lanes and workers: queued and capacity per lane, observations applied,
        batches, puts refused (overload), steals, the recent rate (observations/s); and
        the channels of other processes (``engram.connect``)."""
        self._check_open()
        out = self._life.ingest_pool().stats()
        if self._life.listener is not None:
            out["channels"] = self._life.listener.stats()
        return out

    def checkpoint(self) -> Path | None:
        """Write a snapshot of every space now (writers wait only while the small tables are
        copied) and let the log it covers go; returns the snapshot file (None: nothing
        changed since the last one)."""
        self._check_open()
        if self._life.persist is None:
            raise InvalidInputError("this engine has no path: create it with engram.Engine(path=...) to keep data")
        return self._life.persist.checkpoint()

    def save(self):
        """checkpoint(), under its earlier name."""
        return self.checkpoint()

    def health(self) -> dict:
        """state: "ok", "full" (writes refused until the disk has room), "failed" (the log
        stopped: reopen to recover) or "closed"; with the log's last and durable LSN."""
        life = self._life
        if life.closed:
            return {"state": "closed", "message": "the engine is closed"}
        return {"state": "ok", "message": "in memory only (no path)"} if life.persist is None else \
            life.persist.health()

    @property
    def recovery(self) -> dict | None:
        """What opening the path found: the snapshot's LSN, records replayed, a torn tail cut
        (bytes, file), seconds. None without a path."""
        p = self._life.persist
        if p is None or p.recovery is None:
            return None
        return {**asdict(p.recovery), "snapshot_lsn": p.snapshot.lsn if p.snapshot is not None else 0}

    def close(self) -> None:
        """Flush the log and checkpoint (with a path), stop the workers, then remove every
        segment of this engine. Safe to call twice."""
        self._life.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._life.closed else f"{len(self._life.spaces)} spaces"
        return f"<engram.Engine {self.name} dim={self._dim} {state}>"
