"""Loki export of trace events: JSON pushes to ``<url>/loki/api/v1/push`` (Loki's push
API), gzipped, through a Delivery (retries, bounded queue, counted drops).

- Streams are labelled ``job=engram``, ``process`` (owner, worker-N) and ``kind``:
  labels that stay the same from run to run. The engine's name, the pid, the
  thread and the space are fields of each line, the event's JSON.
- One stream per process and kind, so each stream has one writer; its entries are
  sent in timestamp order. An entry whose time is older than what its stream
  already sent (a span that started before the previous drain ended) is sent at
  the stream's last time; its exact time stays in the line (``ts_ns``).
- Each push's body is at most ``policy.loki_push_bytes`` (1 MiB by default).
"""
from __future__ import annotations

import json

from engram.observe.attach.delivery import Delivery

HEAD, SEP, TAIL = '{"streams": [', ", ", "]}"


class LokiSink:
    def __init__(self, url: str, engine: str, policy, on_drop=None):
        self.engine = engine
        self._limit = policy.loki_push_bytes
        self.delivery = Delivery("loki", url.rstrip("/") + "/loki/api/v1/push", "application/json", policy, on_drop)
        self._entries: dict = {}        # (process, kind) -> [(ts, line JSON)]
        self._last: dict = {}           # (process, kind) -> the last time it sent

    def add(self, rec: dict) -> None:
        line = dict(rec, engine=self.engine)
        self._entries.setdefault((rec["process"], rec["kind"]), []).append((rec["ts_ns"], json.dumps(line)))

    def flush(self) -> None:
        """Push what was gathered, in bodies of at most the push limit."""
        parts, size, events = [], len(HEAD) + len(TAIL), 0
        for key, entries in self._entries.items():
            entries.sort(key=lambda e: e[0])
            last = self._last.get(key, 0)
            head = '{"stream": ' + json.dumps({"job": "engram", "process": key[0], "kind": key[1]}) + ', "values": ['
            values = []
            for ts, line in entries:
                last = max(last, ts)
                value = f'["{last}", {json.dumps(line)}]'
                grow = len(value) + len(SEP) + (len(head) + 2 + len(SEP) if not values else 0)
                if size + grow > self._limit and (values or parts):
                    if values:
                        parts.append(head + SEP.join(values) + "]}")
                    self._push(parts, events)
                    parts, size, events, values = [], len(HEAD) + len(TAIL), 0, []
                    grow = len(value) + len(SEP) + len(head) + 2 + len(SEP)
                if size + grow > self._limit:      # one line past the limit: Loki would refuse it too
                    self.delivery.drop(1, f"a line of {len(value):,} bytes, over the push limit")
                    continue
                values.append(value)
                size += grow
                events += 1
            if values:
                parts.append(head + SEP.join(values) + "]}")
            self._last[key] = last
        if parts:
            self._push(parts, events)
        self._entries = {}

    def _push(self, streams: list, events: int) -> None:
        self.delivery.submit((HEAD + SEP.join(streams) + TAIL).encode(), events)

    def close(self) -> None:
        self.flush()
        self.delivery.close()

    def stats(self) -> dict:
        return self.delivery.stats()
