"""Idempotency keys for the API's writes: a client that retries a write after a lost
answer sends the same ``Idempotency-Key`` and gets the first answer again instead of a
second write, also after the daemon crashed and restarted.

The engine keeps the keys, durable with the change each guards (engram/store/keys.py):
here the header is checked, the key is named in its scope (the API key, the path, the
key; kept only as a digest) and the request's body digested, so that the same key with
another body is refused (422). Requests with the key of one still running wait for it.
"""
from __future__ import annotations

import asyncio
import hashlib
import re

from engram.errors import InvalidInputError
from engram.store.keys import Key

KEY_CHARS = re.compile(r"[\x21-\x7e]{1,200}")      # visible ASCII: no spaces, controls or other scripts


def _digest(*parts: bytes) -> bytes:
    return hashlib.sha256(b"\0".join(hashlib.sha256(p).digest() for p in parts)).digest()[:16]


class Idempotency:
    def __init__(self):
        self._running: dict = {}             # key digest -> asyncio.Future, done when it finishes
        self.replayed = 0

    def key(self, request, body: bytes) -> Key | None:
        """The request's Key, or None if it has no Idempotency-Key (InvalidInputError if the
        header is not 1 to 200 visible ASCII characters)."""
        raw = request.headers.get("idempotency-key")
        if raw is None:
            return None
        if not KEY_CHARS.fullmatch(raw):
            raise InvalidInputError("Idempotency-Key must be 1 to 200 visible ASCII characters (letters, digits, "
                                    "punctuation; no spaces)")
        auth = request.headers.get("authorization", "").encode()
        return Key(_digest(auth, request.url.path.encode(), raw.encode()), _digest(body))

    async def once(self, key: Key | None, produce):
        """``await produce()``, after any running request with the same key has finished."""
        if key is None:
            return await produce()
        while key.key in self._running:
            await asyncio.shield(self._running[key.key])
        done = self._running[key.key] = asyncio.get_running_loop().create_future()
        try:
            return await produce()
        finally:
            del self._running[key.key]
            done.set_result(None)

    def replay(self) -> dict:
        """The header of an answer given again."""
        self.replayed += 1
        return {"Idempotent-Replayed": "true"}
