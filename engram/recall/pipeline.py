"""Integrated recall: similarity seeds, spreading within a budget, ranking.

    1. seeds   the top ``seeds`` memories by cosine (both tiers, exact scan);
               each seed's activation is sigmoid(steepness * (cos - midpoint))
    2. budget  before spreading, the predictor's estimate for the whole spread
               is compared with what is left of ``budget_ms``: more than 1.5x
               over means similarity alone (fallback=True)
    3. spread  hop by hop over the association graph (max_depth 4, decay 0.9,
               threshold 0.01, cycle penalty 0.5 up to the echo ceiling); a hop predicted to end past
               the budget is not started (partial=True); or, with mode="ppr",
               personalized PageRank from the seeds (engram/recall/ppr.py)
    4. rank    score = (a0 + lambda (a - a0)) x confidence x retention, where a0 is the
               memory's own seed activation (0 if only spreading reached it), a its
               activation after spreading, lambda = spread_weight (0.9), and retention =
               strength x exp(-(now - last_access) / forget_tau_s); ties by id. A memory
               reached only by spreading scores at most lambda, so a direct match whose
               a0 x confidence x retention exceeds lambda is never displaced by it

The owner then records the access (engram/space/owner.py). With spread=False (or a
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
from engram.kernels._cy.rank import logistic, top_blended
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
    """Similarity in [-1, 1] -> activation in (0, 1), by a logistic curve (float32, one C
    pass; the exponent is capped at 80, past which float32 rounds the activation to 0)."""
    return logistic(np.ascontiguousarray(cos, np.float32), cfg.sigmoid_steepness, cfg.sigmoid_midpoint)


def recall(reader: SpaceReader, ctx: RecallContext, q: np.ndarray, k: int, *, spread: bool,
           budget_ms: float | None, t_begin: int, trace_id: int = 0) -> Ranked:
    """The pipeline above. ``t_begin`` (perf_counter_ns) is when the budget started."""
    cfg = ctx.config
    deadline = None if budget_ms is None else t_begin + int(budget_ms * 1e6)
    n_seeds = k if not spread else max(k, cfg.seed_factor * k)
    # what the later stages look up, looked up before the scan streams the rows through the
    # caches (afterwards each lookup runs cold)
    links = reader.links(cfg.fan) if spread else None
    hot, hidden, now = reader.hot(), reader.hidden(), ctx.clock()
    t0 = time.perf_counter_ns()
    found = reader.similar(q, n_seeds, deadline, cfg.hot_budget_share)
    seed_ids, cos = found.ids, found.scores
    t1 = time.perf_counter_ns()
    timings = {"scan_ms": (t1 - t0) / 1e6}
    events = ctx.events
    events.scan(trace_id, seed_ids.shape[0], t0, t1 - t0)
    if not spread or seed_ids.shape[0] == 0 or found.partial:
        events.seeds(trace_id, seed_ids, cos, cos)
        return _similarity_only(seed_ids[:k], cos[:k], cfg, timings, partial=found.partial,
                                fallback=bool(spread and found.partial))

    n_graph = links.csr.n_nodes
    act0 = seed_activation(cos, cfg)
    events.seeds(trace_id, seed_ids, cos, act0)
    if seed_ids.max() < n_graph:      # every seed has a place in the graph: no copies
        in_ids, in_act = seed_ids, act0
    else:
        in_graph = seed_ids < n_graph
        in_ids, in_act = seed_ids[in_graph], act0[in_graph]
    t2 = time.perf_counter_ns()
    stage = _walk if cfg.mode == "ppr" else _activate
    nodes, act, hops, partial, info = stage(reader, ctx, links, in_ids, in_act, n_seeds, found.warm_share,
                                            deadline, trace_id)
    if nodes is None:                    # predicted to overrun the budget: similarity alone
        return _similarity_only(seed_ids[:k], cos[:k], cfg, timings, partial=False, fallback=True, info=info)
    t3 = time.perf_counter_ns()
    timings["spread_ms"] = (t3 - t2) / 1e6
    events.spread(trace_id, info.get("hops", 0), info.get("touched", 0), t2, t3 - t2)

    # candidates: everything touched, and the seeds outside the compacted graph (no links
    # yet); the best k by the blended score, in one pass in C (engram/kernels/_cy/rank.pyx)
    ids, score, act_top, sim, hops_top = top_blended(
        nodes, act, hops, n_graph, seed_ids, act0, cos, hot, hidden, now, cfg.forget_tau_s,
        cfg.spread_weight, k, cfg.priming, cfg.priming_weight, cfg.repetition_tau_s, cfg.semantic_tau_s)
    timings["rank_ms"] = (time.perf_counter_ns() - t3) / 1e6
    return Ranked(ids, score, act_top, sim, hops_top, partial, False, timings, info,
                  priming.reached(nodes, act, cfg) if cfg.priming else None)


def _activate(reader, ctx, g, seeds, act0, n_seeds, warm_share, deadline, trace_id):
    """mode="spread" over links g: (nodes, activation, hops, partial, info); nodes None: fall back."""
    cfg, predictor, batcher, metrics = ctx.config, ctx.predictor, ctx.batcher, ctx.spreading
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
    batcher.observe(out.fired_nodes, out.fired_edges)
    info = {"hops": out.hops_run, "touched": int(out.nodes.shape[0]), "predicted_spread_ms": estimate / 1e6,
            "predicted_hops_ms": out.predicted_ns / 1e6, "hop_ms": out.hop_ns / 1e6, "batch_size": batch}
    return out.nodes, out.activation, out.hops, out.partial, info


def _walk(reader, ctx, links, seeds, act0, n_seeds, warm_share, deadline, trace_id):
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


def _similarity_only(ids, cos, cfg, timings, partial: bool, fallback: bool, info=None) -> Ranked:
    return Ranked(ids, cos.astype(np.float32), seed_activation(cos, cfg), cos.astype(np.float32),
                  np.zeros(ids.shape[0], np.int8), partial, fallback, timings, info or {})
