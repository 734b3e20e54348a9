"""Priming: what was recalled or activated recently comes back more easily.

Three kinds, all read from and kept in the shared-memory node records, so a
worker process ranking a recall sees the priming the owner recorded:

    repetition   R = exp(-(now - last_access) / repetition_tau_s), for memories
                 recalled before (access_count > 0): recall itself is the prime
    semantic     S = residual x exp(-(now - primed_s) / semantic_tau_s): a recall
                 leaves residual = semantic_share x activation on the memories
                 its spread reached most (the top ``semantic_keep``), in the
                 record's `activation` and `primed_s` fields
    associative  memories returned together (the top ``associative_top``)
                 strengthen their links, w <- w + associative_rate x (1 - w),
                 a Hebbian step that is bounded by 1, in place in the CSR (a
                 missing link starts at associative_rate and is linked in
                 batches of FLUSH)

Combined with saturation, P = 1 - exp(-(R + S)) in [0, 1), and a ranked
memory's score is multiplied by (1 + priming_weight x P): priming lifts a
memory by at most priming_weight (default 20%), so it reorders near-equals
but never outweighs similarity and spreading. Memory use is bounded: the
residuals live in the fixed node records, and the owner tracks at most
``MAX_PRIMED`` primed memories, clearing the oldest and those decayed below
``FLOOR`` (pruning). Time is the space's clock (``Space.clock``), so tests
inject one. Off by default (RecallConfig.priming); docs/cognitive.md has the
model and docs/recall-quality.md what it measured.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

FLOOR = 1e-3            # a residual decayed below this is cleared
MAX_PRIMED = 4096       # memories with a residual at once (the owner's bookkeeping)
FLUSH = 256             # new co-recall links buffered before they join the delta log


def level(hot: np.ndarray, ids: np.ndarray, now_ns: int, cfg) -> np.ndarray:
    """P = 1 - exp(-(R + S)) for ``ids`` (float32 in [0, 1))."""
    rec = hot[ids]
    now_s = now_ns / 1e9
    since_access = np.maximum(now_s - rec["last_access_ns"] / 1e9, 0.0)
    r = np.where(rec["access_count"] > 0, np.exp(-since_access / cfg.repetition_tau_s), 0.0)
    since_primed = np.maximum(now_s - rec["primed_s"].astype(np.float64), 0.0)
    s = rec["activation"] * np.exp(-since_primed / cfg.semantic_tau_s)
    return (1.0 - np.exp(-(r + s))).astype(np.float32)


def boost(hot: np.ndarray, ids: np.ndarray, now_ns: int, cfg) -> np.ndarray:
    """The score factor 1 + priming_weight x P (1 where priming is off)."""
    if not cfg.priming:
        return np.ones(ids.shape[0], np.float32)
    return (1.0 + np.float32(cfg.priming_weight) * level(hot, ids, now_ns, cfg)).astype(np.float32)


def reached(ids: np.ndarray, act: np.ndarray, cfg):
    """What a recall leaves a residual on: the ``semantic_keep`` most active it touched."""
    keep = min(cfg.semantic_keep, ids.shape[0])
    if not cfg.priming or keep == 0:
        return ids[:0], act[:0]
    top = np.argpartition(-act, keep - 1)[:keep]
    return ids[top], act[top]


class Primer:
    """The owner's side: records each recall's priming in the node records. ``graph``: the
    space's links (a store Graph, read); ``link(src, dst, w)`` and ``reweight(src, dst, w) ->
    found mask``: how the owner adds checked links and changes the weights the CSR holds
    (so that both are logged). ``pruned``: the ids whose residuals the last record() cleared."""

    def __init__(self, graph, link, reweight=None):
        self.graph, self.link = graph, link
        self.reweight = reweight if reweight is not None else graph.reweight
        self.pruned = np.zeros(0, np.int64)
        self._primed: OrderedDict = OrderedDict()     # id -> Unix seconds it was primed, oldest first
        self._pending: dict = {}                      # (src, dst) -> weight of new co-recall links

    def record(self, hot: np.ndarray, ids: np.ndarray, primed, now_ns: int, cfg) -> dict:
        """After a recall that returned ``ids`` and whose spread reached ``primed`` = (ids,
        act): leave residuals, strengthen the co-recalled links; returns the counts."""
        now_s = int(now_ns // 1_000_000_000)
        counts = {"repetition": int(np.count_nonzero(hot["access_count"][ids] > 1))}
        self.pruned = np.zeros(0, np.int64)
        p_ids, p_act = primed
        if p_ids.size:
            p_ids = p_ids.astype(np.int64)
            since = np.maximum(now_s - hot["primed_s"][p_ids].astype(np.int64), 0)
            old = hot["activation"][p_ids] * np.exp(-since / cfg.semantic_tau_s)
            hot["activation"][p_ids] = np.maximum(old, np.float32(cfg.semantic_share) * p_act)
            hot["primed_s"][p_ids] = now_s
            for i in p_ids.tolist():
                self._primed.pop(i, None)
                self._primed[i] = now_s
            self._prune(hot, now_s, cfg)
        counts["semantic"] = int(p_ids.size)
        counts["associative"] = self._strengthen(ids[:cfg.associative_top], cfg)
        return counts

    def _prune(self, hot, now_s: int, cfg) -> None:
        horizon = cfg.semantic_tau_s * np.log(1.0 / FLOOR)   # seconds until any residual <= 1 is below FLOOR
        pruned = []
        while self._primed:
            i, t = next(iter(self._primed.items()))
            if len(self._primed) <= MAX_PRIMED and now_s - t < horizon:
                break
            del self._primed[i]
            hot["activation"][i] = 0.0
            hot["primed_s"][i] = 0
            pruned.append(i)
        self.pruned = np.asarray(pruned, np.int64)

    def _strengthen(self, ids: np.ndarray, cfg) -> int:
        """Hebbian step on the links among ``ids``: in place where the CSR has the link;
        new links wait in a buffer and join the delta log FLUSH at a time, since every
        flush makes the next spreading recall compact the graph."""
        if ids.shape[0] < 2 or cfg.associative_rate <= 0:
            return 0
        src, dst, w = [], [], []
        for a in ids.tolist():
            nb, nw = self.graph.neighbors(a)
            current = dict(zip(nb.tolist(), nw.tolist()))
            for b in ids.tolist():
                if b != a:       # the link's weight now: the graph's (delta log included), else ours
                    old = current[b] if b in current else self._pending.get((a, b), 0.0)
                    src.append(a)
                    dst.append(b)
                    w.append(min(old + cfg.associative_rate * (1.0 - old), 1.0))
        src, dst, w = np.asarray(src, np.int64), np.asarray(dst, np.int64), np.asarray(w, np.float32)
        found = self.reweight(src, dst, w)
        for a, b, x, here in zip(src.tolist(), dst.tolist(), w.tolist(), found.tolist()):
            if here:
                self._pending.pop((a, b), None)
            else:
                self._pending[a, b] = x
        if len(self._pending) >= FLUSH:
            self.flush()
        return int(src.shape[0])

    def forget_pending(self, src: np.ndarray, dst: np.ndarray) -> None:
        """The owner linked these pairs itself: its weights win over buffered co-recall ones."""
        if self._pending:
            for pair in zip(src.tolist(), dst.tolist()):
                self._pending.pop(pair, None)

    def flush(self) -> None:
        """New co-recall links into the delta log (the owner also flushes before saving)."""
        if self._pending:
            (s, d), w = zip(*self._pending.keys()), list(self._pending.values())
            self._pending.clear()
            self.link(np.asarray(s, np.int64), np.asarray(d, np.int64), np.asarray(w, np.float32))

    def primed(self) -> int:
        return len(self._primed)
