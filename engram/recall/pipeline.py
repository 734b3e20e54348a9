"""Integrated recall: similarity seeds, spreading within a budget, ranking.

    1. seeds   the top ``seeds`` memories by cosine (both tiers, exact scan);
               each seed's activation is sigmoid(steepness * (cos - midpoint))
    2. budget  before spreading, the predictor's estimate for the whole spread
               is compared with what is left of ``budget_ms``: more than 1.5x
               over means similarity alone (fallback=True)
    3. spread  hop by hop over the association graph (max_depth 4, decay 0.7,
               threshold 0.01, cycle penalty 0.5); a hop predicted to end past
               the budget is not started (partial=True); or, with mode="ppr",
               personalized PageRank from the seeds (engram/recall/ppr.py)
    4. rank    score = (a0 + lambda (a - a0)) x confidence x retention, where a0 is the
               memory's own seed activation (0 if only spreading reached it), a its
               activation after spreading, lambda = spread_weight (0.75), and retention =
               strength x exp(-(now - last_access) / forget_tau_s); ties by id. A memory
               reached only by spreading scores at most lambda, so a direct match whose
               a0 x confidence x retention exceeds lambda is never displaced by it

The owner then records the access (engram/space.py). With spread=False (or a
fallback) the ranking is plain cosine similarity and ``scores`` are the cosines.
Everything here reads the space through a SpaceReader and takes its settings and
recorders from a RecallContext, so the owner and the workers run the same code.
See docs/recall.md for the formulas.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engram.cognition import priming
from engram.cognition.decay import retention
from engram.observe.hwcounters import CacheCounters
from engram.recall import ppr
from engram.recall.budget import FALLBACK_FACTOR, LatencyPredictor
from engram.recall.context import RecallContext
from engram.recall.reader import SpaceReader
from engram.recall.spreading import budgeted_spread


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


def seed_activation(cos: np.ndarray, cfg) -> np.ndarray:
    """Similarity in [-1, 1] -> activation in (0, 1), by a logistic curve."""
    z = np.float32(-cfg.sigmoid_steepness) * (cos.astype(np.float32) - np.float32(cfg.sigmoid_midpoint))
    with np.errstate(over="ignore"):       # exp overflow -> inf -> activation 0, as it should
        return (np.float32(1.0) / (np.float32(1.0) + np.exp(z))).astype(np.float32)


def recall(reader: SpaceReader, ctx: RecallContext, q: np.ndarray, k: int, *, spread: bool,
           budget_ms: float | None, t_begin: int, trace_id: int = 0) -> Ranked:
    """The pipeline above. ``t_begin`` (perf_counter_ns) is when the budget started."""
    cfg = ctx.config
    deadline = None if budget_ms is None else t_begin + int(budget_ms * 1e6)
    n_seeds = k if not spread else max(k, cfg.seed_factor * k)
    t0 = time.perf_counter_ns()
    found = reader.similar(q, n_seeds, deadline, cfg.hot_budget_share)
    seed_ids, cos = found.ids, found.scores
    t1 = time.perf_counter_ns()
    timings = {"scan_ms": (t1 - t0) / 1e6}
    if not spread or seed_ids.shape[0] == 0 or found.partial:
        return _similarity_only(seed_ids[:k], cos[:k], cfg, timings, partial=found.partial,
                                fallback=bool(spread and found.partial))

    in_graph = seed_ids < reader.links(cfg.fan).csr.n_nodes
    act0 = seed_activation(cos, cfg)
    t2 = time.perf_counter_ns()
    stage = _walk if cfg.mode == "ppr" else _activate
    nodes, act, hops, partial, info = stage(reader, ctx, seed_ids[in_graph], act0[in_graph], n_seeds,
                                            found.warm_share, deadline, trace_id)
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
    top, score = rank(reader, ctx, ids, potential, k)
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


def _activate(reader, ctx, seeds, act0, n_seeds, warm_share, deadline, trace_id):
    """mode="spread": (nodes, activation, hops, partial, info); nodes None: fall back."""
    cfg, predictor, batcher, metrics = ctx.config, ctx.predictor, ctx.batcher, ctx.spreading
    g = reader.links(cfg.fan)
    params = cfg.spread
    batch = batcher.batch_size
    x = LatencyPredictor.spread_features(n_seeds, int(g.degree[seeds].sum()), params.max_depth, warm_share, batch)
    estimate = predictor.predict_spread(x)
    # no time left, or the whole spread is predicted to overrun what is left by half: similarity alone
    left = None if deadline is None else deadline - time.perf_counter_ns()
    if left is not None and (left <= 0 or estimate > FALLBACK_FACTOR * left):
        metrics.record(0.0, 0.0, False, True, predictor.ready)
        return None, None, None, False, {"predicted_spread_ms": estimate / 1e6}
    counters = CacheCounters() if metrics.sample_counters() else None
    if counters is not None:
        counters.__enter__()
    splitter = ctx.splitter
    out = budgeted_spread(reader.kern, g.csr, g.degree, seeds, act0, params,
                          deadline_ns=deadline, predictor=predictor, batch_size=batch, tier_mix=warm_share,
                          events=ctx.events, trace_id=trace_id, splitter=splitter,
                          split_job=(reader.name, cfg.fan, g.generation) if splitter is not None else ())
    if counters is not None:
        counters.__exit__(None, None, None)
    metrics.record(out.predicted_ns, out.hop_ns, out.partial, False, predictor.ready,
                   counters.result() if counters is not None else None)
    predictor.observe_spread(x, out.elapsed_ns, estimate if predictor.ready else None)
    batcher.observe(int(out.nodes.shape[0]), int(g.degree[out.nodes].sum()) if out.nodes.size else 0)
    info = {"hops": out.hops_run, "touched": int(out.nodes.shape[0]), "predicted_spread_ms": estimate / 1e6,
            "predicted_hops_ms": out.predicted_ns / 1e6, "hop_ms": out.hop_ns / 1e6, "batch_size": batch}
    return out.nodes, out.activation, out.hops, out.partial, info


def _walk(reader, ctx, seeds, act0, n_seeds, warm_share, deadline, trace_id):
    """mode="ppr": PageRank mass scaled to [0, 1] by the largest, as the activation."""
    cfg = ctx.config
    g = reader.walk_links(cfg.fan)
    out = ppr.personalized_pagerank(reader.kern, g.csr, g.degree, seeds, act0, restart=cfg.ppr_restart,
                                    iterations=cfg.ppr_iterations, tolerance=cfg.ppr_tolerance,
                                    epsilon=cfg.ppr_epsilon, deadline_ns=deadline)
    ctx.spreading.record(0.0, 0.0, out.partial, False, False)     # counted among spreads (no prediction)
    top = float(out.mass.max()) if out.mass.size else 1.0
    act = (out.mass / np.float32(max(top, 1e-30))).astype(np.float32)
    info = {"hops": out.steps, "touched": int(out.nodes.shape[0]), "walking": out.walking}
    return out.nodes, act, out.hops, out.partial, info


def rank(reader, ctx, ids: np.ndarray, act: np.ndarray, k: int):
    """(positions of the best k live candidates, their scores), best first, ties by id.

    score = act x confidence x retention x priming (act: the blended activation), and confidence x
    retention <= 1 (both factors are in [0, 1]) and priming <= lift, so a candidate can only beat
    the k-th score if its activation x lift does: score the most active M first and widen M only
    when something outside could still get in. Exact, and it touches ~8k
    records instead of every node the spread reached."""
    cfg = ctx.config
    n = act.shape[0]
    hot = reader.hot()
    now = ctx.clock()
    lift = 1.0 + (cfg.priming_weight if cfg.priming else 0.0)    # the most priming multiplies by
    m = min(n, max(8 * k, 64))
    while True:
        top_m = np.argpartition(-act, m - 1)[:m] if m < n else np.arange(n)
        pos = top_m[reader.visible(ids[top_m])]
        cand = ids[pos]
        score = act[pos] * hot["confidence"][cand] * retention(reader.kern, hot["strength"][cand],
                                                               hot["last_access_ns"][cand], now, cfg.forget_tau_s)
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
