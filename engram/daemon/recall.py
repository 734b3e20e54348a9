"""The API's recall routes (recall with spreading, spreading from seeds, similarity search)
and its link routes."""
from __future__ import annotations

import json
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request

from engram import errors
from engram.daemon import models as m
from engram.daemon.common import ERRORS, Route, Service, category, json_response


def _items(ids, scores, activation, similarity, confidence, content, hops, threshold) -> list:
    """Engram's MemoryResult items, ranked, without those below ``threshold`` activation.
    Each column becomes Python values in one tolist(): indexing numpy field by field cost
    more than all the rest of the response."""
    sims = [None] * len(ids) if similarity is None else [None if x != x else x for x in similarity.tolist()]
    items = []
    for r, (i, score, act, sim, c, text, h) in enumerate(zip(ids.tolist(), scores.tolist(), activation.tolist(),
                                                                sims, confidence.tolist(), content, hops.tolist())):
        if threshold is not None and act < threshold:
            continue
        items.append({"id": i, "rank": r, "content": text, "confidence": {"value": c, "category": category(c)},
                      "score": score, "activation_level": act, "similarity_score": sim,
                      "retrieval_path": "similarity" if h == 0 else "spreading", "hops": h})
    return items


def recall_items(res, threshold) -> list:
    act = res.activation if res.activation is not None else res.scores
    return _items(res.ids, res.scores, act, res.similarity, res.confidence, res.content, res.hops, threshold)


def spread_items(mem, res, limit: int, threshold) -> list:
    """A spread's items: scored by activation; no similarity (no query)."""
    ids = res.ids[:limit]
    if not ids.shape[0]:
        return []
    got = mem.get(ids)                  # one read for confidence and content
    return _items(ids, res.activation, res.activation, None, got.confidence, got.content, res.hops, threshold)


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else 0.0


Literal_mode = Annotated[str, Query(pattern="^(similarity|spreading|hybrid)$")]


def _vector_param(text: str | None) -> list | None:
    """Engram's GET form: the embedding as a JSON array inside a query string (None: not given)."""
    if text is None:
        return None
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise errors.InvalidInputError(f"embedding must be a JSON array of numbers: {e}") from None
    if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                   for x in v):
        raise errors.InvalidInputError("embedding must be a non-empty JSON array of numbers")
    return v


