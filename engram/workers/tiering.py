"""The owner's tier keeper: a thread that moves memories between tiers in the background.

Every ``interval_s`` it asks the rule (engram/cognition/tiering.py) which memories of each
space should move and moves them through ``Space.migrate_checked`` in steps of ``batch``
(each step takes the space's writers for one step only, and is logged like any change).
It updates the engram_tier_memories gauges after each pass.
"""
from __future__ import annotations

import logging
import threading

from engram.cognition import tiering
from engram.config import TieringConfig
from engram.threads import named_thread

log = logging.getLogger("engram.tiering")


class TierKeeper:
    """``spaces``: a callable returning {name: Space} of the owner's spaces now (each space's
    clock tells the time its records are compared with)."""

    def __init__(self, spaces, config: TieringConfig):
        self.spaces, self.config = spaces, config
        self.passes = 0
        self.moved = {"cold": 0, "warm": 0}
        self.failures = 0
        self._stop = threading.Event()
        self._thread = named_thread(self._run, "engram-tiering")
        self._thread.start()

    def run_once(self) -> dict:
        """One pass over every space now; returns the memories moved, by the tier they moved to."""
        moved = {"cold": 0, "warm": 0}
        for space in list(self.spaces().values()):
            store = space.store_for_tiering()
            if store is None:
                continue
            to_cold, to_warm = tiering.choose(store.hot(), space.clock(), self.config)
            for ids, tier in ((to_warm, "warm"), (to_cold, "cold")):
                for a in range(0, ids.shape[0], self.config.batch):
                    if self._stop.is_set():
                        return moved
                    moved[tier] += space.migrate_checked(ids[a:a + self.config.batch], tier)
            space.tier_gauges()
        for tier, n in moved.items():
            self.moved[tier] += n
        self.passes += 1
        return moved

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            try:
                self.run_once()
            except Exception:      # the memories stay where they are; the next pass tries again
                self.failures += 1
                log.exception("engram: moving memories between tiers failed; retrying in %.0f s",
                              self.config.interval_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
