"""What a running engine must save and release, and in which order; SIGTERM closes them all.

The Engine keeps its parts in a Lifecycle that holds no reference back to the Engine, so the
same close runs from ``Engine.close()``, from garbage collection and at interpreter exit.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import weakref

from engram.errors import ClosedError
from engram.ingest import IngestPool
from engram.observe.tracing.process import stop_collector
from engram.persistence import Persistence
from engram.store.shm import EngineName, unlink_engine
from engram.threads import named_thread

log = logging.getLogger("engram")


class Lifecycle:
    """Everything an engine must save and release, without a reference to the Engine, so
    the same close runs from close(), from garbage collection and at interpreter exit."""

    def __init__(self, name: EngineName):
        self.name = name
        self.closed = False
        self.persist: Persistence | None = None     # with a path: snapshots and the log
        self.dim = 0
        self.owned: dict = {}       # space name -> Owned
        self.spaces: dict = {}      # space name -> Space
        self.workers = None
        self.ingest = None          # engram.ingest.IngestPool, started by the first stream
        self.ingest_settings: dict = {}
        self.listener = None        # engram.connect's channels (engram/ingest/listener.py)
        self.indexer = None         # IndexKeeper: the spaces' approximate indexes (engram/workers/indexer.py)
        self.tiering = None         # TierKeeper: migration between tiers (engram/workers/tiering.py)
        self.tracer = None
        self.collector = None
        self.lock = threading.Lock()

    def check_open(self) -> None:
        if self.closed:
            raise ClosedError("this engram.Engine is closed; create a new one")

    @contextlib.contextmanager
    def writers_held(self):
        """Hold every space's writers (and space creation): a checkpoint's consistent point."""
        with self.lock, contextlib.ExitStack() as stack:
            for name in sorted(self.owned):
                stack.enter_context(self.owned[name].lock)
            yield

    def ingest_pool(self) -> IngestPool:
        """The ingest workers, started on first use."""
        with self.lock:
            self.check_open()
            if self.ingest is None:
                self.ingest = IngestPool(**self.ingest_settings)
            return self.ingest

    def close(self, unattended: bool = False) -> None:
        """Apply what ingest accepted, flush the log and checkpoint (with a path), stop
        workers and collector, remove every segment. unattended: the engine was never
        closed (garbage collection, interpreter exit or SIGTERM): say so."""
        if self.closed or os.getpid() != self.name.pid:      # never from a forked child
            return
        try:
            if self.tiering is not None:    # its moves are logged: before the log closes
                self.tiering.close()
            if self.indexer is not None:    # first: the checkpoint below saves the last index it made
                self.indexer.close()
            if self.listener is not None:
                self.listener.close()       # drained into the lanes first: the pool applies it
            if self.ingest is not None:
                self.ingest.close()         # nothing accepted is dropped
            if self.persist is not None:
                if unattended:
                    log.warning("engram: Engine %s (path %s) was not closed; saving it at exit", self.name,
                                self.persist.path)
                self.persist.close(checkpoint=True)
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
            LIVE.discard(self)


LIVE: weakref.WeakSet = weakref.WeakSet()     # lifecycles of open engines with this process as owner


def handle_sigterm() -> None:
    """SIGTERM closes every open engine (log flushed, checkpoint, segments removed), then
    ends the process as SIGTERM would. Installed once, and only where nobody else handles
    SIGTERM. The handler only writes a byte to a pipe, which a thread started here waits
    on: closing waits for each space's writers, one of which may be the very code the
    signal interrupted, and a handler that took any lock (starting a thread takes two)
    could deadlock on one that code holds."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    wake_r, wake_w = os.pipe()
    owner = os.getpid()
    closed = [False]                 # a plain flag: the handler reads it without a lock

    def close_all():
        os.read(wake_r, 1)               # until the first SIGTERM
        for life in list(LIVE):
            try:
                life.close(unattended=True)
            except Exception as e:
                log.error("engram: closing engine %s at SIGTERM failed: %s", life.name, e)
        closed[0] = True
        os.kill(os.getpid(), signal.SIGTERM)     # back in the main thread's handler, below

    def on_sigterm(*_):
        if os.getpid() != owner:         # a forked child: the pipe and thread are its parent's
            closed[0] = True
        if not closed[0]:
            try:
                os.write(wake_w, b"t")           # a second SIGTERM while closing: one more byte, unread
            except BlockingIOError:              # pragma: no cover - 64 KiB of SIGTERMs
                pass
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)    # only the main thread may do this
        os.kill(os.getpid(), signal.SIGTERM)

    os.set_blocking(wake_w, False)
    named_thread(close_all, "engram-sigterm").start()
    signal.signal(signal.SIGTERM, on_sigterm)
