"""Reconsolidation (Nader, Schafe & LeDoux 2000): recalling a consolidated memory
makes it labile for a while, and an update made then is written into it.

``Space.reconsolidate(id, vector=None, content=None, confidence=None)`` is
accepted only inside the window of the memory's last recall:

    never recalled   access_count == 0 (remember sets no recall)
    too young        it was younger than min_age_s (24 h) when last recalled
    too soon         less than opens_after_s (1 h) since that recall
    too late         more than closes_after_s (6 h) since that recall

Inside, the update is weighted by an inverted-U plasticity over the position
x in [0, 1] of now within the window, largest in the middle:

    p = peak_plasticity x sin(pi x)
    vector'     = (1 - p) v + p (|v| / |u|) u     u: the given vector, at v's scale
    confidence' = (1 - p) c + p c_given
    content'    = the given text (text does not blend)

The version it replaces (vector, content, confidence, time replaced) is kept,
at most ``history`` per memory, oldest dropped first: ``Space.versions(id)``.
See docs/cognitive.md.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from engram import validate
from engram.config import ReconsolidationConfig
from engram.errors import InvalidInputError, ReconsolidationWindowError
from engram.store.rows import LOG_DTYPE
from engram.store.tables import FORGOTTEN

NS = 1_000_000_000


@dataclass(frozen=True)
class Version:
    """A memory as it was before a reconsolidation replaced it."""
    vector: np.ndarray      # float32 (dim,)
    content: str | None
    confidence: float
    replaced_ns: int        # when the update replaced it (the space's clock)


@dataclass(frozen=True)
class Update:
    """A reconsolidation worked out and checked, as it is written (and logged)."""
    memory_id: int
    vector: np.ndarray | None     # blended, in the tier's dtype
    content: str | None
    confidence: float | None      # the blended value to store
    replaced_ns: int
    plasticity: float


def _hours(ns: int) -> str:
    return f"{ns / (3600 * NS):.2f} h"


def plasticity(cfg: ReconsolidationConfig, memory_id: int, rec, now_ns: int) -> float:
    """The plasticity of a memory now (from its hot record), or the reason it is not labile."""
    def refuse(reason, why):
        raise ReconsolidationWindowError(f"memory {memory_id} cannot be reconsolidated ({reason}): {why}", reason)

    if int(rec["access_count"]) == 0:
        refuse("never recalled", "only a recall makes a memory labile; recall it first")
    recalled, opens, closes = int(rec["last_access_ns"]), int(cfg.opens_after_s * NS), int(cfg.closes_after_s * NS)
    age = recalled - int(rec["created_ns"])
    if age < cfg.min_age_s * NS:
        refuse("too young", f"it was {_hours(age)} old when last recalled; only memories older than "
               f"{_hours(int(cfg.min_age_s * NS))} at recall are labile; recall it again once it is")
    since = now_ns - recalled
    if since < opens:
        refuse("too soon", f"it was recalled {_hours(since)} ago and its window opens {_hours(opens)} "
               f"after recall (in {_hours(opens - since)})")
    if since > closes:
        refuse("too late", f"it was recalled {_hours(since)} ago and its window closed {_hours(closes)} "
               "after recall; recall it again to reopen it")
    return cfg.peak_plasticity * math.sin(math.pi * (since - opens) / (closes - opens))


def blend(old: np.ndarray, given: np.ndarray, p: float) -> np.ndarray:
    """(1 - p) old + p given, the given vector first rescaled to the old one's norm."""
    old64, u = old.astype(np.float64), given.astype(np.float64)
    n_old, n_u = np.linalg.norm(old64), np.linalg.norm(u)
    scale = n_old / n_u if n_old > 0 else 1.0
    return ((1.0 - p) * old64 + p * scale * u).astype(np.float32)


