"""What the owner of a space keeps for it: tables, reader, recall context, reconsolidation,
settings, the writers' lock and the change log (engram/store/mutations.py).

The engine keeps one Owned per space to snapshot it, replay its log and close
it; the space's Space is the public face over the same object.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from engram.cognition.reconsolidation import Reconsolidation
from engram.config import InterferenceConfig
from engram.observe.metrics import NOOP_RECORDER, Recorder
from engram.recall.context import RecallContext
from engram.recall.reader import SpaceReader
from engram.store.mutations import Mutations
from engram.store.tables import SpaceStore


@dataclass
class Owned:
    """What an owner builds for a space and shares with its Space: the engine keeps it to
    snapshot the space (tables, reconsolidation's versions, settings), replay its log and
    close it. ``lock``: held by every change, and by a checkpoint for a moment."""
    store: SpaceStore
    reader: SpaceReader
    context: RecallContext
    labile: Reconsolidation
    metrics: Recorder = NOOP_RECORDER
    interference: InterferenceConfig = field(default_factory=InterferenceConfig)
    lock: threading.RLock = field(default_factory=threading.RLock)
    changes: Mutations = None

    def __post_init__(self):
        if self.changes is None:
            self.changes = Mutations(self.store, self.reader.graph, self.labile, 0, on_settings=self.apply_settings)

    def settings(self) -> dict:
        """What configure_recall/_interference/_reconsolidation set, as snapshots keep it."""
        return {"recall": self.context.config.settings(), "interference": self.interference.settings(),
                "reconsolidation": self.labile.config.settings()}

    def apply_settings(self, saved: dict) -> None:
        """Settings as settings() gave them (a snapshot's, a log record's); names this
        version does not know are skipped, so newer files still open."""
        for kind, cfg in (("recall", self.context.config), ("interference", self.interference),
                          ("reconsolidation", self.labile.config)):
            known = cfg.settings()
            changes = {k: v for k, v in (saved.get(kind) or {}).items() if k in known}
            if not changes:
                continue
            if kind == "recall":
                self.context.config = cfg.with_changes(**changes)
            elif kind == "interference":
                self.interference = cfg.with_changes(**changes)
            else:
                self.labile.configure(**changes)
