"""Similarity-based interference at remember time (McGeoch 1932; Anderson & Neely 1996).

A new memory whose vector is very close to memories already stored competes
with them at retrieval: the old ones weaken the new one (proactive) and the
new one weakens the old ones (retroactive). For each new vector the k most
similar live memories are found in one batched top-k scan per tier; a pair
interferes when its cosine s reaches the threshold t, with strength

    e = (s - t) / (1 - t)                  in [0, 1]: 0 at the threshold, 1 for a duplicate
    L = 1 - prod(1 - e)                    over the memory's competitors (noisy-OR load)
    c' = max(min(c, floor), c x (1 - rate x L))

rate is ``proactive_rate`` for a new memory (its competitors: the old ones it
matched) and ``retroactive_rate`` for an old one (its competitors: the new
ones that matched it). Confidence never rises and is never pushed below
``floor``. The fan-type interference is the fan effect of engram/cognition/fan.py.
Off by default: it costs a scan of the space per remember batch. docs/cognitive.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engram.config import InterferenceConfig
from engram.store.tables import TIER_TABLE


@dataclass
class Interference:
    """The interfering pairs of one remember batch: new row i, old memory id, cosine."""
    new: np.ndarray        # int64 row of the batch
    old: np.ndarray        # int64 memory id
    sim: np.ndarray        # float32 cosine >= threshold
    strength: np.ndarray   # float64 e of each pair

    def load(self, keys: np.ndarray, n: int) -> np.ndarray:
        """Noisy-OR load per key (0..n-1): 1 - prod(1 - e) over the key's pairs."""
        keep = np.ones(n)
        np.multiply.at(keep, keys, 1.0 - self.strength)
        return 1.0 - keep

    def strongest(self, keys: np.ndarray, others: np.ndarray, n: int):
        """Per key: (its most similar partner, their cosine); -1 / 0 where a key has no pair."""
        order = np.lexsort((-self.sim, keys))
        k = keys[order]
        first = order[np.r_[True, k[1:] != k[:-1]]]
        partner, best = np.full(n, -1, np.int64), np.zeros(n, np.float32)
        partner[keys[first]], best[keys[first]] = others[first], self.sim[first]
        return partner, best


def weaken(conf: np.ndarray, load: np.ndarray, rate: float, floor: float) -> np.ndarray:
    """c' = max(min(c, floor), c (1 - rate L)): never up, never pushed below floor."""
    c = conf.astype(np.float64)
    return np.maximum(np.minimum(c, floor), c * (1.0 - rate * load)).astype(np.float32)


def find(store, kern, vectors: np.ndarray, cfg: InterferenceConfig) -> Interference | None:
    """The pairs (new row, live memory) with cosine >= threshold, at most ``competitors`` per
    new row, from one M:N top-k scan per tier. None when off or nothing is stored."""
    if not cfg.enabled or not int(store.dir["n_live"][0]):
        return None
    ids, sims = [], []
    for tier in TIER_TABLE:
        rows, row_node, row_live, row_norm = store.tier_rows(tier)
        if rows.shape[0]:
            idx, sc = kern.cosine_topk(vectors, rows, cfg.competitors, mask=row_live, norms=row_norm)
            ids.append(row_node[idx].astype(np.int64))
            sims.append(sc)
    ids, sims = np.concatenate(ids, axis=1), np.concatenate(sims, axis=1)
    if ids.shape[1] > cfg.competitors:           # both tiers answered: keep the best overall
        best = np.argsort(-sims, axis=1, kind="stable")[:, :cfg.competitors]
        ids, sims = np.take_along_axis(ids, best, 1), np.take_along_axis(sims, best, 1)
    new, col = np.nonzero(sims >= cfg.threshold)
    if not new.size:
        return None
    s = sims[new, col]
    e = np.clip((s.astype(np.float64) - cfg.threshold) / (1.0 - cfg.threshold), 0.0, 1.0)
    return Interference(new.astype(np.int64), ids[new, col], s, e)


def apply(hit: Interference, cfg: InterferenceConfig, new_conf: np.ndarray, first_id: int, hot: np.ndarray):
    """Weaken the batch's confidences (in place, before they are stored) and the old memories'
    records. Returns, for proactive and for retroactive interference (empty when off), the
    weakened ids, the strongest competitor of each, their confidence after, and the cosine."""
    empty = (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32),) * 2
    pro = retro = empty
    if cfg.proactive:
        n = new_conf.shape[0]
        new_conf[:] = weaken(new_conf, hit.load(hit.new, n), cfg.proactive_rate, cfg.floor)
        rows = np.unique(hit.new)
        partner, best = hit.strongest(hit.new, hit.old, n)
        pro = (rows + first_id, partner[rows], new_conf[rows], best[rows])
    if cfg.retroactive:
        olds, inverse = np.unique(hit.old, return_inverse=True)
        after = weaken(hot["confidence"][olds], hit.load(inverse, olds.size), cfg.retroactive_rate, cfg.floor)
        hot["confidence"][olds] = after
        partner, best = hit.strongest(inverse, hit.new + first_id, olds.size)
        retro = (olds, partner, after, best)
    return pro, retro
