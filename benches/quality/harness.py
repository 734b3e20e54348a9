"""Run the recall methods on one graph through engram's public API and score them.

Every engine method gets a fresh engine (so one method's touches, priming or
learned latency model cannot leak into the next) holding the graph's memories
in the warm tier (384-d f16 rows) and its associations, with the engine's default
index settings: a graph of ``index_min_rows`` memories or more (10,000) takes its
seeds from the approximate index, which the harness lets cover every memory, and whose
audit it lets choose the search breadth (settle), before the first timed query, as in
a space that has served for a while. Each query is
recalled twice: ``recall(q, k=10)`` as a user would call it (scored on the full
task, and timed), and ``recall(q, k=20)`` for the hub-free task, whose first 10
non-hub results are scored (so removing hubs does not leave a method short of
results; "assoc-hubfree-in10" scores the k=10 list instead, where a hub costs a
slot). With priming on, the second recall is primed by the first. A method whose
settings this engram does not know is reported as not available, and picked up
as soon as RecallConfig has them.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from benches._common import settle_index
from benches.quality import tasks
from engram import Engine
from engram.config import RecallConfig
from engram.demo.embed import HashingEmbedder
from engram.errors import InvalidInputError

DIM = 384
TIER = "warm"
HUBFREE_K = 2 * tasks.K
WARMUP = 20          # untimed recalls first: JIT, caches, the latency predictor's first fits


@dataclass(frozen=True)
class Method:
    name: str
    changes: dict | None = None     # configure_recall(**changes) over the defaults; None: popularity
    spread: bool = True


def methods(sweep: bool = True) -> list:
    ms = [Method("popularity"), Method("similarity", {}, spread=False), Method("default", {})]
    ms += [Method(f"spread fan={f}", {"fan": f}) for f in ("none", "source", "target", "both")]
    ms += [Method("ppr", {"mode": "ppr"}), Method("priming on", {"priming": True}),
           Method("priming off", {"priming": False})]
    if sweep:      # how much of what spreading adds should count (spread_weight, lambda)
        ms += [Method(f"fan={f} spread_weight={w}", {"fan": f, "spread_weight": w})
               for f in ("none", "source", "both") for w in (0.25, 0.5, 0.75, 1.0)]
    return ms


def default_settings() -> dict:
    """Every top-level RecallConfig setting at its default: each method starts from these."""
    d = RecallConfig()
    return {f.name: getattr(d, f.name) for f in dataclasses.fields(d) if f.name != "spread"}


@dataclass
class Prepared:
    """A graph with everything the methods share: vectors, queries, hubs."""
    graph: object
    vectors: np.ndarray
    queries: list
    qvecs: np.ndarray
    hub_set: set
    hub_min_degree: int
    popularity: list                # every node, most-linked first


def prepare(g, n_queries: int, seed: int = 0) -> Prepared:
    emb = HashingEmbedder(DIM).fit(g.texts)
    vectors = emb.embed(g.texts)
    deg = tasks.degrees(len(g), g.src, g.dst)
    hub_idx = tasks.hubs(deg)
    hub_set = set(hub_idx.tolist())
    qs = tasks.sample_queries(g, n_queries, seed, hub_set)
    qv = emb.embed([q.text for q in qs])
    ok = np.flatnonzero(qv.any(axis=1))            # a query of stopwords only has no vector
    popularity = np.lexsort((np.arange(len(g)), -deg)).tolist()
    return Prepared(g, vectors, [qs[i] for i in ok], qv[ok], hub_set, int(deg[hub_idx[-1]]), popularity)


def fill(eng: Engine, name: str, p: Prepared):
    """A new space holding the graph: ids are the graph's node indices."""
    g = p.graph
    space = eng.space(name)
    batch = 4096
    for i in range(0, len(g), batch):
        ids = space.remember(p.vectors[i:i + batch], content=g.content[i:i + batch], tier=TIER)
        if ids[0] != i:
            raise RuntimeError(f"engram gave id {ids[0]} to node {i}: the harness needs ids = node indices")
    space.link(g.src, g.dst, g.weight)
    space.compact()
    if not eng.wait_for_index():
        raise RuntimeError(f"the index of {g.name!r} was not built within 10 minutes")
    return space



def configure(space, m: Method) -> str | None:
    """Apply a method's settings over the defaults; the refusal text if engram does not know them."""
    try:
        space.configure_recall(**{**default_settings(), **m.changes})
    except InvalidInputError as e:
        return str(e)
    return None


