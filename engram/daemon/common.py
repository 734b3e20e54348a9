"""What every route module of the API shares: the Service (the engine, its thread pool,
its idempotency cache, which space a request names), JSON responses, and the mapping
from engram.errors to HTTP statuses and Engram's error codes."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import os
import time

import orjson
from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from engram import errors, validate
from engram.daemon import models as m
from engram.daemon.idempotency import Idempotency
from engram.daemon.pool import Pool

# engram.errors class -> (HTTP status, Engram code); the first base class listed wins
STATUS = [
    (errors.UnknownSpaceError, 404, "SPACE_NOT_FOUND"),
    (errors.UnknownIdError, 404, "MEMORY_NOT_FOUND"),
    (errors.IdempotencyKeyError, 422, "IDEMPOTENCY_KEY_REUSED"),
    (errors.InvalidInputError, 400, "INVALID_MEMORY_INPUT"),
    (errors.OverloadError, 429, "OVERLOADED"),
    (errors.StorageFullError, 507, "INSUFFICIENT_STORAGE"),
    (errors.DurabilityError, 503, "MEMORY_SYSTEM_ERROR"),
    (errors.ClosedError, 503, "SERVICE_UNAVAILABLE"),
    (errors.EngramError, 500, "MEMORY_SYSTEM_ERROR"),
]
#: a recall with at most this budget may run on the event loop when nothing else is in
#: flight (Service.read_bounded): the most the loop is held, give or take a hop
INLINE_BUDGET_MS = 20.0
ERRORS = {s: {"model": m.ErrorResponse} for s in (400, 401, 404, 413, 422, 429, 503)}


class OrjsonRequest(Request):
    """Request bodies parsed by orjson (a 384-float body: ~10 us instead of json's ~90)."""

    async def json(self):
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class Route(APIRoute):
    """The API's routes: FastAPI's, with OrjsonRequest."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def orjson_handler(request: Request):
            return await handler(OrjsonRequest(request.scope, request.receive))
        return orjson_handler


def header(scope, name: bytes) -> str | None:
    """The request's first ``name`` header (lower case), as Starlette's Headers.get gives it,
    straight from the ASGI scope: Headers decode every name on each lookup (~10 us here)."""
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def json_response(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status, headers,
                    media_type="application/json")


def error_response(status: int, code: str, message: str, kind: str, headers: dict | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message, "type": kind}}, status, headers)


def engram_error(e: errors.EngramError) -> Response:
    for cls, status, code in STATUS:
        if isinstance(e, cls):
            headers = {"Retry-After": f"{max(e.retry_after, 0.001):.3f}"} if isinstance(e, errors.OverloadError) \
                else {"Retry-After": "1"} if status == 503 else None
            return error_response(status, code, str(e), type(e).__name__, headers)
    raise AssertionError("EngramError is in the table")


def rfc3339(ns) -> str:
    return dt.datetime.fromtimestamp(int(ns) / 1e9, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def category(c: float) -> str:
    return "High" if c > 0.7 else "Medium" if c >= 0.4 else "Low"


class Service:
    """The engine behind the API, its thread pool and its idempotency cache."""

    def __init__(self, engine, threads: int = 8, read_threads: int | None = None):
        self.engine = engine
        self.threads = threads
        # Plain pools (anyio's to_thread costs ~0.1 ms more a call). Writes mostly wait
        # for an fsync, so they get more threads than cores; reads (recall, scans) are CPU
        # work, so they get about a thread a core: more would only queue for the cores and
        # run each recall on a thread gone cold.
        self.read_threads = read_threads or max(2, min(threads, os.cpu_count() or 2))
        self.pool = Pool(threads, "engram-http")
        self.reads = Pool(self.read_threads, "engram-http-read")
        self.inflight = 0
        self.inline = 0              # reads run on the event loop (read_bounded)
        self.idempotency = Idempotency()
        self.started = time.time()

    @contextlib.contextmanager
    def _in_flight(self):
        """Count an engine call in flight for its duration (read_bounded looks)."""
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    async def run(self, fn, *args, pool=None):
        """``fn(*args)`` in the write pool (or ``pool``), never on the event loop."""
        with self._in_flight():
            # the thread settles an asyncio future directly: run_in_executor's chain of a
            # concurrent Future copied into an asyncio one costs ~20 us more a call
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            (pool or self.pool).submit(loop, fut, fn, args)
            return await fut

    async def read(self, fn, *args):
        """``fn(*args)`` in the read pool: recall, spreading, scans, gets."""
        return await self.run(fn, *args, pool=self.reads)

    async def read_bounded(self, fn, *args, budget_ms: float | None):
        """A read whose time is bounded by ``budget_ms`` (None: unbounded): run on
        the event loop itself when no other engine call is in flight and the budget is at
        most INLINE_BUDGET_MS, else as ``read``. At low rates every request finds the pool
        asleep, and waking a pool thread and then the loop again cost more than the recall's
        own work (two wake-ups of an idle vCPU); a request that arrives meanwhile waits at
        most about the budget, as it would for a busy core. Under steady load most recalls
        run here too (the loop starts no other request while it runs one), so the daemon
        then serves recalls on one thread, as the GIL mostly made it do anyway."""
        if self.inflight or budget_ms is None or budget_ms > INLINE_BUDGET_MS:
            return await self.read(fn, *args)
        self.inline += 1
        with self._in_flight():
            return fn(*args)

    def close(self) -> None:
        self.reads.shutdown()
        self.pool.shutdown()

    def stats(self) -> dict:
        return {"threads": self.threads, "read_threads": self.read_threads, "inflight": self.inflight,
                "inline_reads": self.inline,
                "gc_frozen_objects": gc.get_freeze_count(),
                "idempotent_replays": self.idempotency.replayed, "uptime_s": time.time() - self.started}

    def space_name(self, request: Request, body_space: str | None = None) -> str:
        """X-Memory-Space (or its alias X-Memory-Space-Id), then ?space=, then the body's
        memory_space_id, then "default"."""
        a, b = header(request.scope, b"x-memory-space"), header(request.scope, b"x-memory-space-id")
        if a and b and a != b:
            raise errors.InvalidInputError(f"X-Memory-Space ({a!r}) and X-Memory-Space-Id ({b!r}) disagree")
        query = request.scope["query_string"]       # parsed only when there is one
        name = a or b or (query and request.query_params.get("space")) or body_space or "default"
        return validate.space_name(name)

    def readable(self, name: str):
        """An existing space (reads never create one): UnknownSpaceError -> 404."""
        if name not in self.engine.spaces:
            raise errors.UnknownSpaceError(f"no memory space {name!r}; the daemon has {list(self.engine.spaces)}")
        return self.engine.space(name)