def routes(service: Service) -> APIRouter:
    router = APIRouter(route_class=Route)

    # ---- recall ----------------------------------------------------------------------
    async def do_recall(request: Request, body: m.RecallRequest):
        name = service.space_name(request, body.memory_space_id)
        if sum(x is not None for x in (body.embedding, body.query, body.seeds)) != 1:
            raise errors.InvalidInputError("give one of embedding (a query vector), query (a question in words, for "
                                           "the daemon's embedder) or seeds (memory ids)")
        t0 = time.perf_counter()

        def work():
            mem = service.readable(name)
            if body.seeds is not None:
                res = mem.spread(body.seeds, max_depth=body.max_hops,
                                 decay=None if body.decay_rate is None else 1.0 - body.decay_rate,
                                 threshold=body.activation_threshold)
                return spread_items(mem, res, body.max_results, body.threshold), None, len(mem)
            res = mem.recall(body.embedding, k=body.max_results, spread=body.mode != "similarity",
                             budget_ms=body.budget_ms, text=body.query)
            return recall_items(res, body.threshold), res, len(mem)
        # bounded by its budget, unless it waits for the embedder (text) or spreads from seeds
        items, res, searched = await service.read_bounded(
            work, budget_ms=body.budget_ms if body.embedding is not None else None)
        vivid = [it for it in items if it["hops"] == 0]
        out = {"memories": {"vivid": vivid, "associated": [it for it in items if it["hops"] > 0],
                            "reconstructed": []},
               "recall_confidence": _mean([it["confidence"]["value"] for it in vivid])}
        if body.include_metadata:
            sp = res.spreading if res is not None else {}
            acts = [it["activation_level"] for it in items]
            out["metadata"] = {
                "total_memories_searched": searched, "activation_spread_hops": int(sp.get("hops", 0) or 0),
                "processing_time_ms": (time.perf_counter() - t0) * 1e3,
                "total_activated": int(sp.get("touched", 0) or 0),
                "avg_activation": _mean(acts),
                "budget_exhausted": bool(res is not None and (res.partial or res.fallback)),
                "partial": bool(res is not None and res.partial), "fallback": bool(res is not None and res.fallback),
                "timings": res.timings if res is not None else {}}
        return json_response(out)

    @router.post("/api/v1/memories/recall", response_model=m.RecallResponse, responses=ERRORS,
              summary="Recall: similarity seeds, then spreading along links inside budget_ms; or spread from seeds")
    async def recall_post(request: Request, body: m.RecallRequest):
        return await do_recall(request, body)

    @router.get("/api/v1/memories/recall", response_model=m.RecallResponse, responses=ERRORS,
             summary="Recall with Engram's query string (embedding as a JSON array in a string)")
    async def recall_get(request: Request, embedding: m.VectorParam = None, query: m.TextParam = None,
                         max_results: Annotated[int, Query(ge=1, le=1000)] = 10,
                         threshold: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
                         mode: Literal_mode = "hybrid", budget_ms: Annotated[float, Query(gt=0, le=60_000)] = 10.0,
                         include_metadata: bool = True, space: m.SpaceParam = None):
        return await do_recall(request, m.RecallRequest(embedding=_vector_param(embedding), query=query,
                                                        max_results=max_results,
                                                        threshold=threshold, mode=mode, budget_ms=budget_ms,
                                                        include_metadata=include_metadata))

    @router.get("/api/v1/memories/search", response_model=m.SearchResponse, responses=ERRORS,
             summary="Similarity search (no spreading): a flat list")
    async def search(request: Request, embedding: m.VectorParam = None, query: m.TextParam = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 10, space: m.SpaceParam = None):
        name = service.space_name(request)
        if (embedding is None) == (query is None):
            raise errors.InvalidInputError("give embedding (a JSON array) or query (words), one of them")
        q = _vector_param(embedding)
        res = await service.read(lambda: service.readable(name).recall(q, k=limit, spread=False, budget_ms=None,
                                                                       text=query))
        items = recall_items(res, None)
        return json_response({"memories": items, "total": len(items)})

    # ---- links -----------------------------------------------------------------------
    @router.post("/api/v1/patterns/associate", response_model=m.AssociateResponse, responses=ERRORS,
              summary="Link memories with a weight in (0, 1] (again: replaces the weight)")
    async def associate(request: Request, body: m.AssociateRequest):
        name = service.space_name(request, body.memory_space_id)

        s, d = np.atleast_1d(np.asarray(body.source_memory)), np.atleast_1d(np.asarray(body.target_memory))
        w = np.atleast_1d(np.asarray(body.strength, np.float64))
        n = max(s.shape[0], d.shape[0])
        for what, a in (("source_memory", s), ("target_memory", d), ("strength", w)):
            if a.shape[0] not in (1, n):
                raise errors.InvalidInputError(f"{what} has {a.shape[0]} items for {n} links: give one or {n}")
        s, d, w = (np.broadcast_to(a, n) for a in (s, d, w))
        if body.bidirectional:
            s, d, w = np.concatenate([s, d]), np.concatenate([d, s]), np.concatenate([w, w])

        key = service.idempotency.key(request, await request.body())

        def work():
            mem = service.readable(name)
            prior = mem.keyed(key, "link")
            return (prior.count, True) if prior is not None else (mem.link(s, d, w, key=key), False)

        async def produce():
            n, replayed = await service.run(work)
            return json_response({"created": n > 0, "links_created": n, "final_strength": float(np.min(w)),
                                  "affected_paths": []}, 200, service.idempotency.replay() if replayed else None)
        return await service.idempotency.once(key, produce)

    @router.get("/api/v1/memories/{memory_id:int}/links", response_model=m.LinksResponse, responses=ERRORS,
             summary="A memory's outgoing links")
    async def links(request: Request, memory_id: m.MemoryIdPath, space: m.SpaceParam = None):
        name = service.space_name(request)
        t, w = await service.read(lambda: service.readable(name).neighbors(memory_id))
        return json_response({"links": [{"source_memory": memory_id, "target_memory": int(a), "strength": float(b)}
                                        for a, b in zip(t, w)]})

    return router
