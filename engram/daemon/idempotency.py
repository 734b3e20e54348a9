"""Idempotency keys for the API's writes: a client that retries a write after a lost
answer sends the same ``Idempotency-Key`` and gets the first answer again instead of
a second write. Kept in memory (the newest 10,000 keys, each for 10 minutes): a
daemon restart forgets them, which docs/operations/http.md states."""
from __future__ import annotations

import asyncio
import collections
import time

from starlette.responses import Response

from engram.errors import InvalidInputError

MAX_KEYS = 10_000
TTL_S = 600.0


class IdempotencyCache:
    def __init__(self, max_keys: int = MAX_KEYS, ttl_s: float = TTL_S):
        self.max_keys, self.ttl_s = max_keys, ttl_s
        self._done: collections.OrderedDict = collections.OrderedDict()   # key -> (time, status, body, type)
        self._running: dict = {}                                           # key -> asyncio.Future
        self.replayed = 0

    async def once(self, request, produce) -> Response:
        """``produce()``'s response, or the stored response of an earlier request with the
        same key (a request running with that key is waited for)."""
        key = request.headers.get("idempotency-key")
        if key is None:
            return await produce()
        if not 1 <= len(key) <= 200:
            raise InvalidInputError("Idempotency-Key must be 1 to 200 characters")
        key = (request.headers.get("authorization", ""), request.url.path, key)
        now = time.monotonic()
        while self._done and next(iter(self._done.values()))[0] < now - self.ttl_s:
            self._done.popitem(last=False)
        if key in self._done:
            self.replayed += 1
            _, status, body, media = self._done[key]
            return Response(body, status, {"Idempotent-Replayed": "true"}, media_type=media)
        if key in self._running:
            await asyncio.shield(self._running[key])
            return await self.once(request, produce)
        fut = self._running[key] = asyncio.get_running_loop().create_future()
        try:
            resp = await produce()
            if resp.status_code < 500 and resp.status_code != 429:   # a refusal may be retried for real
                self._done[key] = (now, resp.status_code, resp.body, resp.media_type)
                if len(self._done) > self.max_keys:
                    self._done.popitem(last=False)
            return resp
        finally:
            del self._running[key]
            fut.set_result(None)
