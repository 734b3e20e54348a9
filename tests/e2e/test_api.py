"""The public Python API end to end: remember, get, recall, link, forget, and
every rejected call leaving the store exactly as it was."""
import math
import re
import warnings

import numpy as np
import pytest

import engram
from engram import errors

DIM = 24


@pytest.fixture
def eng():
    with engram.Engine(dim=DIM, workers=0) as e:
        yield e


@pytest.fixture
def mem(eng):
    m = eng.space("test-space")
    rng = np.random.default_rng(7)
    m.remember(rng.standard_normal((40, DIM)), content=[f"hot {i}" for i in range(40)])
    m.remember(rng.standard_normal((20, DIM)), content=[f"warm {i}" for i in range(20)], tier="warm",
               confidence=0.5)
    m.link([0, 1, 2], [1, 2, 3], [0.5, 0.6, 0.7])
    return m


def state(m):
    """Everything observable about a space, for before/after comparisons."""
    st = m.stats()
    n = st["ids_issued"]
    live = [i for i in range(n) if _alive(m, i)]
    got = m.get(live) if live else None
    return {
        "stats": st,
        "live": live,
        "vectors": None if got is None else got.vectors.tobytes(),
        "content": None if got is None else got.content,
        "confidence": None if got is None else got.confidence.tobytes(),
        "neighbors": {i: tuple(map(np.ndarray.tobytes, m.neighbors(i))) for i in live},
    }


def _alive(m, i):
    try:
        m.get(i)
        return True
    except errors.UnknownIdError:
        return False


def test_remember_returns_sequential_int64_ids(eng):
    m = eng.space("ids")
    a = m.remember(np.ones((3, DIM)))
    b = m.remember(np.ones(DIM))
    assert a.dtype == np.int64 and a.tolist() == [0, 1, 2]
    assert b.tolist() == [3]
    assert len(m) == 4


def test_get_round_trips_hot_exactly_and_warm_within_f16(mem):
    rng = np.random.default_rng(7)
    hot = rng.standard_normal((40, DIM)).astype(np.float32)
    warm = rng.standard_normal((20, DIM)).astype(np.float32)
    got = mem.get(np.arange(40))
    assert np.array_equal(got.vectors, hot)
    assert got.content[3] == "hot 3" and got.tier[0] == "hot"
    assert np.all(got.confidence == 1.0)
    g2 = mem.get(np.arange(40, 60))
    assert np.array_equal(g2.vectors, warm.astype(np.float16).astype(np.float32))
    assert g2.tier[0] == "warm" and np.allclose(g2.confidence, 0.5)
    assert g2.content[19] == "warm 19"
    # order follows the request
    assert mem.get([5, 2]).content == ["hot 5", "hot 2"]


def test_recall_is_the_exact_cosine_top_k_over_both_tiers(mem):
    rng = np.random.default_rng(7)
    all_vecs = np.vstack([rng.standard_normal((40, DIM)).astype(np.float32),
                          rng.standard_normal((20, DIM)).astype(np.float32).astype(np.float16).astype(np.float64)])
    q = np.random.default_rng(1).standard_normal(DIM)
    exact = all_vecs @ q / (np.linalg.norm(all_vecs, axis=1) * np.linalg.norm(q))
    res = mem.recall(q, k=8, spread=False)      # similarity only: scores are the cosines
    order = np.argsort(-exact)[:8]
    assert res.ids.tolist() == order.tolist()
    assert np.allclose(res.scores, exact[order], atol=1e-5)
    assert list(res.origin) == ["seed"] * 8 and not res.partial and not res.fallback
    assert res.content[0] == mem.get(res.ids[0]).content[0]
    assert res.timings["total_ms"] > 0


def test_recall_finds_a_memory_by_its_own_vector_and_updates_access(mem):
    v = mem.get(17).vectors[0]
    before = mem.get(17)
    res = mem.recall(v, k=3)
    assert res.ids[0] == 17 and math.isclose(res.similarity[0], 1.0, abs_tol=1e-5)
    after = mem.get(17)
    assert after.access_count[0] == before.access_count[0] + 1
    assert after.last_access_ns[0] >= before.last_access_ns[0]


