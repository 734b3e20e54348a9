"""Text in and out of a space through the engine's embedder, and the space's record of which
embedder made its vectors: kept across close, reopen and kill -9, and never mixed."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import engram
from engram import errors
from engram.text import Embedder, Identity
from tests.text.models import Letters, Silent

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["remove a directory tree", "read rows of a csv file", "send mail over smtp", "hash bytes with sha256"]


def test_texts_in_text_out_with_the_engines_embedder():
    model = Letters()
    with engram.Engine(embedder=model, workers=0) as eng:
        assert eng.dim == 16 and eng.embedder.identity == Identity("tests/letters", "1", 16)
        mem = eng.space("docs")
        ids = mem.remember(texts=DOCS)
        assert mem.get(ids).content == DOCS                         # the texts are kept as content
        np.testing.assert_allclose(mem.get(ids).vectors, model.encode(DOCS) /
                                   np.linalg.norm(model.encode(DOCS), axis=1, keepdims=True) *
                                   np.linalg.norm(mem.get(ids).vectors, axis=1, keepdims=True), rtol=1e-5)
        res = mem.recall(text="read rows of a csv file", k=2, spread=False)
        assert res.ids[0] == ids[1] and res.content[0] == DOCS[1]
        assert res.timings["embed_ms"] >= 0 and res.timings["total_ms"] >= res.timings["embed_ms"]
        assert mem.embedded_by == Identity("tests/letters", "1", 16)
        # vectors passed directly keep working, in the same space too
        more = mem.remember(model.encode(["open a socket"]), content=["open a socket"])
        assert mem.recall(model.encode(["open a socket"])[0], k=1).ids[0] == more[0]


def test_content_can_differ_from_the_text_embedded():
    with engram.Engine(embedder=Letters(), workers=0) as eng:
        mem = eng.space("docs")
        ids = mem.remember(texts=DOCS[:2], content=["shutil.rmtree", "csv.reader"], confidence=0.5)
        got = mem.get(ids)
        assert got.content == ["shutil.rmtree", "csv.reader"] and np.allclose(got.confidence, 0.5)


def test_dim_comes_from_the_model_and_a_different_one_is_refused():
    with engram.Engine(embedder=Silent(lambda t: np.ones((len(t), 5))), workers=0) as eng:
        assert eng.dim == 5                       # asked once: the model has no dim attribute
    with pytest.raises(errors.DimensionError, match="dim=32 but the embedder tests/letters 1 \\(16-d\\)"):
        engram.Engine(embedder=Letters(), dim=32, workers=0)


@pytest.mark.parametrize(("embedder", "error", "says"), [
    ("bert", errors.InvalidInputError, "embedder must be 'default', None or an object with encode"),
    (object(), errors.InvalidInputError, "object with encode"),
    (Silent(lambda t: np.ones((len(t), 3, 2))), errors.EmbedderError, "returned shape \\(1, 3, 2\\)"),
    (Silent(lambda t: 1 / 0), errors.EmbedderError, "failed on a batch of 1 texts: ZeroDivisionError"),
    (Silent(lambda t: "words"), errors.EmbedderError, "returned str, not an array of numbers"),
])
def test_an_embedder_that_cannot_work_is_refused_at_the_engine(embedder, error, says):
    with pytest.raises(error, match=says):
        engram.Engine(embedder=embedder, workers=0)


@pytest.mark.parametrize(("output", "says"), [
    (lambda t: np.ones((len(t) + 1, 4)), "returned shape \\(3, 4\\) for 2 texts; expected \\(2, 4\\)"),
    (lambda t: np.full((len(t), 4), np.nan), "NaN, infinite or all-zero vectors for texts \\[0, 1\\]"),
    (lambda t: np.zeros((len(t), 4)), "NaN, infinite or all-zero"),
])
def test_a_bad_batch_from_the_model_raises_and_stores_nothing(output, says):
    calls = {"n": 0}

    def make(texts):
        calls["n"] += 1
        return np.ones((len(texts), 4)) if calls["n"] == 1 else output(texts)     # the first: the dim probe
    with engram.Engine(embedder=Silent(make), workers=0) as eng:
        mem = eng.space("docs")
        with pytest.raises(errors.EmbedderError, match=says):
            mem.remember(texts=["a", "b"])
        assert len(mem) == 0 and mem.embedded_by is None


@pytest.mark.parametrize(("kwargs", "error", "says"), [
    ({"texts": []}, errors.EmptyBatchError, "texts is empty"),
    ({"texts": ["ok", 3]}, errors.InvalidInputError, "texts\\[1\\] must be a string, got int"),
    ({"texts": ["ok", "  "]}, errors.InvalidInputError, "texts\\[1\\] is blank"),
    ({"texts": 7}, errors.InvalidInputError, "texts must be a string or a list of strings, got int"),
    ({"texts": ["a"], "vectors": np.ones((1, 16))}, errors.InvalidInputError, "give vectors or texts, not both"),
    ({"texts": ["a", "b"], "confidence": 2.0}, errors.InvalidInputError, "confidence"),
    ({"texts": ["a", "b"], "content": ["only one"]}, errors.InvalidInputError, "content has 1 items for 2"),
    ({"texts": ["a"], "tier": "frozen"}, errors.InvalidInputError, "tier"),
])
def test_bad_text_input_is_refused_before_the_model_runs(kwargs, error, says):
    model = Letters()
    with engram.Engine(embedder=model, workers=0) as eng:
        mem = eng.space("docs")
        with pytest.raises(error, match=says):
            mem.remember(**kwargs)
        assert model.calls == 0 and len(mem) == 0 and mem.embedded_by is None


def test_recall_by_text_refuses_bad_questions():
    with engram.Engine(embedder=Letters(), workers=0) as eng:
        mem = eng.space("docs")
        mem.remember(texts=DOCS)
        with pytest.raises(errors.InvalidInputError, match="text must be a string, got list"):
            mem.recall(text=["two", "questions"])
        with pytest.raises(errors.InvalidInputError, match="text\\[0\\] is blank"):
            mem.recall(text=" ")
        with pytest.raises(errors.InvalidInputError, match="give query \\(a vector\\) or text, not both"):
            mem.recall(np.ones(16), text="csv")


def test_an_engine_without_an_embedder_says_how_to_get_one():
    with engram.Engine(dim=16, workers=0) as eng:
        mem = eng.space("docs")
        with pytest.raises(errors.NoEmbedderError, match="engram.Engine\\(embedder='default'\\).*engram\\[text\\]"):
            mem.remember(texts=["a"])
        with pytest.raises(errors.NoEmbedderError, match="has no embedder"):
            mem.recall(text="a")
        assert eng.embedder is None and len(mem) == 0


def test_an_attached_reader_cannot_encode_text():
    with engram.Engine(embedder=Letters(), workers=0) as eng:
        eng.space("docs").remember(texts=DOCS)
        view = engram.attach(eng.name).space("docs")
        with pytest.raises(errors.NoEmbedderError, match="a reader of memory space 'docs' has no embedder"):
            view.recall(text="csv")


def test_texts_never_go_into_a_space_of_vectors_from_elsewhere():
    with engram.Engine(embedder=Letters(), workers=0) as eng:
        mem = eng.space("vectors")
        ids = mem.remember(np.eye(16)[:2], content=["x", "y"])
        with pytest.raises(errors.EmbedderMismatchError, match="holds 2 memories remembered as vectors, with no "
                                                               "record of what made them"):
            mem.remember(texts=["z"])
        with pytest.raises(errors.EmbedderMismatchError, match="no record"):
            mem.recall(text="x")
        assert len(mem) == 2 and mem.embedded_by is None
        mem.forget(ids)                          # nothing left to mix with: texts may come in
        mem.remember(texts=["z"])
        assert mem.embedded_by.name == "tests/letters"


def test_the_record_survives_reopening_and_another_embedder_is_refused(tmp_path):
    with engram.Engine(path=tmp_path, embedder=Letters(), workers=0) as eng:
        eng.space("docs").remember(texts=DOCS)
        eng.space("plain").remember(np.eye(16)[:1])
    with engram.Engine(path=tmp_path, embedder=Letters(name="tests/other"), workers=0) as eng:
        mem = eng.space("docs")
        assert mem.embedded_by == Identity("tests/letters", "1", 16)
        with pytest.raises(errors.EmbedderMismatchError, match="made by tests/letters 1 \\(16-d\\); this engine's "
                                                               "embedder is tests/other 1 \\(16-d\\)"):
            mem.remember(texts=["more"])
        with pytest.raises(errors.EmbedderMismatchError, match="made by tests/letters"):
            mem.recall(text="csv")
        assert len(mem) == 4
        assert mem.recall(mem.get([1]).vectors[0], k=1).ids[0] == 1       # vectors still work
    with engram.Engine(path=tmp_path, workers=0) as eng:                  # no embedder: vectors only
        assert eng.dim == 16 and eng.space("docs").embedded_by.name == "tests/letters"
    with pytest.raises(errors.DimensionError, match="holds memories of dimension 16; the embedder"):
        engram.Engine(path=tmp_path, embedder=Letters(dim=8), workers=0)


def test_the_record_survives_kill_9(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        import engram
        from tests.text.models import Letters
        eng = engram.Engine(path={str(tmp_path)!r}, embedder=Letters(), workers=0, checkpoint_s=3600)
        eng.space("docs").remember(texts={DOCS!r})
        print("remembered", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert p.returncode == -9 and "remembered" in p.stdout, p.stderr
    with engram.Engine(path=tmp_path, embedder=Letters(name="tests/other"), workers=0) as eng:
        assert eng.recovery["replayed"] > 0              # from the log, not a snapshot
        mem = eng.space("docs")
        assert mem.embedded_by == Identity("tests/letters", "1", 16) and len(mem) == 4
        with pytest.raises(errors.EmbedderMismatchError):
            mem.remember(texts=["more"])


def test_a_large_remember_runs_in_batches_and_shows_progress(capsys):
    model = Letters()
    emb = Embedder(model, batch=10)
    texts = [f"memory number {i}" for i in range(95)]
    with engram.Engine(embedder=emb, workers=0) as eng:
        calls = model.calls
        ids = eng.space("docs").remember(texts=texts, progress=True)
        assert ids.shape == (95,) and model.calls - calls == 10           # 9 batches of 10, one of 5
    err = capsys.readouterr().err
    assert "embedding texts" in err and "95/95" in err
