"""JSON true and false are not ids or numbers: lax validation read {"memory_id": false}
as memory 0 and forgot it (schemathesis found it)."""
from __future__ import annotations

import httpx
import pytest

from .conftest import DIM


@pytest.mark.parametrize("path,body", [
    ("/api/v1/memories/forget", {"memory_id": False}),
    ("/api/v1/memories/forget", {"memory_ids": [True]}),
    ("/api/v1/memories/recall", {"embedding": [1.0] * DIM, "max_results": True}),
    ("/api/v1/memories/remember", {"embedding": [True] + [0.0] * (DIM - 1)}),
])
def test_booleans_are_refused_where_the_spec_says_integer_or_number(daemon, path, body):
    with httpx.Client(base_url=daemon.url) as h:
        r = h.post("/api/v1/memories/remember", json={"embedding": [1.0] + [0.0] * (DIM - 1), "content": "zero"})
        assert r.status_code == 201, r.text
        before = h.get("/api/v1/memories").json()
        r = h.post(path, json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_MEMORY_INPUT", r.text
        assert h.get("/api/v1/memories").json() == before            # nothing changed
