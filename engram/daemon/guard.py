"""What stands in front of the API: API keys, the body size limit and response headers
(a pure ASGI middleware, so a refused request costs no routing and no parsing).

Keys are kept only as SHA-256 digests and compared in constant time. A key file holds
one key per line, either the key itself (hashed as it is read) or ``sha256:<hex>``
(what ``engram daemon keygen`` prints for storing); ``#`` starts a comment.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import orjson

from engram.errors import InvalidInputError

OPEN_PATHS = ("/health", "/metrics", "/docs", "/api-docs")
DEFAULT_MAX_BODY = 64 << 20


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def load_keys(key_file=None, env: str | None = None) -> list:
    """SHA-256 digests of the keys in ``key_file`` and in ENGRAM_API_KEY (``env``)."""
    out = []
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text()
        except OSError as e:
            raise InvalidInputError(f"cannot read the API key file {path}: {e.strerror or e}") from None
        if path.stat().st_mode & 0o077:
            raise InvalidInputError(f"the API key file {path} is readable by others (mode "
                                    f"{path.stat().st_mode & 0o777:o}): chmod 600 it")
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("sha256:"):
                try:
                    d = bytes.fromhex(line[7:])
                except ValueError:
                    d = b""
                if len(d) != 32:
                    raise InvalidInputError(f"{path}:{n}: sha256: must be followed by 64 hex digits")
                out.append(d)
            elif len(line) < 16:
                raise InvalidInputError(f"{path}:{n}: an API key must be at least 16 characters")
            else:
                out.append(digest(line))
    if env:
        if len(env) < 16:
            raise InvalidInputError("ENGRAM_API_KEY must be at least 16 characters")
        out.append(digest(env))
    return out


def new_key() -> tuple:
    """(a new key, the line that stores it hashed)."""
    key = "engram_key_" + os.urandom(24).hex()
    return key, "sha256:" + digest(key).hex()


class Guard:
    """ASGI middleware: API keys (unless the path is open), body size, security headers."""

    def __init__(self, app, keys: list, max_body: int = DEFAULT_MAX_BODY, open_paths=OPEN_PATHS):
        self.app, self.keys, self.max_body, self.open_paths = app, list(keys), max_body, tuple(open_paths)
        self.refused = {"auth": 0, "size": 0}

    def _authorized(self, scope) -> bool:
        if not self.keys or scope["path"].startswith(self.open_paths):
            return True
        given = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                given = v
        if not given.lower().startswith(b"bearer "):
            return False
        d = hashlib.sha256(given[7:].strip()).digest()
        ok = False
        for k in self.keys:                  # every key compared: the time says nothing about which
            ok |= hmac.compare_digest(d, k)
        return ok

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if not self._authorized(scope):
            self.refused["auth"] += 1
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _error(send, 401, "UNAUTHORIZED", "a valid API key is needed: Authorization: Bearer <key>",
                                [(b"www-authenticate", b"Bearer")])
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        for k, v in scope["headers"]:
            if k == b"content-length" and (not v.isdigit() or int(v) > self.max_body):
                self.refused["size"] += 1
                return await _error(send, 413, "PAYLOAD_TOO_LARGE",
                                    f"the body is over the limit of {self.max_body} bytes")
        seen, started = 0, False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    self.refused["size"] += 1
                    raise BodyTooLarge(f"the body is over the limit of {self.max_body} bytes")
            return msg

        async def headed_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                msg = {**msg, "headers": [*msg.get("headers", []), (b"x-content-type-options", b"nosniff"),
                                          (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store")]}
            await send(msg)

        try:
            await self.app(scope, limited_receive, headed_send)
        except BodyTooLarge:        # the app's handler answers 413; this catches what gets past it
            if not started:
                await _error(send, 413, "PAYLOAD_TOO_LARGE", f"the body is over the limit of {self.max_body} bytes")


class BodyTooLarge(Exception):
    """Raised while a body is read past the limit (the app answers 413)."""


async def _error(send, status: int, code: str, message: str, headers=()) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message, "type": "EngramError"}})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
