"""The API's memory routes: remember (one, or a batch as JSON or binary rows), list, get,
forget."""
from __future__ import annotations

import json
import struct
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request

from engram import errors, validate
from engram.daemon import models as m
from engram.daemon.common import ERRORS, Route, Service, category, json_response, rfc3339

BATCH_TYPE = "application/vnd.engram.batch"
HEADER_LEN = struct.Struct("<I")
MAX_BATCH_HEADER = 1 << 20

def memory_items(mem, ids: np.ndarray, embeddings: bool, links: bool) -> list:
    got = mem.get(ids)
    out = []
    for i in range(len(got)):
        item = {"id": int(got.ids[i]), "content": got.content[i], "confidence": float(got.confidence[i]),
                "timestamp": rfc3339(got.created_ns[i]), "last_access": rfc3339(got.last_access_ns[i]),
                "created_ns": int(got.created_ns[i]), "last_access_ns": int(got.last_access_ns[i]),
                "access_count": int(got.access_count[i]), "strength": float(got.strength[i]),
                "tier": got.tier[i], "memory_type": "episodic"}
        if embeddings:
            item["embedding"] = got.vectors[i]
        if links:
            t, w = mem.neighbors(int(got.ids[i]))
            item["links_out"] = [{"target_memory_id": int(a), "strength": float(b)} for a, b in zip(t, w)]
        out.append(item)
    return out


def relink(mem, memory_id: int, targets: list, strengths: list) -> None:
    """A keyed remember given again: its links that are missing are made (a crash can come
    between the memory's log record and its links'); a memory forgotten since stays so."""
    if not targets:
        return
    try:
        have = set(mem.neighbors(memory_id)[0].tolist())
    except errors.UnknownIdError:
        return
    missing = [(t, s) for t, s in zip(targets, strengths) if t not in have]
    if missing:
        mem.link(memory_id, [t for t, _ in missing], [s for _, s in missing])


def content_to_encode(content: str | None, where: str) -> str:
    """A memory given without an embedding: its content is what the daemon's embedder encodes."""
    if content is None:
        raise errors.InvalidInputError(f"{where} is missing: a memory without an embedding needs content for the "
                                       "daemon's embedder to encode")
    return content


