"""The index's quantised sketch (engram/recall/sketch.py): written by the real indexer
process beside each index file, memory-mapped by the owner, workers and attached readers,
checked before use; recall through it finds what an exact scan finds, at once for new and
forgotten memories, and the audit chooses it only by measurement."""
from __future__ import annotations

import os
import struct
from dataclasses import replace

import numpy as np
import pytest

import engram
from engram.errors import AttachError
from engram.kernels import backend
from engram.observe.attach import tools
from engram.recall import ann, sketch
from engram.recall.ann import SKETCH, AnnState, sketch_path
from engram.recall.audit import LADDER, TARGET
from engram.store.shm.names import EngineName, segments_of

from .helpers import indexed_space
from .test_audit import audit_with

DIM = 48
N = 4000
MIN_ROWS = 2000


def noise(n: int, rng) -> np.ndarray:
    """Uniform noise: the data an HNSW search does worst on, a scan of any kind best."""
    return rng.standard_normal((n, DIM)).astype(np.float32)


def exact_top(x: np.ndarray, q: np.ndarray, k: int, live=None) -> list:
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    if live is not None:
        cos[~live] = -np.inf
    return np.argsort(-cos, kind="stable")[:k].tolist()


def state(space) -> AnnState:
    return AnnState.read(space._store.dir)


def similar(space, q, k=10, breadth=SKETCH):
    return space._owned.reader.similar(q, k, breadth=breadth)


@pytest.fixture
def sketched():
    rng = np.random.default_rng(11)
    x = noise(N, rng)
    parts = [(x[:N // 2], "hot"), (x[N // 2:], "warm")]     # both tiers in one sketch
    with indexed_space("sketched", parts, DIM, MIN_ROWS) as (eng, sp):
        yield eng, sp, x, rng


# ----------------------------------------------------------------- the file
def test_quantised_rows_keep_their_direction_and_zero_rows_are_hidden():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 33)).astype(np.float32) * rng.uniform(1e-3, 1e3, (50, 1)).astype(np.float32)
    x[7] = 0.0
    x[9, 4] = np.inf
    packed, scale = sketch.quantize(x)
    assert packed.dtype == np.uint8 and packed.shape == (50, 17) and scale.dtype == np.float32
    v = sketch.unpack(packed)
    assert v.shape == (50, 34) and (v[:, 33] == 0).all()      # an odd dim's last high nibble: a zero
    assert v.min() >= -sketch.LEVELS and v.max() <= sketch.LEVELS
    assert ((packed & 15) == v[:, :17] + 8).all() and ((packed >> 4) == v[:, 17:] + 8).all()
    ok = np.ones(50, bool)
    ok[[7, 9]] = False
    assert (np.abs(v[ok]).max(axis=1) == sketch.LEVELS).all()     # each row uses the full range
    assert scale[7] == 0 and scale[9] == 0 and (scale[ok] > 0).all()
    np.testing.assert_allclose(np.linalg.norm(v[ok].astype(np.float64), axis=1) * scale[ok], 1.0, rtol=1e-6)
    cos = np.einsum("ij,ij->i", v[ok, :33].astype(np.float64), x[ok]) * scale[ok] / np.linalg.norm(x[ok], axis=1)
    assert cos.min() > 0.97                                   # the 4-bit row points where the row does
    one = sketch.quantize_query(x[3])
    assert one.dtype == np.int8 and one.shape == (34,) and one[33] == 0 and np.abs(one).max() == 127
    idx, _ = backend().sketch_topk(one, packed, scale, 1)
    assert idx.tolist() == [3]                                # a row's own query finds it first


def test_a_written_sketch_reads_back(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5000, 40)).astype(np.float32)
    ids = rng.permutation(10_000)[:5000].astype(np.int64)
    path = str(tmp_path / "s")
    sketch.write(path, 40, [(ids[:3000], x[:3000]), (ids[3000:], x[3000:].astype(np.float16))], 5000)
    assert os.path.getsize(path) == sketch.file_size(5000, 40)
    sk = sketch.Sketch(path, 40, 5000)
    q8, scale = sketch.quantize(x)
    assert sk.ids.tolist() == ids.tolist()
    assert sk.rows[:3000].tolist() == q8[:3000].tolist() and sk.scale[:3000].tolist() == scale[:3000].tolist()
    got = sk.candidates(backend(), x[17], 5)
    assert got[0] == ids[17]
    with pytest.raises(FileExistsError):                  # never over a file already there
        sketch.write(path, 40, [(ids, x)], 5000)
    with pytest.raises(ValueError, match="sized for 10 rows and given more"):
        sketch.write(str(tmp_path / "t"), 40, [(ids, x)], 10)