def test_recall_k_larger_than_the_space(eng):
    m = eng.space("small")
    m.remember(np.eye(DIM)[:3])
    res = m.recall(np.ones(DIM), k=10)
    assert sorted(res.ids.tolist()) == [0, 1, 2]


def test_forget_removes_from_get_recall_and_links(mem):
    v = mem.get(2).vectors[0]
    assert mem.forget([2]) == 1
    assert len(mem) == 59
    with pytest.raises(errors.UnknownIdError):
        mem.get(2)
    assert 2 not in mem.recall(v, k=60).ids.tolist()
    assert mem.neighbors(1)[0].tolist() == []          # 1 -> 2 is hidden
    mem.compact()
    assert mem.neighbors(1)[0].tolist() == []          # and dropped
    with pytest.raises(errors.UnknownIdError):
        mem.forget(2)


def test_link_scalars_arrays_broadcast_and_last_write_wins(mem):
    assert mem.link(10, [11, 12, 13], 0.25) == 3
    ids, w = mem.neighbors(10)
    assert ids.tolist() == [11, 12, 13] and np.allclose(w, 0.25)
    mem.link(10, 12, 1.0)
    ids, w = mem.neighbors(10)
    assert dict(zip(ids.tolist(), w.tolist()))[12] == 1.0
    before = mem.neighbors(10)
    edges = mem.compact()
    after = mem.neighbors(10)
    assert edges == mem.stats()["csr_edges"] and mem.stats()["pending_links"] == 0
    assert before[0].tolist() == after[0].tolist() and np.array_equal(before[1], after[1])
    assert mem.link([20, 21], [22, 23]) == 2                 # default weight 1
    assert mem.neighbors(20)[1].tolist() == [1.0]


def test_many_links_compact_automatically(eng):
    m = eng.space("dense")
    m.remember(np.random.default_rng(0).standard_normal((300, DIM)))
    rng = np.random.default_rng(1)
    src, dst = rng.integers(0, 300, 9000), rng.integers(0, 300, 9000)
    w = rng.uniform(0.01, 1.0, 9000).astype(np.float32)
    m.link(src, dst, w)
    expect = {}
    for s, d, x in zip(src.tolist(), dst.tolist(), w.tolist()):
        expect[(s, d)] = x
    assert m.stats()["csr_edges"] > 0                     # compaction ran
    for s in (0, 17, 299):
        ids, ws = m.neighbors(s)
        want = sorted((d, x) for (a, d), x in expect.items() if a == s)
        assert ids.tolist() == [d for d, _ in want]
        assert np.allclose(ws, [x for _, x in want])


def test_tables_grow_past_initial_capacity(eng):
    m = eng.space("growth")
    rng = np.random.default_rng(3)
    chunks = [rng.standard_normal((700, DIM)).astype(np.float32) for _ in range(5)]
    for i, c in enumerate(chunks):
        m.remember(c, content=[f"c{i}-{j}" for j in range(700)])
    st = m.stats()
    assert st["memories"] == 3500 and st["generations"]["nodes"] >= 2 and st["generations"]["emb_hot"] >= 2
    got = m.get(np.arange(3500))
    assert np.array_equal(got.vectors, np.vstack(chunks))
    assert got.content[2999] == "c4-199"


def test_node_table_is_64_byte_records_at_64_byte_aligned_addresses(mem):
    st = mem._store
    hot = st.views["nodes"]["hot"]
    assert hot.dtype.itemsize == 64
    assert hot.ctypes.data % 64 == 0
    for table in ("emb_hot", "emb_warm"):
        rows = st.views[table]["rows"]
        assert rows.ctypes.data % 64 == 0 and rows.strides[0] % 64 == 0


# ---- rejected calls change nothing ------------------------------------------------