def summarize(scores: list, lat_ms: list | None = None, **per_query) -> dict:
    """Means of (recall@10, reciprocal rank) and of each per-query list; P50/P95 of the latencies."""
    a = np.array(scores, dtype=np.float64).reshape(-1, 2)
    out = {"queries": int(a.shape[0]), "recall@10": float(a[:, 0].mean()), "mrr": float(a[:, 1].mean())}
    out.update({name: float(np.mean(v)) for name, v in per_query.items()})
    if lat_ms:
        out["p50_ms"], out["p95_ms"] = (float(np.percentile(lat_ms, q)) for q in (50, 95))
    return out


def run_method(p: Prepared, m: Method, budget_ms: float | None = 10.0) -> dict:
    """{"assoc": {...}, "assoc-hubfree": {...}, ...} for one method, or {"available": False, ...}.
    budget_ms: recall's budget (the default, what users get; None for quality alone, as in CI,
    where a loaded machine must not turn spreads into fallbacks)."""
    if m.changes is None:                          # popularity: one list for every query
        top = p.popularity[:tasks.K]
        full = [tasks.score(top, q, p.hub_set, False) for q in p.queries]
        free = [s for q in p.queries if (s := tasks.score(p.popularity, q, p.hub_set, True))]
        free10 = [s for q in p.queries if (s := tasks.score(top, q, p.hub_set, True))]
        return {"available": True, "assoc": summarize(full, hubs_at_10=[len(set(top) & p.hub_set)],
                                                      self_first=[top[0] == q.memory for q in p.queries],
                                                      hub_first=[top[0] in p.hub_set]),
                "assoc-hubfree": summarize(free), "assoc-hubfree-in10": summarize(free10)}
    with Engine(dim=DIM, workers=0) as eng:       # one engine per method: nothing carries over
        space = fill(eng, p.graph.name, p)
        refused = configure(space, m)
        if not refused:
            settle_index(space, p.qvecs, k=tasks.K)
        return {"available": False, "reason": refused} if refused else _recall_all(space, p, m, budget_ms)


def _recall_all(space, p: Prepared, m: Method, budget_ms: float | None) -> dict:
    for qv in p.qvecs[:WARMUP]:
        space.recall(qv, k=tasks.K, spread=m.spread, budget_ms=budget_ms)
    full, free, free10, lat, stages = [], [], [], [], {}
    per_query = {"hubs_at_10": [], "spread_at_10": [], "self_first": [], "hub_first": []}
    partial = fallback = 0
    for q, qv in zip(p.queries, p.qvecs):
        t0 = time.perf_counter_ns()
        res = space.recall(qv, k=tasks.K, spread=m.spread, budget_ms=budget_ms)
        lat.append((time.perf_counter_ns() - t0) / 1e6)
        for stage, ms in res.timings.items():
            stages.setdefault(stage, []).append(ms)
        partial += bool(res.partial)
        fallback += bool(res.fallback)
        ids = res.ids.tolist()
        full.append(tasks.score(ids, q, p.hub_set, False))
        per_query["hubs_at_10"].append(len(set(ids) & p.hub_set))      # are hubs swamping the results?
        per_query["spread_at_10"].append(int((res.hops > 0).sum()))   # does spreading get anything in?
        per_query["self_first"].append(bool(ids) and ids[0] == q.memory)
        per_query["hub_first"].append(bool(ids) and ids[0] in p.hub_set)
        if q.relevant_hubfree:
            free10.append(tasks.score(ids, q, p.hub_set, True))   # stricter: a hub costs a slot
            wide = space.recall(qv, k=HUBFREE_K, spread=m.spread, budget_ms=budget_ms)
            free.append(tasks.score(wide.ids.tolist(), q, p.hub_set, True))
    settings = dataclasses.asdict(space.configure_recall())
    return {"available": True, "settings": {k: v for k, v in settings.items() if k != "spread"},
            "index": space.stats()["index"],        # the audit's choice (breadth) among the rest
            "assoc": summarize(full, lat, **per_query),
            "assoc-hubfree": summarize(free), "assoc-hubfree-in10": summarize(free10),
            "stages_p50_ms": {k: float(np.median(v)) for k, v in stages.items()},
            "partial": partial, "fallback": fallback}
