"""Idempotency keys survive the daemon: a write retried with its key after kill -9 and a
restart gets the first answer and changes nothing (the key is in the write's log record),
also after a clean stop (the snapshot carries it). A daemon whose records leave the key
out (the negative control, injected into its process) shows the duplicate these tests
look for."""
from __future__ import annotations

import signal

import httpx
import numpy as np
import pytest

import engram
from engram.store.keys import Key, KeyStore, Result

from .conftest import DIM
from .test_http import BATCH, binary_batch

#: the daemon's records carry no keys (kept in memory only, as before they were durable)
KEYS_NOT_LOGGED = ("from engram.store.mutations import Mutations\n"
                   "keyed = Mutations._keyed\n"
                   "Mutations._keyed = lambda self, *a: (keyed(self, *a)[0][1:], 0)")


def _writes(h: httpx.Client) -> list:
    """Four keyed writes (batch, remember with a link, associate, forget): their answers."""
    rows = np.random.default_rng(1).standard_normal((5, DIM))
    out = [h.post("/api/v1/memories/batch", content=binary_batch(rows), headers={"Content-Type": BATCH,
                                                                                 "Idempotency-Key": "batch-1"})]
    out.append(h.post("/api/v1/memories/remember", headers={"Idempotency-Key": "one-1"},
                      json={"embedding": np.ones(DIM).tolist(), "content": "kettle",
                            "links": [{"target_memory_id": 0, "strength": 0.5}]}))
    out.append(h.post("/api/v1/patterns/associate", headers={"Idempotency-Key": "link-1"},
                      json={"source_memory": 1, "target_memory": [2, 3], "strength": 0.25}))
    out.append(h.post("/api/v1/memories/forget", headers={"Idempotency-Key": "forget-1"}, json={"memory_id": 4}))
    return out


def _state(h: httpx.Client) -> tuple:
    return (h.get("/api/v1/spaces/default").json()["memories"],
            [h.get(f"/api/v1/memories/{i}/links").json()["links"] for i in range(4)])


def _retried_after_kill(start_daemon, tmp_path, prelude=None) -> tuple:
    data = tmp_path / "keys"
    d = start_daemon(data=data, prelude=prelude)
    with httpx.Client(base_url=d.url) as h:
        first = _writes(h)
        assert [r.status_code for r in first] == [201, 201, 200, 200], [r.text for r in first]
        before = _state(h)
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    d = start_daemon(data=data, prelude=prelude)                # recovers from the log alone
    with httpx.Client(base_url=d.url) as h:
        return first, _writes(h), before, _state(h)


def test_a_keyed_write_retried_after_kill_9_and_restart_gets_its_answer_and_changes_nothing(start_daemon, tmp_path):
    first, again, before, after = _retried_after_kill(start_daemon, tmp_path)
    for a, b in zip(first, again):
        assert (b.status_code, b.json()) == (a.status_code, a.json())
        assert b.headers.get("idempotent-replayed") == "true"
    assert first[0].json()["memory_ids"] == [0, 1, 2, 3, 4] and first[1].json()["memory_id"] == 5
    assert after == before and after[0] == 5                     # 6 stored, 1 forgotten, nothing twice


def test_the_negative_control_keys_left_out_of_the_log_are_forgotten_by_kill_9(start_daemon, tmp_path):
    """The same run with the key left out of each record: the retry is applied again, which
    the test above would see (so it can fail)."""
    first, again, before, after = _retried_after_kill(start_daemon, tmp_path, prelude=KEYS_NOT_LOGGED)
    assert again[0].json()["memory_ids"] == [6, 7, 8, 9, 10] and "idempotent-replayed" not in again[0].headers
    assert after[0] > before[0]


def test_keys_outlive_a_clean_stop_in_the_snapshot_and_are_checked(start_daemon, tmp_path):
    data = tmp_path / "clean"
    d = start_daemon(data=data)
    one = {"embedding": [1.0] + [0.0] * (DIM - 1), "content": "a"}
    with httpx.Client(base_url=d.url) as h:
        first = h.post("/api/v1/memories/remember", json=one, headers={"Idempotency-Key": "k:1/a=b"})
        assert first.status_code == 201
    assert d.stop(signal.SIGTERM) == 0                           # checkpoints: nothing left to replay
    with engram.Engine(path=data) as eng:
        assert eng.recovery["replayed"] == 0 and len(eng.space("default")._changes.keys) == 1
    d = start_daemon(data=data)
    with httpx.Client(base_url=d.url) as h:
        again = h.post("/api/v1/memories/remember", json=one, headers={"Idempotency-Key": "k:1/a=b"})
        assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
        other = h.post("/api/v1/memories/remember", json={**one, "content": "b"},
                       headers={"Idempotency-Key": "k:1/a=b"})
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert other.json()["error"]["type"] == "IdempotencyKeyError"
        for bad in ("has space", "x" * 201, "caf\u00e9"):
            r = h.post("/api/v1/memories/remember", json=one, headers={"Idempotency-Key": bad.encode("utf-8")})
            assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]["message"], r.text
        assert h.get("/api/v1/spaces/default").json()["memories"] == 1
    with engram.Client(d.url) as c, pytest.raises(engram.errors.IdempotencyKeyError):   # the client's class
        c.request("POST", "/api/v1/memories/remember", json={**one, "content": "c"},
                  headers={"Idempotency-Key": "k:1/a=b"})


def test_the_key_store_is_bounded_by_count_and_age():
    now = [10**18]
    keys = KeyStore(max_keys=3, ttl_s=60, clock=lambda: now[0])
    for i in range(5):
        keys.put(bytes([i]) * 16, b"r" * 16, now[0], Result(2, i, 1))
    assert len(keys) == 3 and keys.prior(Key(b"\0" * 16, b"r" * 16), 2) is None
    assert keys.prior(Key(b"\4" * 16, b"r" * 16), 2).first == 4
    with pytest.raises(engram.errors.IdempotencyKeyError):
        keys.prior(Key(b"\4" * 16, b"r" * 16), 3)               # another kind of change
    saved = keys.arrays()
    now[0] += 61 * 10**9
    assert keys.prior(Key(b"\4" * 16, b"r" * 16), 2) is None and len(keys) == 0
    fresh = KeyStore(clock=lambda: now[0] - 61 * 10**9)
    fresh.restore(saved)
    assert len(fresh) == 3 and fresh.prior(Key(b"\3" * 16, b"r" * 16), 2) == Result(2, 3, 1)
