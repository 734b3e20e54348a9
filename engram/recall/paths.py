"""The strongest fewest-hop chain of associations from seeds to a memory (Space.path)."""
from __future__ import annotations

import numpy as np


def strongest_path(graph, sources: np.ndarray, target: int, max_hops: int) -> list:
    """Breadth-first over the CSR, level by level; each newly reached node keeps the
    parent that reaches it with the largest weight product."""
    n = graph.n_nodes
    if target in set(sources.tolist()):
        return [target]
    off, tg, w = graph.offsets.astype(np.int64), graph.targets, graph.weights
    parent = {}
    frontier = np.unique(sources[sources < n])
    score = np.ones(frontier.shape[0])
    seen = np.zeros(n, bool)
    seen[frontier] = True
    for _ in range(max_hops):
        if frontier.size == 0:
            break
        deg = off[frontier + 1] - off[frontier]
        owner = np.repeat(np.arange(frontier.shape[0]), deg)
        edge = np.repeat(off[frontier] - np.cumsum(deg) + deg, deg) + np.arange(int(deg.sum()))
        v = tg[edge].astype(np.int64)
        sc = score[owner] * w[edge]
        fresh = ~seen[v]
        v, sc, owner = v[fresh], sc[fresh], owner[fresh]
        best = np.lexsort((-sc, v))                         # by node, strongest first
        keep = best[np.r_[True, v[best][1:] != v[best][:-1]]] if best.size else best
        for node, u in zip(v[keep].tolist(), frontier[owner[keep]].tolist()):
            parent[node] = u
        frontier, score = v[keep], sc[keep]
        seen[frontier] = True
        if target in parent:
            out = [target]
            while out[-1] in parent:
                out.append(parent[out[-1]])
            return out[::-1]
    return []

