"""What the owner of a space keeps for it: tables, reader, recall context, reconsolidation,
settings, the writers' lock (SpaceLock) and the change log (engram/store/mutations.py).

The engine keeps one Owned per space to snapshot it, replay its log and close
it; the space's Space is the public face over the same object. The engine's embedder is
held here too, with the space's record of which embedder made its vectors.
"""
from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field

from engram.cognition.reconsolidation import Reconsolidation
from engram.config import InterferenceConfig
from engram.observe.metrics import NOOP_RECORDER, Recorder
from engram.recall import published
from engram.recall.context import RecallContext
from engram.recall.reader import SpaceReader
from engram.store.mutations import Mutations
from engram.store.tables import SpaceStore

log = logging.getLogger("engram")
#: deferred tasks (recalls' access updates) that may wait for the lock; past this, defer() waits for it
MAX_DEFERRED = 1024


class SpaceLock:
    """The space's writers' lock (reentrant, used as ``with lock:``), and work deferred to it.

    ``defer(task)`` is for work that needs the lock but that no caller waits for: a
    recall's access update (engram/space/owner.py). The task runs at once, in the caller's
    thread, if the lock is free; if another thread holds it, the caller returns without
    waiting and the holder runs the task when it lets go. A thread that takes the lock
    first runs every task deferred before it, so whoever holds the lock next sees them
    applied. Tasks run in the order deferred. At most ``limit`` wait; past that,
    ``defer`` waits for the lock (nothing is dropped). A task that raises is logged and
    not retried: it must not fail the write of the thread that happened to run it.
    """

    def __init__(self, limit: int = MAX_DEFERRED):
        self._lock = threading.RLock()
        self._depth = 0                       # the holder's nesting; changed only by the holder
        self._tasks: collections.deque = collections.deque()
        self.limit = limit

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self._depth += 1
        if self._depth == 1 and self._tasks:
            try:
                self._run()
            except BaseException:            # (an interrupt): the caller never got the lock
                self._depth -= 1
                self._lock.release()
                raise
        return True

    def release(self) -> None:
        last = self._depth == 1
        try:
            if last and self._tasks:
                self._run()
        finally:
            self._depth -= 1
            self._lock.release()
        # a task deferred after our run, while we still held the lock: its thread did not
        # wait, so run it now, unless another thread took the lock (which then runs it)
        while last and self._tasks and self._lock.acquire(blocking=False):
            self._depth += 1
            try:
                self._run()
            finally:
                self._depth -= 1
                self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()

    def defer(self, task) -> None:
        """Run ``task()`` with the lock held: now if it is free, else when its holder lets go."""
        self._tasks.append(task)
        if self.acquire(blocking=len(self._tasks) > self.limit):
            self.release()

    @property
    def deferred(self) -> int:
        """Tasks waiting for the lock now."""
        return len(self._tasks)

    def _run(self) -> None:
        while self._tasks:                    # only the holder takes tasks
            task = self._tasks.popleft()
            try:
                task()
            except Exception:
                log.exception("engram: a deferred update failed (it is dropped)")


@dataclass
class Owned:
    """What an owner builds for a space and shares with its Space: the engine keeps it to
    snapshot the space (tables, reconsolidation's versions, settings), replay its log and
    close it. ``lock``: held by every change, and by a checkpoint for a moment; recalls
    defer their access updates to it (SpaceLock)."""
    store: SpaceStore
    reader: SpaceReader
    context: RecallContext
    labile: Reconsolidation
    metrics: Recorder = NOOP_RECORDER
    interference: InterferenceConfig = field(default_factory=InterferenceConfig)
    lock: SpaceLock = field(default_factory=SpaceLock)
    changes: Mutations = None
    embedder: object = None         # the engine's engram.text.Embedder, or None: vectors only
    embedded_by: dict | None = None  # what made this space's vectors (engram/text/inspace.py), as settings

    def __post_init__(self):
        if self.changes is None:
            self.changes = Mutations(self.store, self.reader.graph, self.labile, 0, on_settings=self.apply_settings)
        if self.store.writable:
            self.settings_changed()

    def settings_changed(self) -> None:
        """Publish the recall settings for readers in other processes (engram/recall/published.py)."""
        published.publish(self.store.dir, self.context.config)

    def settings(self) -> dict:
        """What configure_recall/_interference/_reconsolidation set, as snapshots keep it."""
        out = {"recall": self.context.config.settings(), "interference": self.interference.settings(),
               "reconsolidation": self.labile.config.settings()}
        if self.embedded_by is not None:
            out["embedder"] = dict(self.embedded_by)
        return out

    def apply_settings(self, saved: dict) -> None:
        """Settings as settings() gave them (a snapshot's, a log record's); names this
        version does not know are skipped, so newer files still open."""
        if isinstance(saved.get("embedder"), dict):
            self.embedded_by = dict(saved["embedder"])
        for kind, cfg in (("recall", self.context.config), ("interference", self.interference),
                          ("reconsolidation", self.labile.config)):
            known = cfg.settings()
            changes = {k: v for k, v in (saved.get(kind) or {}).items() if k in known}
            if not changes:
                continue
            if kind == "recall":
                self.context.config = cfg.with_changes(**changes)
                self.settings_changed()
            elif kind == "interference":
                self.interference = cfg.with_changes(**changes)
            else:
                self.labile.configure(**changes)
