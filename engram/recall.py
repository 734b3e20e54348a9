"""Integrated recall: similarity seeds, spreading within a budget, ranking.

    1. seeds   the top ``seeds`` memories by cosine (both tiers, exact scan);
               each seed's activation is sigmoid(steepness * (cos - midpoint))
    2. budget  before spreading, the predictor's estimate for the whole spread
               is compared with what is left of ``budget_ms``: more than 1.5x
               over means similarity alone (fallback=True)
    3. spread  hop by hop over the association graph (max_depth 4, decay 0.7,
               threshold 0.01, cycle penalty 0.5); a hop predicted to end past
               the budget is not started (partial=True)
    4. rank    score = (a0 + lambda (a - a0)) x confidence x retention, where a0 is the
               memory's own seed activation (0 if only spreading reached it), a its
               activation after spreading, lambda = spread_weight (0.75), and retention =
               strength x exp(-(now - last_access) / forget_tau_s); ties by id. A memory
               reached only by spreading scores at most lambda, so a direct match whose
               a0 x confidence x retention exceeds lambda is never displaced by it
    5. touch   the returned memories' last access and access count are updated

With spread=False (or a fallback) the ranking is plain cosine similarity and
``scores`` are the cosines. See docs/recall.md for the formulas.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from ._kernels.table import SpreadParams, decay_params
from . import ppr, priming, validate
from .errors import InvalidInputError
from .fan import MODES as FAN_MODES
from .hwcounters import CacheCounters
from .spreading import FALLBACK_FACTOR, LatencyPredictor, run_spread


SPREAD_SETTINGS = tuple(SpreadParams.__dataclass_fields__)   # max_depth, decay, threshold, ...


@dataclass(frozen=True)
class RecallConfig:
    """Recall's tunables; ``Space.configure_recall(**changes)`` replaces them. The
    spreading rules (max_depth, decay, threshold, cycle_penalty, prefetch_distance)
    are a SpreadParams, with its defaults."""
    spread: SpreadParams = SpreadParams()
    sigmoid_midpoint: float = 0.5       # cosine that maps to activation 0.5
    sigmoid_steepness: float = 10.0
    forget_tau_s: float = 30 * 86400.0  # retention e-folds after 30 days without access
    seed_factor: int = 2                # seeds = seed_factor x k (at least k)
    hot_budget_share: float = 0.5       # of the scan budget, what the hot (f32) tier may use
    # the two below were chosen by docs/recall-quality.md: the source fan keeps hubs from
    # echoing activation back to themselves, and lambda 0.75 lets what spreading finds rank
    # while a direct match with activation over 0.75 (cosine over ~0.61) keeps its place
    fan: str = "source"                 # fan effect: "none" | "source" | "target" | "both" (engram/fan.py)
    spread_weight: float = 0.75         # lambda: how much of what spreading adds counts (docs/recall.md)
    mode: str = "spread"                # "spread" (activation, hop by hop) | "ppr" (engram/ppr.py)
    ppr_restart: float = 0.5            # restart probability of the walk (HippoRAG's damping 0.5)
    ppr_iterations: int = 20            # at most this many steps of the series
    ppr_tolerance: float = 1e-3         # stop when the mass still walking is below this
    ppr_epsilon: float = 1e-4           # drop contributions below this (keeps the walk local)
    priming: bool = False               # repetition, semantic and associative priming (engram/priming.py)
    priming_weight: float = 0.2         # a primed memory's score grows by at most this share
    repetition_tau_s: float = 600.0     # repetition priming e-folds 10 minutes after a recall
    semantic_tau_s: float = 120.0       # residual activation e-folds in 2 minutes
    semantic_share: float = 0.5         # of a reached memory's activation, what stays as residual
    semantic_keep: int = 32             # memories per recall that keep a residual
    associative_rate: float = 0.05      # Hebbian step for links among what is recalled together
    associative_top: int = 3            # ... among the top this many results

    def spread_params(self) -> SpreadParams:
        return self.spread.check()

    def with_changes(self, **changes) -> "RecallConfig":
        """A checked copy with changes, spreading settings included by name."""
        validate.known_settings(changes, set(SPREAD_SETTINGS) | (set(self.__dataclass_fields__) - {"spread"}),
                                "recall")
        sp = {k: changes.pop(k) for k in list(changes) if k in SPREAD_SETTINGS}
        return replace(self, spread=replace(self.spread, **sp), **changes).check()

    def check(self) -> "RecallConfig":
        self.spread_params()
        for name, lo in (("sigmoid_steepness", 0.0), ("forget_tau_s", 0.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > lo):
                raise InvalidInputError(f"{name} must be a finite number > {lo}, got {v!r}")
        if not (isinstance(self.sigmoid_midpoint, (int, float)) and -1.0 <= self.sigmoid_midpoint <= 1.0):
            raise InvalidInputError(f"sigmoid_midpoint must be in [-1, 1], got {self.sigmoid_midpoint!r}")
        if isinstance(self.seed_factor, bool) or not isinstance(self.seed_factor, int) or not 1 <= self.seed_factor <= 64:
            raise InvalidInputError(f"seed_factor must be an integer in [1, 64], got {self.seed_factor!r}")
        if not (isinstance(self.spread_weight, (int, float)) and 0.0 <= self.spread_weight <= 1.0):
            raise InvalidInputError(f"spread_weight must be in [0, 1], got {self.spread_weight!r}")
        if self.fan not in FAN_MODES:
            raise InvalidInputError(f"fan must be one of {', '.join(FAN_MODES)}, got {self.fan!r}")
        if not (isinstance(self.hot_budget_share, (int, float)) and 0.0 < self.hot_budget_share < 1.0):
            raise InvalidInputError(f"hot_budget_share must be in (0, 1), got {self.hot_budget_share!r}")
        if self.mode not in MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name, lo, hi in (("ppr_restart", 0.0, 1.0), ("ppr_tolerance", 0.0, 1.0), ("ppr_epsilon", 0.0, 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v < hi:
                raise InvalidInputError(f"{name} must be a number in ({lo:g}, {hi:g}), got {v!r}")
        if isinstance(self.ppr_iterations, bool) or not isinstance(self.ppr_iterations, int) \
                or not 1 <= self.ppr_iterations <= 255:
            raise InvalidInputError(f"ppr_iterations must be an integer in [1, 255], got {self.ppr_iterations!r}")
        if not isinstance(self.priming, bool):
            raise InvalidInputError(f"priming must be True or False, got {self.priming!r}")
        for name, lo, hi in (("priming_weight", 0.0, 1.0), ("semantic_share", 0.0, 1.0),
                             ("associative_rate", 0.0, 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise InvalidInputError(f"{name} must be a number in [{lo:g}, {hi:g}], got {v!r}")
        for name in ("repetition_tau_s", "semantic_tau_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise InvalidInputError(f"{name} must be a finite number > 0, got {v!r}")
        for name, hi in (("semantic_keep", 256), ("associative_top", 16)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                raise InvalidInputError(f"{name} must be an integer in [0, {hi}], got {v!r}")
        return self

    # settings travel to worker processes as float64s beside the query (engram/workers.py)
    def to_vector(self) -> list:
        out = [float(getattr(self.spread, f)) for f in SPREAD_SETTINGS]
        for f in OWN_SETTINGS:
            v = getattr(self, f)
            out.append(float(CHOICES[f].index(v)) if f in CHOICES else float(v))
        return out

    @classmethod
    def from_vector(cls, v) -> "RecallConfig":
        sp = {f: type(getattr(SpreadParams(), f))(v[i]) for i, f in enumerate(SPREAD_SETTINGS)}
        own = {}
        for i, f in enumerate(OWN_SETTINGS, len(SPREAD_SETTINGS)):
            own[f] = CHOICES[f][int(v[i])] if f in CHOICES else type(getattr(cls(), f))(v[i])
        return cls(spread=SpreadParams(**sp), **own)


MODES = ("spread", "ppr")
CHOICES = {"fan": FAN_MODES, "mode": MODES}
OWN_SETTINGS = tuple(f for f in RecallConfig.__dataclass_fields__ if f != "spread")


def seed_activation(cos: np.ndarray, cfg: RecallConfig) -> np.ndarray:
    """Similarity in [-1, 1] -> activation in (0, 1), by a logistic curve."""
    z = np.float32(-cfg.sigmoid_steepness) * (cos.astype(np.float32) - np.float32(cfg.sigmoid_midpoint))
    with np.errstate(over="ignore"):       # exp overflow -> inf -> activation 0, as it should
        return (np.float32(1.0) / (np.float32(1.0) + np.exp(z))).astype(np.float32)


_EXPONENTIAL = decay_params("exponential", {"tau": 1.0})[0]


def retention(kern, strength: np.ndarray, last_access_ns: np.ndarray, now_ns: int, cfg: RecallConfig) -> np.ndarray:
    """strength x exp(-age / tau), age in seconds since last access (never negative),
    through the decay kernel (inputs are the engine's own finite fields: no re-check)."""
    age = (np.maximum(now_ns - last_access_ns.astype(np.int64), 0) / 1e9).astype(np.float32)
    return kern._decay(np.ascontiguousarray(strength, np.float32), age, _EXPONENTIAL, (cfg.forget_tau_s, 0.0, 0.0))


@dataclass
class Ranked:
    ids: np.ndarray
    scores: np.ndarray
    activation: np.ndarray
    similarity: np.ndarray      # cosine for seeds, NaN for memories reached only by spreading
    hops: np.ndarray            # int8: 0 seed, h reached at hop h
    partial: bool
    fallback: bool
    timings: dict
    info: dict = None           # spreading details: hops run, nodes touched, predictions
    primed: tuple = None        # (ids, activation) the spread reached most: semantic priming


def recall(view, q: np.ndarray, k: int, *, spread: bool, budget_ms: float | None, cfg: RecallConfig,
           predictor: LatencyPredictor, batcher, t_begin: int) -> Ranked:
    """The pipeline above, for a SpaceView (the owner's Space or a reader)."""
    deadline = None if budget_ms is None else t_begin + int(budget_ms * 1e6)
    n_seeds = k if not spread else max(k, cfg.seed_factor * k)
    t0 = time.perf_counter_ns()
    seed_ids, cos, warm_share, scan_partial = view._similar(q, n_seeds, deadline, cfg.hot_budget_share)
    t1 = time.perf_counter_ns()
    timings = {"scan_ms": (t1 - t0) / 1e6}
    if not spread or seed_ids.shape[0] == 0 or scan_partial:
        return _similarity_only(seed_ids[:k], cos[:k], cfg, timings, partial=scan_partial,
                                fallback=bool(spread and scan_partial))

    in_graph = seed_ids < view._spread_graph(cfg.fan)[0].n_nodes
    act0 = seed_activation(cos, cfg)
    t2 = time.perf_counter_ns()
    walk = _walk if cfg.mode == "ppr" else _spread
    nodes, act, hops, partial, info = walk(view, seed_ids[in_graph], act0[in_graph], n_seeds, warm_share,
                                           deadline, cfg, predictor, batcher)
    if nodes is None:                    # predicted to overrun the budget: similarity alone
        return _similarity_only(seed_ids[:k], cos[:k], cfg, timings, partial=False, fallback=True, info=info)
    t3 = time.perf_counter_ns()
    timings["spread_ms"] = (t3 - t2) / 1e6

    # candidates: everything touched, plus seeds outside the compacted graph (no links yet)
    outside = ~in_graph
    if outside.any():
        ids = np.concatenate([nodes, seed_ids[outside]])
        act = np.concatenate([act, act0[outside]])
        hops = np.concatenate([hops.astype(np.int8), np.zeros(int(outside.sum()), np.int8)])
    else:
        ids, hops = nodes, hops.astype(np.int8)
    # each candidate's own match: its seed activation, or 0 if only spreading reached it
    pos = _seed_positions(seed_ids, in_graph, ids, nodes.shape[0])
    a0 = np.where(pos >= 0, act0[np.maximum(pos, 0)], np.float32(0.0)).astype(np.float32)
    potential = a0 + np.float32(cfg.spread_weight) * (act - a0)
    top, score = rank(view, ids, potential, k, cfg)
    sim = np.where(pos[top] >= 0, cos[np.maximum(pos[top], 0)], np.float32(np.nan)).astype(np.float32)
    timings["rank_ms"] = (time.perf_counter_ns() - t3) / 1e6
    return Ranked(ids[top], score, act[top], sim, hops[top], partial, False, timings, info,
                  priming.reached(ids, act, cfg) if cfg.priming else None)


def _seed_positions(seed_ids, in_graph, ids, n_reached) -> np.ndarray:
    """For each candidate, its index in seed_ids, or -1. Both walks touch the seeds first,
    in the order given, and the seeds outside the graph are appended last, so this is
    usually a matter of layout; a search over all candidates (milliseconds at 400K) is
    the fallback when the layout is not that."""
    inside = np.flatnonzero(in_graph)
    outside = np.flatnonzero(~in_graph)
    m = inside.shape[0]
    if np.array_equal(ids[:m], seed_ids[inside]) and np.array_equal(ids[n_reached:], seed_ids[outside]):
        pos = np.full(ids.shape[0], -1, np.int64)
        pos[:m] = inside
        pos[n_reached:] = outside
        return pos
    order = np.argsort(seed_ids)
    at = np.minimum(np.searchsorted(seed_ids, ids, sorter=order), seed_ids.shape[0] - 1)
    return np.where(seed_ids[order[at]] == ids, order[at], -1)


def _spread(view, seeds, act0, n_seeds, warm_share, deadline, cfg, predictor, batcher):
    """mode="spread": (nodes, activation, hops, partial, info); nodes None: fall back."""
    graph, degree = view._spread_graph(cfg.fan)
    params = view._spread_params
    batch = batcher.batch_size
    x = LatencyPredictor.spread_features(n_seeds, int(degree[seeds].sum()), params.max_depth, warm_share, batch)
    estimate = predictor.predict_spread(x)
    metrics = view._metrics
    if deadline is not None and estimate > FALLBACK_FACTOR * max(deadline - time.perf_counter_ns(), 0):
        if metrics is not None:
            metrics.record(0.0, 0.0, False, True, predictor.ready)
        return None, None, None, False, {"predicted_spread_ms": estimate / 1e6}
    counters = CacheCounters() if metrics is not None and metrics.sample_counters() else None
    if counters is not None:
        counters.__enter__()
    splitter = getattr(view, "_splitter", None)          # workers and the owner (engram/stealing.py)
    out = run_spread(view._kern, graph, degree, seeds, act0, params,
                     deadline_ns=deadline, predictor=predictor, batch_size=batch, tier_mix=warm_share,
                     trace=view._trace if view._tracing else None, trace_space=view._trace_space,
                     splitter=splitter,
                     split_job=(view.name, cfg.fan, view._graph_generation) if splitter else ())
    if counters is not None:
        counters.__exit__(None, None, None)
    if metrics is not None:
        metrics.record(out.predicted_ns, out.hop_ns, out.partial, False, predictor.ready,
                       counters.result() if counters is not None else None)
    predictor.observe_spread(x, out.elapsed_ns, estimate if predictor.ready else None)
    batcher.observe(int(out.nodes.shape[0]), int(degree[out.nodes].sum()) if out.nodes.size else 0)
    info = {"hops": out.hops_run, "touched": int(out.nodes.shape[0]), "predicted_spread_ms": estimate / 1e6,
            "predicted_hops_ms": out.predicted_ns / 1e6, "hop_ms": out.hop_ns / 1e6, "batch_size": batch}
    return out.nodes, out.activation, out.hops, out.partial, info


def _walk(view, seeds, act0, n_seeds, warm_share, deadline, cfg, predictor, batcher):
    """mode="ppr": PageRank mass scaled to [0, 1] by the largest, as the activation."""
    graph, degree = view._spread_graph(cfg.fan, walk=True)
    out = ppr.personalized_pagerank(view._kern, graph, degree, seeds, act0, restart=cfg.ppr_restart,
                                    iterations=cfg.ppr_iterations, tolerance=cfg.ppr_tolerance,
                                    epsilon=cfg.ppr_epsilon, deadline_ns=deadline)
    if view._metrics is not None:        # counted among spreads (no prediction to score)
        view._metrics.record(0.0, 0.0, out.partial, False, False)
    top = float(out.mass.max()) if out.mass.size else 1.0
    act = (out.mass / np.float32(max(top, 1e-30))).astype(np.float32)
    info = {"hops": out.steps, "touched": int(out.nodes.shape[0]), "walking": out.walking}
    return out.nodes, act, out.hops, out.partial, info


def rank(view, ids: np.ndarray, act: np.ndarray, k: int, cfg: RecallConfig):
    """(positions of the best k live candidates, their scores), best first, ties by id.

    score = act x confidence x retention x priming (act: the blended activation), and confidence x
    retention <= 1 (both factors are in [0, 1]) and priming <= lift, so a candidate can only beat
    the k-th score if its activation x lift does: score the most active M first and widen M only
    when something outside could still get in. Exact, and it touches ~8k
    records instead of every node the spread reached."""
    n = act.shape[0]
    hot = view._store.hot()
    now = view.clock()
    lift = 1.0 + (cfg.priming_weight if cfg.priming else 0.0)    # the most priming multiplies by
    m = min(n, max(8 * k, 64))
    while True:
        top_m = np.argpartition(-act, m - 1)[:m] if m < n else np.arange(n)
        pos = top_m[view._visible(ids[top_m])]
        cand = ids[pos]
        score = act[pos] * hot["confidence"][cand] * retention(view._kern, hot["strength"][cand],
                                                               hot["last_access_ns"][cand], now, cfg)
        if cfg.priming:
            score = score * priming.boost(hot, cand, now, cfg)
        order = np.lexsort((cand, -score))[:k]
        if m == n:
            break
        floor = act[top_m].min() * lift   # the most any unscored candidate can score
        if order.shape[0] == k and score[order[-1]] > floor:
            break
        m = min(n, m * 4)
    return pos[order], score[order].astype(np.float32)


def _similarity_only(ids, cos, cfg, timings, partial: bool, fallback: bool, info=None) -> Ranked:
    return Ranked(ids, cos.astype(np.float32), seed_activation(cos, cfg), cos.astype(np.float32),
                  np.zeros(ids.shape[0], np.int8), partial, fallback, timings, info or {})