def _damaged(tmp_path, how: str) -> tuple[str, int, int]:
    path = str(tmp_path / f"s-{how}")
    x = np.random.default_rng(3).standard_normal((100, 16)).astype(np.float32)
    sketch.write(path, 16, [(np.arange(100), x)], 100)
    dim, count = 16, 100
    with open(path, "r+b") as f:
        if how == "truncated":
            f.truncate(os.path.getsize(path) - 1)
        elif how == "longer":
            f.seek(0, 2)
            f.write(b"\0" * 64)
        elif how == "magic":
            f.write(b"NOTASKCH")
        elif how == "huge-count":           # a head claiming 2^60 rows: refused by size, nothing allocated
            f.seek(16)
            f.write(struct.pack("<Q", 1 << 60))
    if how == "directory-lies":
        count = 1 << 40
    if how == "other-dim":
        dim = 32
    return path, dim, count


@pytest.mark.parametrize("how", ["truncated", "longer", "magic", "huge-count", "directory-lies", "other-dim"])
def test_a_damaged_sketch_is_refused_naming_the_file(tmp_path, how):
    path, dim, count = _damaged(tmp_path, how)
    with pytest.raises(AttachError) as e:
        sketch.Sketch(path, dim, count)
    assert path in str(e.value) and "not used" in str(e.value)


def test_a_sketch_that_is_not_a_regular_file_is_refused(tmp_path):
    real, _, _ = _damaged(tmp_path, "none")
    link = str(tmp_path / "link")
    os.symlink(real, link)
    with pytest.raises(AttachError, match="cannot be opened"):
        sketch.Sketch(link, 16, 100)
    with pytest.raises(AttachError, match="cannot be opened"):
        sketch.Sketch(str(tmp_path / "absent"), 16, 100)


