"""Which memories change tier: the background migration's rule (engram/workers/tiering.py runs it).

A memory not recalled for ``cold_after_s`` moves to the cold tier (int8 with a scale per
row: a quarter of f32's bytes, an eighth of the record's cache footprint when scanned),
unless it is strong (strength x confidence at least ``keep_strength``). A cold memory
recalled again within ``warm_after_access_s`` moves back to the warm tier (f16). The
two times are far apart (the config refuses a warm time at or past the cold one), so a
memory does not move back and forth. Recency is the node record's last access, which
every recall that returns a memory updates (the creation time until then).
"""
from __future__ import annotations

import numpy as np

from engram.config import TieringConfig
from engram.layout import schema
from engram.store.rows import TIER_LABEL

C = schema.CONSTANTS
FORGOTTEN = C["NODE_FORGOTTEN"]


def choose(hot: np.ndarray, now_ns: int, cfg: TieringConfig) -> tuple:
    """(ids to move to cold, ids to move back to warm) of the node records ``hot``, oldest first."""
    live = (hot["flags"] & FORGOTTEN) == 0
    tier = hot["tier"]
    idle = now_ns - hot["last_access_ns"].astype(np.int64)
    weak = hot["strength"] * hot["confidence"] < cfg.keep_strength
    to_cold = live & (tier != C["TIER_COLD"]) & (idle >= int(cfg.cold_after_s * 1e9)) & weak
    to_warm = live & (tier == C["TIER_COLD"]) & (idle < int(cfg.warm_after_access_s * 1e9))
    return np.flatnonzero(to_cold), np.flatnonzero(to_warm)


def counts(hot: np.ndarray) -> dict:
    """Live memories per tier name."""
    live = (hot["flags"] & FORGOTTEN) == 0
    per = np.bincount(hot["tier"][live], minlength=len(TIER_LABEL))
    return {name: int(per[tier]) for tier, name in TIER_LABEL.items()}
