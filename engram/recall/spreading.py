"""Spreading within a latency budget: the hop loop recall runs.

One spread runs hop by hop through the kernels (a SpreadRun); before each hop the
LatencyPredictor (engram/recall/budget.py) estimates its cost from the frontier it
will fire, and a hop that would overrun the remaining budget is not started (the
result is partial). A large hop may be split among idle workers (a HopSplitter,
engram/workers/stealing.py, handed in by the caller).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engram.kernels.spreadrun import DEADLINE, DONE, CsrGraph, SpreadParams, SpreadRun
from engram.observe.tracing.events import NO_EVENTS
from engram.recall.budget import NO_MODEL, LatencyPredictor

# --- the budgeted spread ----------------------------------------------------------------------

@dataclass
class SpreadOutcome:
    nodes: np.ndarray           # uint32, first-touch order (seeds first)
    activation: np.ndarray      # float32
    hops: np.ndarray            # uint8, 0 for seeds
    partial: bool = False       # a hop was skipped to stay within the budget
    hops_run: int = 0
    predicted_ns: float = 0.0   # sum of the per-hop predictions for the hops run
    hop_ns: int = 0             # time in those hops
    elapsed_ns: int = 0
    batch_size: int = 0
    fired_nodes: int = 0        # frontier nodes the hops run fired, and their out-edges: the
    fired_edges: int = 0        # out-degree the AdaptiveBatcher learns


def budgeted_spread(kern, graph: CsrGraph, degree: np.ndarray, seeds: np.ndarray, seed_act: np.ndarray,
                    params: SpreadParams, *, deadline_ns: int | None = None,
                    predictor: LatencyPredictor | None = None, batch_size: int = 0, tier_mix: float = 0.0,
                    events=NO_EVENTS, trace_id: int = 0, splitter=None, split_job: tuple = ()) -> SpreadOutcome:
    """Spread hop by hop; before each hop, skip it (partial) if the predictor says
    it would end after ``deadline_ns`` (a perf_counter_ns time). With a ``splitter``
    (engram/workers/stealing.py), a large hop is split into batches that idle
    workers gather; ``split_job`` is (space, fan mode, CSR generation)."""
    t_start = time.perf_counter_ns()
    predicted_total = 0.0
    hop_total = 0
    partial = False
    hops_run = fired_nodes = fired_edges = 0
    log = np.empty((max(params.max_depth, 1), 10))
    split_edges = splitter.min_edges() if splitter is not None else 0
    # seeds come from the engine's own scan (ids inside the graph, finite activations):
    # the run starts without the public spread_run's re-checks
    with SpreadRun(kern, graph, np.ascontiguousarray(seeds, np.uint32), np.ascontiguousarray(seed_act, np.float32),
                   params) as run:
        while hops_run < params.max_depth and run.frontier:
            # as many hops as fit, priced and run in C (native backends); then learn from them
            model = predictor.hop_model() if predictor is not None else NO_MODEL
            ran, status = run.budgeted(params.max_depth - hops_run, model, batch_size, tier_mix, deadline_ns,
                                       split_edges, log)
            if ran:
                ran_log = log[:ran]
                sums = ran_log.sum(axis=0)          # fired nodes [4], edges [5], ns [7], predicted [8]
                predicted_total += float(sums[8])
                hop_total += int(sums[7])
                fired_nodes += int(sums[4])
                fired_edges += int(sums[5])
                for h in range(ran):
                    hops_run += 1
                    events.hop(trace_id, hops_run, int(ran_log[h, 4]), int(ran_log[h, 9]), int(ran_log[h, 7]))
                if predictor is not None:        # last: it clips the stalls in the log
                    predictor.observe_hops(ran_log)
            if status == DEADLINE:
                partial = True
                break
            if status == DONE:
                continue
            # this hop runs here: one to split among idle workers, or a backend without the C loop
            fired = run.frontier
            f_edges = int(degree[run.frontier_nodes()].sum())
            helpers = splitter.helpers(f_edges) if splitter is not None else 0
            x = LatencyPredictor.hop_features(batch_size, hops_run + 1, tier_mix, fired, f_edges, helpers)
            guess = predictor.predict_hop(x) if predictor is not None else 0.0
            t0 = time.perf_counter_ns()
            if deadline_ns is not None and t0 + guess > deadline_ns:
                partial = True
                break
            if helpers:
                splitter.hop(run, f_edges, batch_size, helpers, *split_job, deadline_ns=deadline_ns)
            else:
                run.step()
            t1 = time.perf_counter_ns()
            if predictor is not None:
                predictor.observe_hop(x, t1 - t0, guess)
            predicted_total += guess
            hop_total += t1 - t0
            hops_run += 1
            fired_nodes, fired_edges = fired_nodes + fired, fired_edges + f_edges
            events.hop(trace_id, hops_run, fired, t0, t1 - t0)
        nodes, act, hops = run.touched()
    if predictor is not None:
        predictor.observe_request(predicted_total, hop_total)
    return SpreadOutcome(nodes, act, hops, partial, hops_run, predicted_total, hop_total,
                         time.perf_counter_ns() - t_start, batch_size, fired_nodes, fired_edges)