# ----------------------------------------------------------------- in an engine
def test_the_indexer_writes_a_sketch_of_every_live_row(sketched):
    eng, sp, x, rng = sketched
    st = state(sp)
    assert st.sketch == N and st.rows == (N // 2, N // 2, 0)
    sp.recall(x[0], k=1, spread=False)          # a reader opens the generation's files when it next recalls
    sk = sp._owned.reader.ann.sketch
    assert sk is not None and sorted(sk.ids.tolist()) == list(range(N))
    assert sp.stats()["index"]["sketch"] == N
    assert os.path.exists(sketch_path(EngineName.parse(eng.name), "sketched", st.generation, st.salt))


def test_recall_through_the_sketch_finds_what_an_exact_scan_finds(sketched, monkeypatch):
    eng, sp, x, rng = sketched
    kern = sp._owned.reader.kern
    calls = {"sketch": 0, "scan": 0}
    for name, what in (("sketch_topk", "sketch"), ("_topk_until", "scan")):
        real = getattr(kern, name)

        def spy(*a, _real=real, _what=what, **kw):
            calls[_what] += 1
            return _real(*a, **kw)
        monkeypatch.setattr(kern, name, spy)
    got = []
    for i in rng.integers(0, N, 40):
        q = x[i] + rng.standard_normal(DIM).astype(np.float32) * 0.5
        r = similar(sp, q)
        got.append(len(set(r.ids.tolist()) & set(exact_top(x, q, 10))) / 10)
        cos = (x[r.ids] @ q) / (np.linalg.norm(x[r.ids], axis=1) * np.linalg.norm(q))
        np.testing.assert_allclose(r.scores, cos, rtol=2e-3, atol=2e-3)    # scored exactly (f16 rows too)
    assert np.mean(got) >= 0.99
    assert calls == {"sketch": 40, "scan": 0}       # the sketch answered, not a scan of the rows


def test_new_and_forgotten_memories_are_right_at_once_through_the_sketch(sketched):
    eng, sp, x, rng = sketched
    q = rng.standard_normal(DIM).astype(np.float32)
    new = int(sp.remember(q[None, :])[0])
    assert sum(state(sp).rows) == N, "the index took the new row already: this test needs it in the tail"
    r = similar(sp, q, k=5)
    assert int(r.ids[0]) == new and len(set(r.ids.tolist())) == r.ids.shape[0]
    top = similar(sp, x[21], k=3).ids.tolist()
    assert top[0] == 21
    sp.forget([21, top[1]])
    again = similar(sp, x[21], k=3).ids.tolist()
    assert 21 not in again and top[1] not in again


@pytest.mark.parametrize("breadth", [64, SKETCH], ids=["index", "sketch"])
def test_k_results_when_a_query_s_nearest_were_forgotten(sketched, breadth):
    """The index and its sketch keep forgotten memories until a rebuild (a quarter of the
    index forgotten): when a query's 100 nearest are forgotten, its first candidates are all
    gone, and recall looks further instead of answering with nothing."""
    eng, sp, x, rng = sketched
    q = x[0]
    nearest = exact_top(x, q, 110)
    sp.forget(nearest[:100])
    assert state(sp).sketch == N                       # not rebuilt: 100 of 4,000 forgotten
    r = similar(sp, q, k=10, breadth=breadth)
    assert r.ids.shape[0] == 10 and not set(r.ids.tolist()) & set(nearest[:100])
    found = len(set(r.ids.tolist()) & set(nearest[100:110]))
    assert found == 10 if breadth == SKETCH else found >= 8, found     # (HNSW on noise: near, not exact)


def test_a_chosen_sketch_serves_recall_and_is_shown(sketched):
    eng, sp, x, rng = sketched
    replace(state(sp), breadth=SKETCH).publish(sp._store.dir)       # as the audit publishes its choice
    assert sp.stats()["index"]["breadth"] == "sketch"
    assert "sketch scan (the audit's choice)" in tools.format_index(sp.stats()["index"])
    for i in (5, 500, 3900):
        assert int(sp.recall(x[i], k=3, spread=False, budget_ms=None).ids[0]) == i
    with engram.attach(eng.name) as att:        # another process's reader maps the same file
        assert int(att.space("sketched").recall(x[77], k=3, spread=False, budget_ms=None).ids[0]) == 77
    files = [h for h in tools.segment_headers(EngineName.parse(eng.name)) if h.get("kind") == "ann sketch (4-bit)"]
    assert len(files) == 1 and files[0]["ok"] and files[0]["bytes"] == sketch.file_size(N, DIM)


def test_a_reader_whose_sketch_is_damaged_scans_exactly(sketched, caplog):
    eng, sp, x, rng = sketched
    st = state(sp)
    replace(st, breadth=SKETCH).publish(sp._store.dir)        # the audit chose the sketch
    with open(sketch_path(EngineName.parse(eng.name), "sketched", st.generation, st.salt), "r+b") as f:
        f.truncate(100)
    with engram.attach(eng.name) as att:
        r = att.space("sketched").recall(x[31], k=3, spread=False, budget_ms=None)
        assert int(r.ids[0]) == 31
    fresh = ann.AnnView(EngineName.parse(eng.name), "sketched", DIM)
    fresh.current(sp._store.dir)
    assert fresh.sketch is None and fresh.index is not None      # the index is still there for searches
    assert "sketch could not be used" in caplog.text and "scanning exactly" in caplog.text


def test_closing_leaves_no_sketch_file(sketched):
    eng, sp, x, rng = sketched
    name = EngineName.parse(eng.name)
    assert any(".sketch." in s for s in segments_of(name))
    eng.close()
    assert not segments_of(name)


def test_no_sketch_past_its_size_limit(monkeypatch):
    from engram.workers import indexrun
    rng = np.random.default_rng(4)
    with engram.Engine(dim=DIM, workers=0, index_min_rows=None) as eng:
        sp = eng.space("bounded")
        sp.remember(noise(300, rng))
        path = sketch_path(EngineName.parse(eng.name), "bounded", 99, 1)
        monkeypatch.setattr(sketch, "MAX_BYTES", 299 * sketch.half(DIM))
        assert indexrun.write_sketch(sp._store, path, (300, 0, 0)) == 0 and not os.path.exists(path)
        monkeypatch.setattr(sketch, "MAX_BYTES", 300 * sketch.half(DIM))
        sp.forget([0, 1])
        assert indexrun.write_sketch(sp._store, path, (300, 0, 0)) == 298     # the live rows only
        assert 0 not in sketch.Sketch(path, DIM, 298).ids.tolist()
        os.unlink(path)
        # rows published after the run's count are not its to take (an index run during ingest)
        sp.remember(noise(5000, rng))
        monkeypatch.setattr(sketch, "MAX_BYTES", 64 << 20)
        assert indexrun.write_sketch(sp._store, path, (4200, 0, 0)) == 4198
        assert sorted(sketch.Sketch(path, DIM, 4198).ids.tolist()) == list(range(2, 4200))
        os.unlink(path)


def test_a_reopened_engine_writes_its_index_a_sketch(tmp_path):
    """The saved index comes back without a sketch; the keeper writes one for it."""
    rng = np.random.default_rng(8)
    x = noise(N, rng)
    with engram.Engine(tmp_path, dim=DIM, workers=0, index_min_rows=MIN_ROWS) as eng:
        eng.space("kept").remember(x)
        assert eng.wait_for_index(120)
    with engram.Engine(tmp_path, workers=0, index_min_rows=MIN_ROWS) as eng:
        sp = eng.space("kept")
        assert eng.wait_for_index(120)
        st = state(sp)
        assert st.size == N and st.sketch == N
        assert int(similar(sp, x[11], k=1).ids[0]) == 11


# ----------------------------------------------------------------- the audit's choice
def test_the_audit_chooses_the_sketch_only_when_it_reaches_the_target_and_costs_least():
    slow = {b: 1.0 + b / 64 for b in LADDER}
    low = dict.fromkeys(LADDER, 0.6)
    # hard data: no breadth reaches the target; the sketch does and is cheaper than the scan
    assert audit_with({**low, SKETCH: 1.0}, {**slow, SKETCH: 0.3, ann.EXACT: 1.2}).choice() == SKETCH
    # ... and even when the scan costs more than EXACT_MAX_MS
    assert audit_with({**low, SKETCH: 1.0}, {**slow, SKETCH: 0.3, ann.EXACT: 50.0}).choice() == SKETCH
    # a sketch that misses the target is not chosen, however cheap
    assert audit_with({**low, SKETCH: TARGET - 0.01}, {**slow, SKETCH: 0.01, ann.EXACT: 1.2}).choice() == ann.EXACT
    # easy data: a breadth cheaper than the sketch wins
    easy = dict.fromkeys(LADDER, 1.0)
    assert audit_with({**easy, SKETCH: 1.0}, {**slow, 64: 0.2, SKETCH: 0.3, ann.EXACT: 1.2}).choice() == 64
    # once chosen, the sketch gives way only for a clear gain
    a = audit_with({**easy, SKETCH: 1.0}, {**slow, 64: 0.28, SKETCH: 0.3, ann.EXACT: 1.2})
    a.chosen = SKETCH
    assert a.choice() == SKETCH
    a.ms[64] = 0.2
    assert a.choice() == 64
    # no sketch audited (the space has none): the choice is as before
    assert audit_with(low, {**slow, ann.EXACT: 1.2}).choice() == ann.EXACT


def test_rows_and_queries_of_subnormal_magnitude_keep_their_direction():
    """LEVELS / a largest magnitude below ~2e-38 overflows float32: computed in float64."""
    x = np.array([[1e-39, -1e-39, 5e-40, 0.0]], np.float32)
    with np.errstate(all="raise"):
        packed, scale = sketch.quantize(x)
        q = sketch.quantize_query(x[0])
    assert sketch.unpack(packed)[0].tolist() == [7, -7, 4, 0] and scale[0] > 0   # 5e-40 is 0.5 of the largest
    assert q.tolist() == [127, -127, 64, 0]
