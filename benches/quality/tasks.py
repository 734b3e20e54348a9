"""Retrieval tasks over a Graph, and the metrics that score them.

Task "assoc" (a memory and its direct associations): a sampled memory's query is
a random half of the words of its own text (so the memory is findable but not
identical to the query); relevant = the memory itself plus its out-neighbours.
The relevance comes from the graph and the query from the text alone, so a
method earns it only by finding associations the query does not spell out.

Task "assoc-hubfree": the same queries, with the 1% most-linked memories (by
in + out degree) removed from the relevant set and from the ranked results
before scoring, so a method cannot score by returning hubs everyone links to.
A query whose relevant set is empty after that is left out.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

K = 10
HUB_FRACTION = 0.01


def recall_at_k(ranked, relevant: set, k: int = K) -> float:
    """Share of the relevant set in the top k, the denominator capped at k (so a
    memory with 40 associations can score 1.0 with a perfect top 10)."""
    if not relevant:
        raise ValueError("empty relevant set")
    return len(set(list(ranked)[:k]) & relevant) / min(len(relevant), k)


def reciprocal_rank(ranked, relevant: set, k: int = K) -> float:
    """1 / rank of the first relevant result in the top k, 0 if none (MRR@k per query)."""
    for r, x in enumerate(list(ranked)[:k], 1):
        if x in relevant:
            return 1.0 / r
    return 0.0


def degrees(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.bincount(src, minlength=n) + np.bincount(dst, minlength=n)


def hubs(degree: np.ndarray, fraction: float = HUB_FRACTION) -> np.ndarray:
    """The ceil(fraction x n) most-linked nodes (ties: lower index first), most-linked first."""
    m = max(1, math.ceil(fraction * degree.shape[0]))
    return np.lexsort((np.arange(degree.shape[0]), -degree))[:m]


def without(ranked, drop: set) -> list:
    return [x for x in ranked if x not in drop]


@dataclass
class Query:
    memory: int
    text: str
    relevant: set            # the memory and its out-neighbours
    relevant_hubfree: set    # the same without hubs (may be empty)


def query_text(text: str, rng: np.random.Generator) -> str:
    """A random half of the text's words, in order (at least two)."""
    ws = re.findall(r"[A-Za-z0-9_]+", text)
    keep = rng.random(len(ws)) < 0.5
    if keep.sum() < 2:
        keep[:2] = True
    return " ".join(w for w, k in zip(ws, keep) if k)


def sample_queries(g, n: int, seed: int, hub_set: set, min_words: int = 4) -> list:
    """``n`` queries from memories with at least one association and ``min_words`` words,
    drawn without replacement by a seeded generator: the same on every machine."""
    order = np.argsort(g.src, kind="stable")
    starts = np.searchsorted(g.src[order], np.arange(len(g) + 1))
    eligible = [i for i in range(len(g)) if starts[i + 1] > starts[i]
                and len(re.findall(r"[A-Za-z0-9_]+", g.texts[i])) >= min_words]
    rng = np.random.default_rng(seed)
    picked = rng.permutation(np.array(eligible))[:n]
    out = []
    for i in sorted(int(x) for x in picked):
        rel = {i} | set(g.dst[order[starts[i]:starts[i + 1]]].tolist())
        out.append(Query(i, query_text(g.texts[i], rng), rel, rel - hub_set))
    return out


def score(ranked, q: Query, hub_set: set, hubfree: bool) -> tuple | None:
    """(recall@K, reciprocal rank) of one ranked list, or None if the task has no relevant memory."""
    if hubfree:
        if not q.relevant_hubfree:
            return None
        ranked, relevant = without(ranked, hub_set), q.relevant_hubfree
    else:
        relevant = q.relevant
    return recall_at_k(ranked, relevant), reciprocal_rank(ranked, relevant)
