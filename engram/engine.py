"""The Engine: owns memory spaces in shared memory, their workers and trace collector; and attach.

    with engram.Engine(dim=384) as eng:
        mem = eng.space("default")
        ids = mem.remember(vectors, content=texts)
        res = mem.recall(query, k=10)

Another process reads a live engine with ``engram.attach(eng.name)``.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from pathlib import Path

import numpy as np

from engram import kernels, validate
from engram.cognition.fan import fan_weights
from engram.cognition.reconsolidation import Reconsolidation
from engram.config import DEFAULT_DIM, MAX_DIM
from engram.errors import ClosedError, DimensionError, InvalidInputError, UnknownSpaceError, shown
from engram.observe import hwcounters, metrics
from engram.observe.metrics.spreading import SpreadingRecorder
from engram.observe.metrics.spreading import summary as spreading_summary
from engram.observe.tracing import TraceConfig, Tracer
from engram.observe.tracing.events import NO_EVENTS, SpaceEvents
from engram.observe.tracing.process import start_collector, stop_collector
from engram.recall.context import RecallContext
from engram.recall.reader import SpaceReader
from engram.space import ROUTINGS, Owned, Space, SpaceView
from engram.store import snapshot
from engram.store.shm import EngineName, cleanup_stale, resolve, spaces_of, unlink_engine
from engram.store.tables import SpaceStore
from engram.workers.supervisor import WorkerError, WorkerPool

log = logging.getLogger("engram")


class SpaceNames(list):
    """The names of an engine's spaces. Calling it (``eng.spaces()``, from when it was a
    method) still works, with a DeprecationWarning."""

    def __call__(self):
        import warnings
        warnings.warn("Engine.spaces is a property now: use eng.spaces, not eng.spaces()",
                      DeprecationWarning, stacklevel=2)
        return list(self)


class _Lifecycle:
    """Everything an engine must save and release, without a reference to the Engine, so
    the same close runs from close(), from garbage collection and at interpreter exit."""

    def __init__(self, name: EngineName):
        self.name = name
        self.closed = False
        self.path = None
        self.path_lock = None
        self.dim = 0
        self.owned: dict = {}       # space name -> Owned
        self.spaces: dict = {}      # space name -> Space
        self.workers = None
        self.tracer = None
        self.collector = None
        self.lock = threading.Lock()

    def check_open(self) -> None:
        if self.closed:
            raise ClosedError("this engram.Engine is closed; create a new one")

    def save(self) -> Path:
        with self.lock:
            for sp in self.spaces.values():
                sp.compact()
            extra = {n: {**o.labile.arrays(o.store), "settings": np.array(json.dumps(o.settings()))}
                     for n, o in self.owned.items()}
            return snapshot.save(self.path, self.dim, {n: o.store for n, o in self.owned.items()}, extra)

    def close(self, unattended: bool = False) -> None:
        """Save (with a path), stop workers and collector, remove every segment. unattended:
        the engine was never closed (garbage collection or interpreter exit): say so."""
        if self.closed or os.getpid() != self.name.pid:      # never from a forked child
            return
        try:
            if self.path_lock is not None and self.path_lock.fd >= 0:
                if unattended:
                    log.warning("engram: Engine %s (path %s) was not closed; saving it at exit", self.name, self.path)
                self.save()
        finally:
            self.closed = True
            if self.workers is not None:
                self.workers.close()        # before the segments they read go away
            if self.tracer is not None:
                self.tracer.close()
            if self.collector is not None:  # it drains every ring before the segments go
                stop_collector(self.collector)
            for o in self.owned.values():
                o.store.close(unlink=True)
            unlink_engine(self.name)
            if self.path_lock is not None:
                self.path_lock.release()


class Engine:
    """Owner of memory spaces in shared memory.

    path: None keeps everything in shared memory only (ephemeral). A directory keeps a
    snapshot there: loaded at start, written by save() and close() (and at interpreter
    exit for an engine that was never closed). Changes since the last save are lost if
    the process is killed (the write-ahead log that makes every remember durable is a
    later layer). dim: embedding dimension of every space; None takes it from the
    snapshot at ``path``, else 384. workers: recall worker processes (None: CPU count;
    0: recall runs in the calling thread); they start on the first recall (docs/workers.md).
    trace: None (off), True, or an engram.TraceConfig (with collect_to=DIR, a collector
    process writes the events there). routing: "auto" (a lone caller recalls in its own
    thread, concurrent callers go to the workers) or "workers" (every recall goes to a
    worker once they are up).
    """

    def __init__(self, path=None, dim: int | None = None, workers=None, routing: str = "auto", trace=None):
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
        self._path = path
        # the path is ours before its snapshot is read, so no other engine replaces it meanwhile
        lock = snapshot.PathLock(path) if path is not None else None
        try:
            manifest = snapshot.current(path) if path is not None else None
            stored = None if manifest is None else int(manifest["dim"])
            if dim is not None and stored is not None and stored != dim:
                raise DimensionError(f"{path} holds memories of dimension {stored}, not {dim}: open it "
                                     f"without dim (it is read from the data) or with dim={stored}")
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        self._dim = dim if dim is not None else stored if stored is not None else DEFAULT_DIM
        self.cleaned = cleanup_stale()
        life = self._life = _Lifecycle(EngineName.new())
        life.dim, life.path = self._dim, path
        try:
            self._kern = kernels.backend()
            self._metrics_seg = metrics.MetricsSegment.create(life.name)
            self._metrics_slot = self._metrics_seg.claim(metrics.ROLE_OWNER)
            hw = hwcounters.probe()[0]
            metrics.recorder(self._metrics_seg, self._metrics_slot, "").spreading_hw_counters.set(int(hw))
            self._spreading = SpreadingRecorder(self._metrics_seg, self._metrics_slot, hw)
            life.tracer = Tracer(life.name if self.trace_config else None, self.trace_config, worker=0)
            life.workers = WorkerPool(life.name, self._dim, self.workers) if self.workers else None
            # an engine never closed is closed (and saved) when collected or at interpreter exit;
            # the lifecycle holds no reference back to the engine, so the engine can be collected
            weakref.finalize(self, life.close, True)
            if self.trace_config is not None and self.trace_config.collect_to:
                life.collector = start_collector(life.name, self.trace_config)
            for name, arrs in (snapshot.load(path, manifest) if manifest else {}).items():
                self._restore(name, arrs)
        except BaseException:
            if lock is not None:       # released before close(), so a half-loaded engine saves nothing
                lock.release()
            self.close()
            raise
        life.path_lock = lock          # from here close() saves to the path

    def _restore(self, name: str, arrs: dict) -> None:
        sp = self.space(name)
        o = self._life.owned[name]
        snapshot.restore(o.store, arrs, fan_weights)
        if "settings" in arrs:       # snapshots from before settings were kept have none
            saved = json.loads(str(arrs["settings"]))
            for kind, configure in (("recall", sp.configure_recall), ("interference", sp.configure_interference),
                                    ("reconsolidation", sp.configure_reconsolidation)):
                known = o.settings()[kind]
                changes = {k: v for k, v in saved.get(kind, {}).items() if k in known}   # unknown: skipped
                if changes:
                    configure(**changes)
        o.labile.restore(arrs)
        o.metrics.memories.set(len(sp))

    @property
    def name(self) -> str:
        """The engine's name, for ``engram.attach`` and the attach tools."""
        return str(self._life.name)

    @property
    def dim(self) -> int:
        """The embedding dimension of every space."""
        return self._dim

    @property
    def path(self):
        """The snapshot directory (a Path), or None for an ephemeral engine."""
        return self._path

    @property
    def closed(self) -> bool:
        return self._life.closed

    def _check_open(self):
        self._life.check_open()

    def space(self, name: str = "default") -> Space:
        """The memory space ``name``, created on first use."""
        life = self._life
        life.check_open()
        name = validate.space_name(name)
        with life.lock:
            sp = life.spaces.get(name)
            if sp is None:
                store = SpaceStore(life.name, name, self._dim, create=True)
                reader = SpaceReader(store, self._kern, derive=fan_weights)
                rec = metrics.recorder(self._metrics_seg, self._metrics_slot, name, assign=True)   # labels first
                events = (SpaceEvents(life.tracer.emit, self._metrics_seg.space_index(name)) if life.tracer.enabled
                          else NO_EVENTS)
                ctx = RecallContext(spreading=self._spreading, events=events)
                owned = life.owned[name] = Owned(store, reader, ctx, Reconsolidation(self._dim), metrics=rec)
                sp = life.spaces[name] = Space(owned, life.check_open, life.workers, self.routing)
            return sp

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

    def save(self) -> Path:
        """Write a snapshot of every space to ``path`` (compacting links first); returns its directory."""
        self._check_open()
        if self._path is None:
            raise InvalidInputError("this engine has no path: create it with engram.Engine(path=...) to save")
        return self._life.save()

    def close(self) -> None:
        """Save (with a path), then remove every segment of this engine. Safe to call twice."""
        self._life.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._life.closed else f"{len(self._life.spaces)} spaces"
        return f"<engram.Engine {self.name} dim={self._dim} {state}>"


class Attached:
    """A live engine opened read-only from another process (``engram.attach``)."""

    def __init__(self, engine):
        self._name = resolve(engine)
        self._views: dict = {}
        self._stores: list = []

    @property
    def name(self) -> str:
        return str(self._name)

    @property
    def spaces(self) -> SpaceNames:
        """The names of the engine's memory spaces, sorted."""
        return SpaceNames(spaces_of(self._name))

    def space(self, name: str = "default") -> SpaceView:
        name = validate.space_name(name)
        if name not in self._views:
            if name not in spaces_of(self._name):
                raise UnknownSpaceError(f"engine {self.name} has no memory space {shown(name)}; "
                                        f"it has {spaces_of(self._name)}")
            store = SpaceStore(self._name, name, create=False)
            self._stores.append(store)
            self._views[name] = SpaceView(SpaceReader(store, kernels.backend()))
        return self._views[name]

    def close(self) -> None:
        for store in self._stores:
            store.close(unlink=False)
        self._stores.clear()
        self._views.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def attach(engine) -> Attached:
    """Open a running engine read-only: by name (``Engine.name``) or by its owner's pid."""
    return Attached(engine)
