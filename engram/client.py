"""A client of the engram daemon's HTTP API with the Space methods and result types.

    client = engram.Client("http://127.0.0.1:7432", api_key=None)
    mem = client.space("default")
    ids = mem.remember(vectors, content=texts)      # durable in the daemon when it returns
    mem.link(ids[0], ids[1], 0.8)
    res = mem.recall(query, k=10)                   # an engram.RecallResult
    mem.forget(ids[2])

Errors are the daemon's engram.errors classes. Connections are pooled (httpx);
reads are retried after a connection error or a 503; writes carry an
Idempotency-Key, so they are retried too, and a retried write is applied once.
Remember sends the binary batch form (f32 rows), not JSON.
"""
from __future__ import annotations

import json
import struct
import time
import uuid

import httpx
import numpy as np

from engram import errors
from engram.results import Memories, RecallResult, SpreadResult

BATCH_TYPE = "application/vnd.engram.batch"
RETRIES = 3
BACKOFF_S = 0.05


def _error(resp: httpx.Response) -> errors.EngramError:
    try:
        body = resp.json()["error"]
        cls = getattr(errors, str(body.get("type")), None)
        message = body.get("message", "")
    except (ValueError, KeyError, TypeError):
        cls, message = None, resp.text[:500]
    if not (isinstance(cls, type) and issubclass(cls, errors.EngramError)):
        cls = errors.EngramError
    if issubclass(cls, errors.OverloadError) or resp.status_code == 429:
        return errors.OverloadError(message, retry_after=float(resp.headers.get("retry-after", "0.05")))
    try:
        return cls(message)
    except TypeError:
        return errors.EngramError(message)