BAD_CALLS = [
    ("wrong dimension", errors.DimensionError, lambda m: m.remember(np.ones((2, DIM + 1)))),
    ("NaN vector", errors.NonFiniteError, lambda m: m.remember(np.array([[np.nan] * DIM, [1.0] * DIM]))),
    ("inf vector", errors.NonFiniteError, lambda m: m.remember(np.full((1, DIM), np.inf))),
    ("empty batch", errors.EmptyBatchError, lambda m: m.remember(np.zeros((0, DIM)))),
    ("zero vector", errors.InvalidInputError, lambda m: m.remember(np.stack([np.ones(DIM), np.zeros(DIM)]))),
    ("3-D batch", errors.InvalidInputError, lambda m: m.remember(np.ones((1, 1, DIM)))),
    ("strings", errors.InvalidInputError, lambda m: m.remember(np.array([["a"] * DIM]))),
    ("content count", errors.InvalidInputError, lambda m: m.remember(np.ones((2, DIM)), content=["x"])),
    ("content type", errors.InvalidInputError, lambda m: m.remember(np.ones((1, DIM)), content=[5])),
    ("confidence > 1", errors.InvalidInputError, lambda m: m.remember(np.ones((1, DIM)), confidence=1.5)),
    ("confidence NaN", errors.NonFiniteError, lambda m: m.remember(np.ones((2, DIM)), confidence=[0.5, np.nan])),
    ("bad tier", errors.InvalidInputError, lambda m: m.remember(np.ones((1, DIM)), tier="frozen")),
    ("f16 overflow", errors.InvalidInputError, lambda m: m.remember(np.full((1, DIM), 1e6), tier="warm")),
    ("unknown id get", errors.UnknownIdError, lambda m: m.get([0, 999])),
    ("negative id", errors.UnknownIdError, lambda m: m.get(-1)),
    ("empty ids", errors.EmptyBatchError, lambda m: m.get([])),
    ("float ids", errors.InvalidInputError, lambda m: m.get([1.5])),
    ("unknown id forget", errors.UnknownIdError, lambda m: m.forget([3, 999])),
    ("unknown id link", errors.UnknownIdError, lambda m: m.link(0, 999, 0.5)),
    ("weight 0", errors.InvalidWeightError, lambda m: m.link(0, 5, 0.0)),
    ("weight > 1", errors.InvalidWeightError, lambda m: m.link([0, 1], [5, 6], [0.5, 1.5])),
    ("weight < 0", errors.InvalidWeightError, lambda m: m.link(0, 5, -0.2)),
    ("weight NaN", errors.NonFiniteError, lambda m: m.link(0, 5, float("nan"))),
    ("link lengths", errors.InvalidInputError, lambda m: m.link([0, 1], [2, 3, 4], 0.5)),
    ("query dim", errors.DimensionError, lambda m: m.recall(np.ones(DIM - 1))),
    ("query NaN", errors.NonFiniteError, lambda m: m.recall(np.full(DIM, np.nan))),
    ("query zero", errors.InvalidInputError, lambda m: m.recall(np.zeros(DIM))),
    ("k zero", errors.InvalidInputError, lambda m: m.recall(np.ones(DIM), k=0)),
    ("k float", errors.InvalidInputError, lambda m: m.recall(np.ones(DIM), k=2.5)),
]


