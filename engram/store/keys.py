"""Idempotency keys, kept with the writes they guard (docs/durability/wal-format.md).

A caller that may retry a write (the daemon, for a client's ``Idempotency-Key``) gives
it a Key: a digest naming the key in its scope, and a digest of the request. The change's
log record carries the key (flag KEYED, a 40-byte block before the payload), so the key
is durable exactly when the change is, and replay registers it again. What a retry gets
back (ids, count, time, confidence) is read from the change itself. Snapshots carry the
live keys as an array, so they outlive the log segments a checkpoint lets go.

A space keeps at most MAX_KEYS keys, each for at most TTL_S seconds of wall clock
(an older or surplus key is forgotten: a retry with it is a new write).
"""
from __future__ import annotations

import collections
import struct
import time
from typing import NamedTuple

import numpy as np

from engram.errors import IdempotencyKeyError

MAX_KEYS = 10_000                        # ~470 bytes of memory each (measured)
TTL_S = 24 * 3600.0
BLOCK = struct.Struct("<16s16sq")          # key digest, request digest, wall clock ns: 40 bytes
ARRAY = "idempotency_keys"                 # the snapshot's array of a space's live keys
KEY_DTYPE = np.dtype([("key", "V16"), ("request", "V16"), ("at_ns", "<i8"), ("kind", "u1"), ("pad", "V7"),
                      ("first", "<i8"), ("count", "<i8"), ("created_ns", "<i8"), ("confidence", "<f4"),
                      ("pad2", "V4")])


class Key(NamedTuple):
    """An idempotency key: ``key`` names it (16 bytes), ``request`` is what it guards."""
    key: bytes
    request: bytes


class Result(NamedTuple):
    """What the guarded change did: its record type, first id (REMEMBER), how many it
    changed, when (REMEMBER's created_ns) and the first memory's confidence."""
    kind: int
    first: int = 0
    count: int = 0
    created_ns: int = 0
    confidence: float = 0.0


class KeyStore:
    """One space's live keys, oldest first. ``clock``: wall clock in ns (tests inject one)."""

    def __init__(self, max_keys: int = MAX_KEYS, ttl_s: float = TTL_S, clock=time.time_ns):
        self.max_keys, self.ttl_ns, self.clock = max_keys, int(ttl_s * 1e9), clock
        self._keys: collections.OrderedDict = collections.OrderedDict()   # key -> (request, at_ns, Result)

    def __len__(self) -> int:
        return len(self._keys)

    def prior(self, key: Key, kind: int) -> Result | None:
        """The result of the change ``key`` guarded, or None if it guards none (yet, or any
        more). IdempotencyKeyError if it guarded another request or kind of change."""
        self._expire()
        got = self._keys.get(key.key)
        if got is None:
            return None
        request, _, result = got
        if request != key.request or result.kind != kind:
            raise IdempotencyKeyError("this idempotency key was used for a different request; its first result "
                                      "stands and nothing was changed: use a new key for a new write")
        return result

    def block(self, key: Key) -> tuple:
        """(the log block for ``key``, its wall clock time)."""
        at = self.clock()
        return BLOCK.pack(key.key, key.request, at), at

    def put(self, key: bytes, request: bytes, at_ns: int, result: Result) -> None:
        self._keys[key] = (request, at_ns, result)
        self._keys.move_to_end(key)
        self._expire()

    def _expire(self) -> None:
        keys, old = self._keys, self.clock() - self.ttl_ns
        while keys and (len(keys) > self.max_keys or next(iter(keys.values()))[1] < old):
            keys.popitem(last=False)

    # ---- snapshots -----------------------------------------------------------------------
    def arrays(self) -> dict:
        self._expire()
        out = np.zeros(len(self._keys), KEY_DTYPE)
        for i, (k, (request, at, r)) in enumerate(self._keys.items()):
            out[i] = (k, request, at, r.kind, b"", r.first, r.count, r.created_ns, r.confidence, b"")
        return {ARRAY: out}

    def restore(self, arrs: dict) -> None:
        """Keys saved by arrays(); snapshots written before keys were durable have none."""
        a = arrs.get(ARRAY)
        if a is None or a.dtype != KEY_DTYPE:
            return
        for row in a.tolist():
            k, request, at, kind, _, first, count, created, conf, _ = row
            self._keys[bytes(k)] = (bytes(request), at, Result(kind, first, count, created, conf))
        self._expire()
