"""Delivering encoded batches to one HTTP endpoint, for every network exporter (OTLP and
Loki alike): a bounded queue, a sender thread, retries with backoff, and counts.

    d = Delivery("loki", url, "application/json", policy, on_drop=counter.inc)
    d.submit(body, events)      # never blocks the collector
    d.close()                   # sends what is queued (until policy.close_timeout_s)

- A batch is retried on 429, on 5xx and on connection errors, waiting
  ``backoff_s`` x 2^try (with jitter, at most ``max_backoff_s``) or the receiver's
  Retry-After, up to ``attempts`` tries. Any other answer is final.
- The queue holds at most ``queue_bytes`` of bodies (plus the one in flight); a
  batch that does not fit pushes the oldest out (one larger than the whole queue
  is dropped). A slow or dead receiver thus costs bounded memory and
  never slows the drain of the rings (nor recall, which only writes rings).
- Every event is either delivered or dropped, and each drop is counted
  (``dropped``, and ``on_drop`` for the engine's metric) with a line on stderr.
"""
from __future__ import annotations

import collections
import gzip
import random
import sys
import threading
import time

import httpx

from engram.observe.tracing.config import ExportPolicy
from engram.threads import named_thread

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class Delivery:
    def __init__(self, sink: str, url: str, content_type: str, policy: ExportPolicy, on_drop=None,
                 compress: bool = True):
        self.sink, self.url, self.policy = sink, url, policy
        self._headers = {"Content-Type": content_type, **({"Content-Encoding": "gzip"} if compress else {})}
        self._compress = compress
        self._on_drop = on_drop or (lambda n: None)
        self._queue: collections.deque = collections.deque()    # (body, events)
        self._queued_bytes = 0
        self._cv = threading.Condition(threading.RLock())
        self._closing = False
        self._deadline = None               # monotonic time past which nothing more is tried
        self.delivered = self.dropped = self.retries = self.requests = self.largest = self.peak_queued = 0
        self.last_error = self._said = ""
        self._client = httpx.Client(timeout=policy.timeout_s)
        self._thread = named_thread(self._run, f"engram-{sink}-delivery")
        self._thread.start()

    # ---- the collector's side ---------------------------------------------------------
    def submit(self, body: bytes, events: int) -> None:
        """Queue one batch (``events`` events encoded in ``body``), dropping the oldest
        queued batches if it would not fit."""
        self.largest = max(self.largest, len(body))
        if len(body) > self.policy.queue_bytes:
            self.drop(events, f"a batch of {len(body):,} bytes, larger than the whole queue")
            return
        with self._cv:
            while self._queue and self._queued_bytes + len(body) > self.policy.queue_bytes:
                old, n = self._queue.popleft()
                self._queued_bytes -= len(old)
                self.drop(n, "the queue was full (the receiver is slower than the engine)")
            self._queue.append((body, events))
            self._queued_bytes += len(body)
            self.peak_queued = max(self.peak_queued, self._queued_bytes)
            self._cv.notify()

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def close(self) -> None:
        """Send what is queued, trying until ``close_timeout_s`` from now; then drop the rest."""
        self.closing()
        self._thread.join()
        self._client.close()

    def closing(self) -> None:
        """Start closing without waiting (the collector starts every sink's at once, so two
        slow receivers take one close_timeout_s, not two)."""
        with self._cv:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + self.policy.close_timeout_s
            self._cv.notify()

    def stats(self) -> dict:
        return {"delivered": self.delivered, "dropped": self.dropped, "retries": self.retries,
                "requests": self.requests, "largest_request_bytes": self.largest,
                "peak_queued_bytes": self.peak_queued, "last_error": self.last_error}

    def drop(self, events: int, why: str) -> None:
        """Count ``events`` as dropped (the sink's own refusals too), and say why once."""
        with self._cv:
            self.dropped += events
            self._on_drop(events)
            said, self._said = self._said, why.split(":")[0]
        if said != self._said:              # a line per cause, not per batch
            print(f"engram collector: {self.sink}: dropped {events} events (more may follow): {why}",
                  file=sys.stderr, flush=True)

    # ---- the sender thread ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    self._cv.wait()
                if not self._queue:
                    return
                body, events = self._queue.popleft()     # in flight: the queue's bound no longer covers it
                self._queued_bytes -= len(body)
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    # a receiver that takes every batch, slowly, must not hold shutdown past the deadline
                    self.drop(events, "the receiver had not taken the queue by the close deadline")
                    continue
            ok, why = self._send(body)
            with self._cv:                  # submit() drops under the same lock: no count is lost
                if ok:
                    self.delivered += events
                else:
                    self.drop(events, why)

    def _send(self, body: bytes):
        """(True, "") once the receiver took ``body``; (False, why) when it never will."""
        data = gzip.compress(body, 6) if self._compress else body
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            wait = None
            try:
                r = self._client.post(self.url, content=data, headers=self._headers)
                if r.status_code < 300:
                    return True, ""
                why = f"HTTP {r.status_code} from {self.url}: {r.text[:200]}"
                if r.status_code not in RETRY_STATUS:
                    self.last_error = why
                    return False, why
                wait = _retry_after(r.headers.get("Retry-After"))
            except httpx.HTTPError as e:
                why = f"{type(e).__name__} posting to {self.url}: {e}"
            self.last_error = why
            if attempt >= self.policy.attempts:
                return False, f"{why} (after {attempt} tries)"
            if wait is None:
                wait = min(self.policy.max_backoff_s, self.policy.backoff_s * 2 ** (attempt - 1))
                wait *= 0.5 + random.random() / 2
            if not self._pause(wait):
                return False, f"{why} (shutting down: gave up after {attempt} tries)"
            self.retries += 1

    def _pause(self, seconds: float) -> bool:
        """Wait before a retry; False if the close deadline comes first."""
        end = time.monotonic() + seconds
        with self._cv:
            while True:
                now = time.monotonic()
                if self._deadline is not None and now + max(end - now, 0) > self._deadline:
                    return False
                if now >= end:
                    return True
                self._cv.wait(end - now)


def _retry_after(value):
    """Seconds from a Retry-After header given in seconds (None: absent or a date)."""
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