@pytest.mark.parametrize("what,err,call", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_rejected_call_changes_nothing(mem, what, err, call):
    before = state(mem)
    with pytest.raises(err) as exc:
        call(mem)
    assert str(exc.value), "an error must say what is wrong"
    after = state(mem)
    assert after == before


def test_error_messages_say_what_to_fix(mem):
    with pytest.raises(errors.DimensionError, match=f"{DIM + 1} dimensions.*{DIM}"):
        mem.remember(np.ones(DIM + 1))
    with pytest.raises(errors.InvalidWeightError, match=r"\(0.0, 1.0\]"):
        mem.link(0, 1, 2.0)
    with pytest.raises(errors.UnknownIdError, match="999"):
        mem.get(999)
    # errors are also the builtin kinds callers already catch
    with pytest.raises(ValueError):
        mem.remember(np.ones(DIM + 1))
    with pytest.raises(KeyError):
        mem.get(999)


@pytest.mark.parametrize("name", ["ab", "A-space", "with.dot", "x" * 65, "spa ce", "", 5, None, "é-space"])
def test_bad_space_names_are_rejected(eng, name):
    with pytest.raises(errors.InvalidSpaceNameError, match="3-64"):
        eng.space(name)
    assert eng.spaces == []


def test_spaces_is_a_property_and_the_old_call_still_works_with_a_warning(eng):
    eng.space("second")
    eng.space("first")
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # the property itself warns about nothing
        assert eng.spaces == ["first", "second"]
    with pytest.warns(DeprecationWarning, match="eng.spaces, not eng.spaces()"):
        assert eng.spaces() == ["first", "second"]
    with engram.attach(eng.name) as reader, pytest.warns(DeprecationWarning):
        assert reader.spaces == ["first", "second"] and reader.spaces() == ["first", "second"]


@pytest.mark.parametrize("name", ["abc", "x" * 64, "a_b-c", "123"])
def test_good_space_names(eng, name):
    assert eng.space(name).name == name
    assert eng.space(name) is eng.space(name)


def test_use_after_close_is_a_clear_error():
    eng = engram.Engine(dim=DIM, workers=0)
    m = eng.space("closing")
    m.remember(np.ones(DIM))
    eng.close()
    eng.close()   # twice is fine
    for call in (lambda: m.remember(np.ones(DIM)), lambda: m.recall(np.ones(DIM)), lambda: m.get(0),
                 lambda: len(m), lambda: eng.space("other"), lambda: m.link(0, 0, 0.5)):
        with pytest.raises(errors.ClosedError, match="closed"):
            call()


@pytest.mark.parametrize("kwargs,err", [
    ({"dim": 0}, errors.InvalidInputError), ({"dim": -3}, errors.InvalidInputError),
    ({"dim": 1.5}, errors.InvalidInputError), ({"dim": 10**6}, errors.InvalidInputError),
    ({"workers": -1}, errors.InvalidInputError),
])
def test_bad_engine_arguments(kwargs, err):
    with pytest.raises(err):
        engram.Engine(**kwargs)


def test_recall_results_iterate_as_id_score_content(mem):
    res = mem.recall(mem.get(0).vectors[0], k=2)
    rows = list(res)
    assert len(rows) == len(res) == 2
    assert rows[0][0] == 0 and rows[0][2] == "hot 0"


def test_concurrent_recalls_and_remembers_from_threads(eng):
    """Recalls in several threads while another thread keeps remembering (and growing tables)."""
    import threading
    m = eng.space("threads")
    rng = np.random.default_rng(11)
    base = rng.standard_normal((200, DIM)).astype(np.float32)
    m.remember(base)
    failures = []

    def reader(seed):
        r = np.random.default_rng(seed)
        for _ in range(200):
            i = int(r.integers(0, 200))
            res = m.recall(base[i], k=1)
            if res.ids[0] != i:
                failures.append((i, res.ids.tolist()))

    def writer():
        for _ in range(20):
            m.remember(rng.standard_normal((150, DIM)).astype(np.float32) * 0.01 + 5.0)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(m) == 200 + 20 * 150
    assert m.get(np.arange(200)).access_count.sum() == 600


@pytest.mark.parametrize("tier", ["hot", "warm"])
def test_the_one_pass_vector_check_agrees_with_the_exact_one_at_its_edges(tier):
    """validate.vectors decides most batches by each row's sum of squares; rows whose squares
    leave float32's range either way, and each kind of bad row, get the exact checks' answer."""
    from engram import validate
    f16max = float(np.finfo(np.float16).max)
    big = 1e20 if tier == "hot" else f16max             # squares past float32's range (hot)
    ok = [np.full((2, DIM), 1e-30),                     # squares below float32's smallest value
          np.full((1, DIM), big), np.eye(DIM)[:3] * big,
          np.full((1, DIM), f16max if tier == "warm" else 3e38)]   # a norm past f16 with every value inside
    for a in ok:
        got = validate.vectors(a, DIM, f16=tier == "warm")
        assert np.array_equal(got, a.astype(np.float32))
    bad = [(np.vstack([np.ones((3, DIM)), np.full((1, DIM), np.nan)]), errors.NonFiniteError, "[3]"),
           (np.vstack([np.full((1, DIM), -np.inf), np.ones((1, DIM))]), errors.NonFiniteError, "[0]"),
           (np.vstack([np.ones((1, DIM)), np.zeros((1, DIM))]), errors.InvalidInputError, "[1]")]
    if tier == "warm":
        row = np.ones((2, DIM))
        row[1, 5] = 65505.0
        bad.append((row, errors.InvalidInputError, "[1]"))
    for a, err, rows in bad:
        with pytest.raises(err, match=re.escape(f"rows {rows}")):
            validate.vectors(a, DIM, f16=tier == "warm")