class Client:
    """The daemon at ``url``; ``api_key`` is sent as a Bearer token."""

    def __init__(self, url: str = "http://127.0.0.1:7432", api_key: str | None = None, timeout: float = 30.0,
                 retries: int = RETRIES):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                  limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))

    def request(self, method: str, path: str, *, write: bool = False, space: str | None = None, **kw):
        """The decoded JSON of a call, retried where that is safe (see the module doc)."""
        headers = dict(kw.pop("headers", {}))
        if space is not None:
            headers["X-Memory-Space"] = space
        if write:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        for attempt in range(self.retries + 1):
            try:
                resp = self._http.request(method, path, headers=headers, **kw)
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as e:
                if attempt == self.retries:
                    raise errors.ClosedError(f"the engram daemon at {self.url} cannot be reached: {e}") from None
                time.sleep(BACKOFF_S * 2 ** attempt)
                continue
            if resp.status_code in (429, 503) and attempt < self.retries:
                time.sleep(min(float(resp.headers.get("retry-after", BACKOFF_S)), 5.0))
                continue
            if resp.status_code >= 400:
                raise _error(resp)
            return resp.json() if resp.content else None
        raise AssertionError("unreachable")

    @property
    def spaces(self) -> list:
        return sorted(s["id"] for s in self.request("GET", "/api/v1/spaces")["spaces"])

    def space(self, name: str = "default") -> "RemoteSpace":
        return RemoteSpace(self, name)

    def health(self) -> dict:
        return self.request("GET", "/health")

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RemoteSpace:
    """A memory space of the daemon, with Space's methods."""

    def __init__(self, client: Client, name: str):
        self.client, self.name = client, name

    def _call(self, method: str, path: str, **kw):
        return self.client.request(method, path, space=self.name, **kw)

    def remember(self, vectors=None, content=None, confidence=None, tier: str = "hot", texts=None) -> np.ndarray:
        """As Space.remember; ``texts`` are encoded by the daemon's embedder (and kept as content)."""
        if texts is not None:
            return self._remember_texts(vectors, texts, content, confidence, tier)
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2:
            raise errors.InvalidInputError(f"vectors must be one vector or a 2-D batch, got shape {v.shape}")
        n = v.shape[0]
        header = {"count": n, "dtype": "f32", "tier": tier}
        if content is not None:
            header["content"] = [content] if isinstance(content, str) else list(content)
        if confidence is not None:
            header["confidence"] = np.broadcast_to(np.asarray(confidence, np.float64), n).tolist()
        raw = json.dumps(header).encode()
        body = struct.pack("<I", len(raw)) + raw + np.ascontiguousarray(v, "<f4").tobytes()
        out = self._call("POST", "/api/v1/memories/batch", write=True, content=body,
                         headers={"Content-Type": BATCH_TYPE})
        return np.asarray(out["memory_ids"], np.int64)

    def _remember_texts(self, vectors, texts, content, confidence, tier: str) -> np.ndarray:
        if vectors is not None or content is not None:
            raise errors.InvalidInputError("give texts alone (the daemon keeps each text as its content), or vectors "
                                           "with content")
        texts = [texts] if isinstance(texts, str) else list(texts)
        conf = [None] * len(texts) if confidence is None else \
            np.broadcast_to(np.asarray(confidence, np.float64), len(texts)).tolist()
        out = self._call("POST", "/api/v1/memories/batch", write=True, json={
            "memories": [{"content": t, "confidence": c} for t, c in zip(texts, conf)], "tier": tier})
        return np.asarray(out["memory_ids"], np.int64)

    def link(self, src, dst, weights=1.0) -> int:
        s, d = np.atleast_1d(np.asarray(src)).tolist(), np.atleast_1d(np.asarray(dst)).tolist()
        w = np.asarray(weights, np.float64)
        out = self._call("POST", "/api/v1/patterns/associate", write=True,
                         json={"source_memory": s, "target_memory": d, "strength": w.tolist()})
        return int(out["links_created"])

    def forget(self, ids) -> int:
        out = self._call("POST", "/api/v1/memories/forget", write=True,
                         json={"memory_ids": np.atleast_1d(np.asarray(ids)).tolist()})
        return int(out["memories_affected"])

    def recall(self, query=None, k: int = 10, spread: bool = True, budget_ms: float | None = 10.0,
               text: str | None = None) -> RecallResult:
        """As Space.recall; ``text`` is encoded by the daemon's embedder."""
        asked = {"query": text} if text is not None and query is None else \
            {"embedding": np.asarray(query, np.float64).ravel().tolist(), **({"query": text} if text else {})}
        out = self._call("POST", "/api/v1/memories/recall",
                         json={**asked, "max_results": k, "mode": "hybrid" if spread else "similarity",
                               "budget_ms": budget_ms})
        items = sorted(out["memories"]["vivid"] + out["memories"]["associated"], key=lambda it: it["rank"])
        meta = out.get("metadata") or {}
        nan = float("nan")
        return RecallResult(
            ids=np.array([it["id"] for it in items], np.int64),
            scores=np.array([it["score"] for it in items], np.float32),
            confidence=np.array([it["confidence"]["value"] for it in items], np.float32),
            origin=np.array(["seed" if it["hops"] == 0 else "spread" for it in items]),
            hops=np.array([it["hops"] for it in items], np.int8),
            content=[it["content"] for it in items],
            partial=bool(meta.get("partial", False)), fallback=bool(meta.get("fallback", False)),
            activation=np.array([it["activation_level"] for it in items], np.float32),
            similarity=np.array([nan if it["similarity_score"] is None else it["similarity_score"] for it in items],
                                np.float32),
            timings=meta.get("timings", {}),
            spreading={"hops": meta.get("activation_spread_hops", 0), "touched": meta.get("total_activated", 0)})

    def spread(self, seeds, max_depth: int | None = None, decay: float | None = None,
               threshold: float | None = None, k: int = 1000) -> SpreadResult:
        body = {"seeds": np.atleast_1d(np.asarray(list(seeds) if isinstance(seeds, dict) else seeds)).tolist(),
                "max_results": k, "max_hops": max_depth, "activation_threshold": threshold,
                "decay_rate": None if decay is None else 1.0 - decay}
        out = self._call("POST", "/api/v1/memories/recall", json={k2: v for k2, v in body.items() if v is not None})
        items = sorted(out["memories"]["vivid"] + out["memories"]["associated"], key=lambda it: it["rank"])
        return SpreadResult(np.array([it["id"] for it in items], np.int64),
                            np.array([it["activation_level"] for it in items], np.float32),
                            np.array([it["hops"] for it in items], np.uint8))

    def get(self, ids) -> Memories:
        out = self._call("POST", "/api/v1/memories/get",
                         json={"memory_ids": np.atleast_1d(np.asarray(ids)).tolist(), "include_embeddings": True})
        ms = out["memories"]
        return Memories(ids=np.array([x["id"] for x in ms], np.int64),
                        vectors=np.array([x["embedding"] for x in ms], np.float32).reshape(len(ms), -1),
                        content=[x["content"] for x in ms], confidence=np.array([x["confidence"] for x in ms],
                                                                                 np.float32),
                        strength=np.array([x["strength"] for x in ms], np.float32), tier=[x["tier"] for x in ms],
                        created_ns=np.array([x["created_ns"] for x in ms], np.int64),
                        last_access_ns=np.array([x["last_access_ns"] for x in ms], np.int64),
                        access_count=np.array([x["access_count"] for x in ms], np.uint32))

    def neighbors(self, memory_id: int):
        out = self._call("GET", f"/api/v1/memories/{int(memory_id)}/links")
        return (np.array([x["target_memory"] for x in out["links"]], np.int64),
                np.array([x["strength"] for x in out["links"]], np.float32))

    def stats(self) -> dict:
        return self._call("GET", f"/api/v1/spaces/{self.name}")

    def __len__(self) -> int:
        return int(self.stats()["memories"])

    def __repr__(self):
        return f"<engram remote space {self.name!r} at {self.client.url}>"