def parse_batch(raw: bytes, dim: int):
    """The binary batch: u32 header length, a JSON header {count, dtype f32|f16, content?,
    confidence?, tier?, memory_space_id?}, then count x dim little-endian rows."""
    if len(raw) < HEADER_LEN.size:
        raise errors.InvalidInputError("a binary batch starts with a 4-byte header length")
    (hlen,) = HEADER_LEN.unpack_from(raw)
    if hlen > MAX_BATCH_HEADER or HEADER_LEN.size + hlen > len(raw):
        raise errors.InvalidInputError(f"the batch header claims {hlen} bytes; the body has {len(raw) - 4}")
    try:
        header = json.loads(raw[4:4 + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise errors.InvalidInputError(f"the batch header is not JSON: {e}") from None
    if not isinstance(header, dict) or set(header) - {"count", "dtype", "content", "confidence", "tier",
                                                      "memory_space_id"}:
        raise errors.InvalidInputError("the batch header is a JSON object with count, dtype and optionally "
                                       "content, confidence, tier, memory_space_id")
    count = validate.positive_int(header.get("count"), "count", 1)
    if count > m.MAX_BATCH:
        raise errors.InvalidInputError(f"a batch holds at most {m.MAX_BATCH} rows, got {count}")
    dtype = {"f32": "<f4", "f16": "<f2"}.get(header.get("dtype", "f32"))
    if dtype is None:
        raise errors.InvalidInputError(f"dtype must be f32 or f16, got {header.get('dtype')!r}")
    rows = raw[4 + hlen:]
    need = count * dim * np.dtype(dtype).itemsize
    if len(rows) != need:
        raise errors.DimensionError(f"{count} rows of dim {dim} as {header.get('dtype', 'f32')} are {need} bytes; "
                                    f"the body has {len(rows)} after the header")
    vectors = np.frombuffer(rows, dtype).reshape(count, dim)
    return vectors, header


def routes(service: Service) -> APIRouter:
    router = APIRouter(route_class=Route)
    eng = service.engine

    # ---- memories --------------------------------------------------------------------
    async def remember(request: Request, body: m.RememberRequest):
        name = service.space_name(request, body.memory_space_id)
        key = service.idempotency.key(request, await request.body())
        targets, strengths = [lk.target_memory_id for lk in body.links], [lk.strength for lk in body.links]

        def work():
            mem = eng.space(name)
            prior = mem.keyed(key, "remember")
            if prior is not None:
                relink(mem, prior.first, targets, strengths)
                return prior.first, prior.confidence, prior.created_ns, len(targets), True
            if targets:             # checked before anything is stored: all or nothing
                mem.get(targets)
            conf = None if body.confidence is None else [body.confidence]
            if body.embedding is None:
                ids = mem.remember(texts=[content_to_encode(body.content, "content")], confidence=conf,
                                   tier=body.tier, key=key)
            else:
                ids = mem.remember(np.asarray(body.embedding, np.float64)[None], [body.content], conf, body.tier,
                                   key=key)
            n = mem.link(int(ids[0]), targets, strengths) if targets else 0
            got = mem.get(ids)
            return int(ids[0]), float(got.confidence[0]), int(got.created_ns[0]), n, False

        async def produce():
            mid, conf, created, n, replayed = await service.run(work)
            return json_response({
                "memory_id": mid, "observed_at": rfc3339(created), "stored_at": rfc3339(created),
                "storage_confidence": {"value": conf, "category": category(conf),
                                       "reasoning": f"stored durably ({eng.durability or 'in memory only'})"},
                "links_created": n, "auto_links": []}, 201, service.idempotency.replay() if replayed else None)
        return await service.idempotency.once(key, produce)

    router.post("/api/v1/memories/remember", status_code=201, response_model=m.RememberResponse, responses=ERRORS,
             summary="Remember one memory (durable when the call returns)")(remember)
    router.post("/api/v1/memories", status_code=201, response_model=m.RememberResponse, responses=ERRORS,
             summary="Remember one memory (the same as /memories/remember)")(remember)

    @router.post("/api/v1/memories/batch", status_code=201, response_model=m.BatchResponse, responses=ERRORS,
              summary="Remember many: JSON, or the binary form (Content-Type: application/vnd.engram.batch)",
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}},
                  BATCH_TYPE: {"schema": {"type": "string", "format": "binary"}}}, "required": True}})
    async def batch(request: Request):
        raw = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype == BATCH_TYPE:
            vectors, header = parse_batch(raw, eng.dim)
            content, confidence, tier = header.get("content"), header.get("confidence"), header.get("tier", "hot")
            head_space = header.get("memory_space_id")
        elif ctype in ("application/json", ""):
            try:
                body = m.BatchRequest.model_validate_json(raw)
            except ValueError as e:
                where = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()[:5]) \
                    if hasattr(e, "errors") else str(e)
                raise errors.InvalidInputError(f"invalid batch: {where}") from None
            vectors = [it.embedding for it in body.memories]
            content = [it.content for it in body.memories]
            given = sum(v is not None for v in vectors)
            if given not in (0, len(vectors)):
                raise errors.InvalidInputError(f"{given} of {len(vectors)} memories have an embedding: give every "
                                               "one an embedding, or none (the daemon's embedder encodes content)")
            if not given:
                vectors = None
                content = [content_to_encode(c, f"memories[{i}].content") for i, c in enumerate(content)]
            confidence = [1.0 if it.confidence is None else it.confidence for it in body.memories]
            tier, head_space = body.tier, body.memory_space_id
        else:
            raise errors.InvalidInputError(f"Content-Type must be application/json or {BATCH_TYPE}, got {ctype!r}")
        if tier not in ("hot", "warm"):
            raise errors.InvalidInputError(f"tier must be hot or warm, got {tier!r}")
        name = service.space_name(request, head_space)
        key = service.idempotency.key(request, raw)

        def work():
            mem = eng.space(name)
            prior = mem.keyed(key, "remember")
            if prior is not None:
                return np.arange(prior.first, prior.first + prior.count), True
            if vectors is None:
                return mem.remember(texts=content, confidence=confidence, tier=tier, key=key), False
            return mem.remember(vectors, content, confidence, tier, key=key), False

        async def produce():
            ids, replayed = await service.run(work)
            return json_response({"memory_ids": ids, "count": int(ids.shape[0])}, 201,
                                 service.idempotency.replay() if replayed else None)
        return await service.idempotency.once(key, produce)

    @router.get("/api/v1/memories", response_model=m.MemoryList, responses=ERRORS, summary="List memories by id")
    async def list_memories(request: Request, offset: Annotated[int, Query(ge=0, le=m.MAX_ID)] = 0,
                            limit: Annotated[int, Query(ge=1, le=1000)] = 100, include_embeddings: bool = False,
                            space: m.SpaceParam = None):
        name = service.space_name(request)

        def work():
            mem = service.readable(name)
            ids = mem.live_ids(offset, limit)
            return memory_items(mem, ids, include_embeddings, False) if ids.shape[0] else []
        items = await service.read(work)
        return json_response({"memories": items, "count": len(items),
                              "pagination": {"offset": offset, "limit": limit, "returned": len(items)}})

    @router.get("/api/v1/memories/{memory_id:int}", response_model=m.MemoryItem, responses=ERRORS,
             summary="One memory, with its outgoing links")
    async def get_memory(request: Request, memory_id: m.MemoryIdPath, include_embeddings: bool = False,
                         space: m.SpaceParam = None):
        name = service.space_name(request)
        items = await service.read(lambda: memory_items(service.readable(name), np.array([memory_id]),
                                                       include_embeddings, True))
        return json_response(items[0])

    @router.post("/api/v1/memories/get", response_model=m.MemoryList, responses=ERRORS,
              summary="Several memories by id, in the order asked")
    async def get_many(request: Request, body: m.GetRequest):
        name = service.space_name(request, body.memory_space_id)
        items = await service.read(lambda: memory_items(service.readable(name), np.array(body.memory_ids),
                                                       body.include_embeddings, False))
        return json_response({"memories": items, "count": len(items),
                              "pagination": {"offset": 0, "limit": len(items), "returned": len(items)}})

    @router.delete("/api/v1/memories/{memory_id:int}", response_model=m.DeleteResponse, responses=ERRORS,
                summary="Forget one memory (it really goes)")
    async def delete_memory(request: Request, memory_id: m.MemoryIdPath, space: m.SpaceParam = None):
        name = service.space_name(request)
        await service.run(lambda: service.readable(name).forget(memory_id))
        return json_response({"memory_id": memory_id, "deleted": True})

    @router.post("/api/v1/memories/forget", response_model=m.ForgetResponse, responses=ERRORS,
              summary="Forget memories, all or none")
    async def forget(request: Request, body: m.ForgetRequest):
        if (body.memory_id is None) == (body.memory_ids is None):
            raise errors.InvalidInputError("give memory_id or memory_ids (one of them)")
        ids = [body.memory_id] if body.memory_id is not None else body.memory_ids
        name = service.space_name(request, body.memory_space_id)
        key = service.idempotency.key(request, await request.body())

        def work():
            mem = service.readable(name)
            prior = mem.keyed(key, "forget")
            return (prior.count, True) if prior is not None else (mem.forget(ids, key=key), False)

        async def produce():
            n, replayed = await service.run(work)
            return json_response({"memories_affected": n, "forget_confidence": 1.0, "reversible": False}, 200,
                                 service.idempotency.replay() if replayed else None)
        return await service.idempotency.once(key, produce)

    return router