class Reconsolidation:
    """One space's reconsolidation settings and the previous versions of its memories."""

    def __init__(self, dim: int):
        self.dim = dim
        self.config = ReconsolidationConfig()
        self._versions: dict = {}        # memory id -> deque of Version, oldest first

    def configure(self, **changes) -> ReconsolidationConfig:
        self.config = self.config.with_changes(**changes)
        for memory_id, kept in self._versions.items():   # a smaller history drops the oldest now
            self._versions[memory_id] = deque(kept, maxlen=self.config.history)
        return self.config

    def versions(self, memory_id: int) -> list:
        return list(self._versions.get(memory_id, ()))

    def plan(self, store, current, vector, content, confidence, now_ns: int) -> Update:
        """Check everything and work out the update (nothing is written yet). ``current``:
        the memory's Memories from get(); raises ReconsolidationWindowError outside its window."""
        if vector is None and content is None and confidence is None:
            raise InvalidInputError("reconsolidate needs a vector, content or confidence to apply")
        i = int(current.ids[0])
        warm = current.tier[0] == "warm"
        if vector is not None:
            u = validate.vectors(vector, self.dim, f16=warm)
            if u.shape[0] != 1:
                raise InvalidInputError(f"reconsolidate takes one vector, got {u.shape[0]}")
            if not u.any():
                raise InvalidInputError("vector is all zeros: its direction is undefined")
        if content is not None:
            validate.contents([content], 1)
        if confidence is not None:
            confidence = float(validate.per_item(confidence, 1, "confidence", 1.0, 0.0, 1.0)[0])
        hot = store.hot()
        p = plasticity(self.config, i, hot[i], now_ns)
        new_vec = blend(current.vectors[0], u[0], p) if vector is not None else None
        if warm and new_vec is not None and (np.abs(new_vec) > validate.F16_MAX).any():
            raise InvalidInputError("the updated vector exceeds the float16 range of the warm tier")
        stored = None if new_vec is None else new_vec.astype(LOG_DTYPE[int(hot["tier"][i])])
        if confidence is not None:
            confidence = float(np.float32((1.0 - p) * float(hot["confidence"][i]) + p * confidence))
        return Update(i, stored, content, confidence, now_ns, p)

    def apply(self, store, i: int, vector, content, confidence, replaced_ns: int) -> None:
        """Write an update's fields (an Update's, or a logged one's) into the store and keep
        the version it replaces, which it reads from the store itself, so replay is the same step."""
        hot = store.hot()
        tier = int(hot["tier"][i])
        # the content heap may have to grow (and could fail), and it is append-only:
        # write there first, then the version being replaced, then the record
        ref = store.append_content([content])[0] if content is not None else None
        old = Version(store.vectors_of(np.array([i]))[0], store.content_at(int(hot["content_ref"][i])),
                      float(hot["confidence"][i]), replaced_ns)
        self._versions.setdefault(i, deque(maxlen=self.config.history)).append(old)
        if vector is not None:
            store.rewrite_row(i, tier, vector)
        if ref is not None:
            hot["content_ref"][i] = ref
        if confidence is not None:
            hot["confidence"][i] = confidence

    # ---- snapshots -----------------------------------------------------------------
    def arrays(self, store) -> dict:
        """The versions of live memories, as plain arrays for the space's snapshot."""
        flags = store.hot()["flags"]
        rows = [(i, v) for i, kept in self._versions.items() if not flags[i] & FORGOTTEN for v in kept]
        text = [None if v.content is None else v.content.encode("utf-8") for _, v in rows]
        return {
            "versions_id": np.array([i for i, _ in rows], np.int64),
            "versions_vector": np.array([v.vector for _, v in rows], np.float32).reshape(len(rows), self.dim),
            "versions_confidence": np.array([v.confidence for _, v in rows], np.float32),
            "versions_replaced_ns": np.array([v.replaced_ns for _, v in rows], np.int64),
            "versions_content_len": np.array([-1 if t is None else len(t) for t in text], np.int64),
            "versions_content": np.frombuffer(b"".join(t for t in text if t is not None), np.uint8),
        }

    def restore(self, arrs: dict) -> None:
        """Load versions saved by arrays(); snapshots written before reconsolidation have none."""
        if "versions_id" not in arrs:
            return
        heap, pos = arrs["versions_content"].tobytes(), 0
        for i, vec, conf, t, n in zip(arrs["versions_id"].tolist(), arrs["versions_vector"],
                                      arrs["versions_confidence"].tolist(), arrs["versions_replaced_ns"].tolist(),
                                      arrs["versions_content_len"].tolist()):
            text = None if n < 0 else heap[pos:pos + n].decode("utf-8")
            pos += max(n, 0)
            kept = self._versions.setdefault(i, deque(maxlen=self.config.history))
            kept.append(Version(vec.copy(), text, conf, t))
