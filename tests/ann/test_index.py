"""The approximate index (engram/recall/ann.py, engram/workers/indexer.py): a real usearch
index built by a real indexer process over real shared memory, read by the owner, a worker
and an attached process."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import engram
from engram.observe.attach import tools
from engram.recall.ann import AnnState, index_path
from engram.store.shm.names import EngineName, segments_of

from .helpers import indexed_space

DIM = 48
N = 4000
MIN_ROWS = 2000


def clustered(n: int, rng, centers: int = 40) -> np.ndarray:
    """Points around random unit centres (the spread of each point varies), as recall data is."""
    c = rng.standard_normal((centers, DIM)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    spread = rng.uniform(0.3, 1.2, (n, 1)).astype(np.float32) / np.sqrt(DIM)
    return c[rng.integers(0, centers, n)] + rng.standard_normal((n, DIM)).astype(np.float32) * spread


def exact_top(x: np.ndarray, q: np.ndarray, k: int, live=None) -> np.ndarray:
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    if live is not None:
        cos[~live] = -np.inf
    return np.argsort(-cos, kind="stable")[:k]


def state(space) -> AnnState:
    return AnnState.read(space._store.dir)


@pytest.fixture
def indexed():
    rng = np.random.default_rng(5)
    x = clustered(N, rng)
    with indexed_space("indexed", [(x, "hot")], DIM, MIN_ROWS) as (eng, sp):
        yield eng, sp, x, rng


class ScanSpy:
    """Counts the rows each exact scan call of the reader's kernel table reads (a re-scoring
    of the index's candidates reads one row per candidate)."""

    def __init__(self, monkeypatch, kern):
        self.rows = []
        for name in ("_topk", "_topk_until", "_rescore"):
            real = getattr(kern, name)

            def spy(metric, q, rows, *a, _real=real, **kw):
                self.rows.append(rows.shape[0])        # _rescore: the candidates' ids
                return _real(metric, q, rows, *a, **kw)
            monkeypatch.setattr(kern, name, spy)


def test_seeds_come_from_the_index_and_match_an_exact_scan(indexed, monkeypatch):
    eng, sp, x, rng = indexed
    st = state(sp)
    assert st.generation >= 1 and st.size == N and st.rows == (N, 0, 0)
    from engram.recall import audit
    monkeypatch.setattr(audit, "SAMPLE_EVERY", 1 << 30)     # no audit's exact scan meanwhile (the keeper's thread)
    spy = ScanSpy(monkeypatch, sp._owned.reader.kern)
    overlap = []
    for i in rng.integers(0, N, 40):
        q = x[i] + rng.standard_normal(DIM).astype(np.float32) * 0.05
        r = sp.recall(q, k=10, spread=False, budget_ms=None)
        overlap.append(len(set(r.ids.tolist()) & set(exact_top(x, q, 10).tolist())) / 10)
        # each result's score is its exact cosine from the stored row, not the index's estimate
        cos = (x[r.ids] @ q) / (np.linalg.norm(x[r.ids], axis=1) * np.linalg.norm(q))
        np.testing.assert_allclose(r.scores, cos, rtol=1e-4, atol=1e-5)
    assert np.mean(overlap) >= 0.95
    # nothing scanned the 4,000 indexed rows: only the index's candidates were scored
    assert spy.rows and max(spy.rows) <= 64


def test_a_new_memory_is_found_at_once_from_the_tail(indexed):
    eng, sp, x, rng = indexed
    q = rng.standard_normal(DIM).astype(np.float32)
    new = int(sp.remember(q[None, :])[0])
    st = state(sp)
    assert sum(st.rows) == N, "the index took the new row already: this test needs it in the tail"
    r = sp.recall(q, k=5, spread=False, budget_ms=None)
    assert int(r.ids[0]) == new and r.scores[0] == pytest.approx(1.0, abs=1e-5)
    assert len(set(r.ids.tolist())) == r.ids.shape[0]


def test_a_forgotten_memory_leaves_recall_at_once(indexed):
    eng, sp, x, rng = indexed
    q = x[17]
    top = sp.recall(q, k=5, spread=False, budget_ms=None).ids
    assert int(top[0]) == 17
    gen = state(sp).generation
    sp.forget([17, int(top[1])])
    again = sp.recall(q, k=5, spread=False, budget_ms=None).ids
    assert 17 not in again.tolist() and int(top[1]) not in again.tolist()
    assert state(sp).generation == gen       # still in the index: filtered, not rebuilt


def test_a_moved_vector_is_found_by_its_new_value(indexed):
    """Reconsolidation gives a memory a new row; the index still has the old vector."""
    eng, sp, x, rng = indexed
    far = -x[3] + rng.standard_normal(DIM).astype(np.float32)
    sp._store.rewrite_row(3, 0, far)
    r = sp.recall(far, k=3, spread=False, budget_ms=None)
    assert int(r.ids[0]) == 3 and r.scores[0] == pytest.approx(1.0, abs=1e-4)
    assert 3 not in sp.recall(x[3], k=3, spread=False, budget_ms=None).ids.tolist()[:1]
    assert eng.wait_for_index(120)   # taken into the index: replaced, not a second entry
    st = state(sp)
    assert st.size == N and st.rows[0] == N + 1
    assert int(sp.recall(far, k=1, spread=False, budget_ms=None).ids[0]) == 3


def test_the_index_takes_the_tail_and_drops_its_old_file(indexed):
    eng, sp, x, rng = indexed
    before = state(sp)
    old = index_path(EngineName.parse(eng.name), "indexed", before.generation, before.salt)
    assert os.path.exists(old)
    more = clustered(2500, rng)
    sp.remember(more)
    assert eng.wait_for_index(120)
    after = state(sp)
    assert after.generation > before.generation and after.size == N + 2500 and after.rows == (N + 2500, 0, 0)
    assert not os.path.exists(old)
    assert sp.stats()["index"]["tail"] == 0
    q = more[100]
    assert int(sp.recall(q, k=1, spread=False, budget_ms=None).ids[0]) == N + 100


def test_an_index_mostly_forgotten_is_built_anew(indexed):
    eng, sp, x, rng = indexed
    sp.forget(np.arange(0, N, 2))             # half of what is indexed
    assert eng.wait_for_index(120)
    st = state(sp)
    assert st.size == N // 2
    live = np.ones(N, bool)
    live[::2] = False
    q = x[1]
    r = sp.recall(q, k=10, spread=False, budget_ms=None)
    assert set(r.ids.tolist()) <= set(np.flatnonzero(live).tolist())
    assert len(set(r.ids.tolist()) & set(exact_top(x, q, 10, live).tolist())) >= 9


def test_a_small_space_has_no_index_and_none_can_be_turned_off():
    rng = np.random.default_rng(1)
    with engram.Engine(dim=DIM, workers=0, index_min_rows=MIN_ROWS) as eng:
        sp = eng.space("small")
        sp.remember(clustered(MIN_ROWS - 1, rng))
        assert eng.wait_for_index(60)
        assert state(sp).generation == 0 and sp.stats()["index"]["tail"] is None
    with engram.Engine(dim=DIM, workers=0, index_min_rows=None) as eng:
        assert eng._life.indexer is None
        assert eng.wait_for_index(1)              # nothing to wait for
        with pytest.raises(engram.errors.InvalidInputError, match="timeout"):
            eng.wait_for_index(-1)


def test_a_worker_reads_the_same_index_and_tail(indexed):
    eng, sp, x, rng = indexed
    with engram.Engine(dim=DIM, workers=1, routing="workers", index_min_rows=MIN_ROWS) as eng2:
        sp2 = eng2.space("indexed")
        sp2.remember(x)
        sp2.link(np.arange(0, 100), np.arange(100, 200), 0.9)
        assert eng2.wait_for_index(120) and state(sp2).size == N
        assert eng2.start_workers()
        q = rng.standard_normal(DIM).astype(np.float32)
        new = int(sp2.remember(q[None, :])[0])          # in the tail, not in the index
        sp2.forget([42])
        done = eng2.worker_stats()["completed"]
        r = sp2.recall(q, k=10, spread=False, budget_ms=None)
        assert eng2.worker_stats()["completed"] == done + 1, "the recall did not run in the worker"
        assert int(r.ids[0]) == new
        owner = sp2._owned.reader.similar(q, 10)
        assert r.ids.tolist() == owner.ids.tolist()
        r = sp2.recall(x[42], k=10, spread=True, budget_ms=None)    # (a loaded machine's queue eats budgets)
        assert 42 not in r.ids.tolist() and not r.fallback
        assert eng2.worker_stats()["completed"] == done + 2


def test_attach_tools_show_the_index_and_the_file(indexed):
    eng, sp, x, rng = indexed
    row = next(r for r in tools.list_engines() if r["engine"] == eng.name)
    ix = row["spaces"]["indexed"]["index"]
    assert ix["size"] == N and ix["tail"] == 0
    assert f"index {N:,} vectors, tail 0 rows" in tools.format_list([row])
    files = [h for h in tools.segment_headers(EngineName.parse(eng.name)) if h.get("kind") == "ann index (usearch)"]
    assert len(files) == 1 and files[0]["ok"] and files[0]["bytes"] > 0
    with engram.attach(eng.name) as att:
        r = att.space("indexed").recall(x[9], k=3, spread=False, budget_ms=None)
        assert int(r.ids[0]) == 9
    from engram.observe.metrics.segment import MetricsSegment
    seg = MetricsSegment.attach(EngineName.parse(eng.name))
    for _ in range(50):                       # the keeper sets the gauges every 0.2 s
        snap = tools.snapshot(EngineName.parse(eng.name), seg)
        line = next(ln for ln in tools.format_top(EngineName.parse(eng.name), snap, snap).splitlines()
                    if ln.startswith("indexed"))
        if line.split()[-2:] == [f"{N:,}", "0"]:
            break
        time.sleep(0.1)
    assert line.split()[-2:] == [f"{N:,}", "0"], line


def test_an_index_ahead_of_a_readers_snapshot_answers_within_the_snapshot(indexed):
    """A reader's snapshot may end before the rows the index covers (or a damaged directory
    may claim more): recall answers from what the snapshot holds, never past it."""
    eng, sp, x, rng = indexed
    st = state(sp)
    AnnState(st.generation, st.salt, (N + 10, 0, 0), st.size, 0, 0).publish(sp._store.dir)
    try:
        with engram.attach(eng.name) as att:
            r = att.space("indexed").recall(x[0], k=3, spread=False, budget_ms=None)
            assert int(r.ids[0]) == 0 and r.ids.max() < N
    finally:
        st.publish(sp._store.dir)


def test_closing_leaves_no_index_file():
    rng = np.random.default_rng(2)
    eng = engram.Engine(dim=DIM, workers=0, index_min_rows=MIN_ROWS)
    sp = eng.space("closing")
    sp.remember(clustered(N, rng))
    assert eng.wait_for_index(120)
    sp.remember(clustered(3000, rng))        # a run may be under way as it closes
    name = eng.name
    eng.close()
    assert not segments_of(EngineName.parse(name))


# ----------------------------------------------------------------- kept across restarts
def test_a_reopened_engine_reuses_its_saved_index(tmp_path):
    rng = np.random.default_rng(8)
    x = clustered(N, rng)
    with engram.Engine(tmp_path, dim=DIM, workers=0, index_min_rows=MIN_ROWS) as eng:
        sp = eng.space("kept")
        sp.remember(x)
        assert eng.wait_for_index(120)
    assert (tmp_path / "index" / "kept.usearch").exists()
    with engram.Engine(tmp_path, workers=0, index_min_rows=None) as eng:   # no indexer: only what was saved
        sp = eng.space("kept")
        st = state(sp)
        assert st.generation == 1 and st.size == N and st.rows == (N, 0, 0)
        assert int(sp.recall(x[11], k=1, spread=False, budget_ms=None).ids[0]) == 11


def test_a_damaged_saved_index_is_rebuilt_not_used(tmp_path, caplog):
    rng = np.random.default_rng(9)
    x = clustered(N, rng)
    with engram.Engine(tmp_path, dim=DIM, workers=0, index_min_rows=MIN_ROWS) as eng:
        eng.space("kept").remember(x)
        assert eng.wait_for_index(120)
    f = tmp_path / "index" / "kept.usearch"
    with open(f, "r+b") as fh:            # one flipped bit in the middle
        fh.seek(f.stat().st_size // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0x10]))
    with engram.Engine(tmp_path, workers=0, index_min_rows=MIN_ROWS) as eng:
        sp = eng.space("kept")
        assert "damaged" in caplog.text and "rebuilt in the background" in caplog.text
        assert eng.wait_for_index(120)
        st = state(sp)
        assert st.size == N and st.rows == (N, 0, 0)
        assert int(sp.recall(x[5], k=1, spread=False, budget_ms=None).ids[0]) == 5


def test_a_saved_index_covering_rows_the_tables_lack_is_refused(tmp_path, caplog):
    import json
    rng = np.random.default_rng(10)
    with engram.Engine(tmp_path, dim=DIM, workers=0, index_min_rows=MIN_ROWS) as eng:
        eng.space("kept").remember(clustered(N, rng))
        assert eng.wait_for_index(120)
    m = tmp_path / "index" / "kept.json"
    doc = json.loads(m.read_text())
    doc["rows"] = [N + 500, 0]
    m.write_text(json.dumps(doc))
    with engram.Engine(tmp_path, workers=0, index_min_rows=None) as eng:
        assert state(eng.space("kept")).generation == 0
        assert "covers rows" in caplog.text


KILLED = r'''
import sys, numpy as np, engram
path, dim, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(3)
eng = engram.Engine(path, dim=dim, workers=0, index_min_rows=1000)
sp = eng.space("killed")
x = rng.standard_normal((n, dim)).astype(np.float32)
sp.remember(x[: n // 2])
assert eng.wait_for_index(120)
eng.checkpoint()                          # the index is saved with this snapshot
sp.remember(x[n // 2:])                   # acknowledged, in the log only
np.save(sys.argv[4], x)
print("ready", flush=True)
sys.stdin.read()
'''


def kill_9_when_ready(script: str, *args) -> None:
    """Run ``script`` in a new interpreter until it prints "ready", then SIGKILL it."""
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
    finally:
        p.kill()
        p.wait()


def test_after_kill_9_the_saved_index_is_reused_and_the_logged_rows_are_its_tail(tmp_path):
    n = 3000
    kill_9_when_ready(KILLED, tmp_path / "db", DIM, n, tmp_path / "x.npy")
    x = np.load(tmp_path / "x.npy")
    with engram.Engine(tmp_path / "db", workers=0, index_min_rows=None) as eng:
        sp = eng.space("killed")
        st = state(sp)
        assert st.generation == 1 and st.rows == (n // 2, 0, 0) and len(sp) == n
        for i in (7, n // 2 + 7, n - 1):      # indexed, and in the tail: each found
            assert int(sp.recall(x[i], k=1, spread=False, budget_ms=None).ids[0]) == i


def test_readers_in_other_processes_follow_the_index_through_generations():
    """Attached processes recall while the owner remembers and the index is replaced under
    them, generation after generation: each answer has the memory it asked for, none fails."""
    import subprocess
    import sys
    rng = np.random.default_rng(12)
    reader = r'''
import sys, time, numpy as np, engram
att = engram.attach(sys.argv[1]); sp = att.space("moving")
x = np.load(sys.argv[2]); found = asked = 0
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    n = len(sp)
    if n == 0:
        continue
    i = int(np.random.randint(0, min(n, x.shape[0])))
    r = sp.recall(x[i], k=3, spread=False, budget_ms=None)
    asked += 1; found += int(r.ids[0]) == i
print(asked, found, flush=True)
'''
    x = clustered(N + 6 * 1500, rng)
    with engram.Engine(dim=DIM, workers=0, index_min_rows=MIN_ROWS) as eng:
        sp = eng.space("moving")
        sp.remember(x[:N])
        assert eng.wait_for_index(120)
        path = f"/tmp/engram-moving-{os.getpid()}.npy"
        np.save(path, x)
        try:
            procs = [subprocess.Popen([sys.executable, "-c", reader, eng.name, path, "12"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2)]
            gens = {state(sp).generation}
            for a in range(N, x.shape[0], 1500):
                sp.remember(x[a:a + 1500])
                assert eng.wait_for_index(120)
                gens.add(state(sp).generation)
            outs = [p.communicate(timeout=120) for p in procs]
        finally:
            os.unlink(path)
        assert len(gens) >= 5, f"the index was replaced {len(gens) - 1} times; the test needs several"
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
            asked, found = map(int, out.split())
            # the index is approximate: a stored vector's own memory is its top hit nearly always
            # (a reader that failed, or lost the new memories, would be far below this)
            assert asked > 50 and found >= 0.99 * asked, (asked, found)


def test_a_failed_indexer_run_keeps_the_last_index_and_is_retried(monkeypatch):
    from engram.workers import indexer
    rng = np.random.default_rng(13)
    x = clustered(N, rng)
    monkeypatch.setattr(indexer, "PROGRAM", (indexer.sys.executable, "-c", "import sys; sys.exit(3)"))
    monkeypatch.setattr(indexer, "MAX_WAIT_S", 0.5)
    with engram.Engine(dim=DIM, workers=0, index_min_rows=MIN_ROWS) as eng:
        sp = eng.space("failing")
        sp.remember(x)
        keeper = eng._life.indexer
        for _ in range(100):
            if keeper.failures:
                break
            time.sleep(0.1)
        assert keeper.failures >= 1 and state(sp).generation == 0
        assert int(sp.recall(x[77], k=1, spread=False, budget_ms=None).ids[0]) == 77     # exact scan meanwhile
        monkeypatch.setattr(indexer, "PROGRAM", (indexer.sys.executable, "-m", "engram.workers.indexrun"))
        assert keeper.wait_idle(120) and state(sp).size == N


def test_a_reader_whose_index_file_is_gone_scans_exactly(indexed, caplog):
    eng, sp, x, rng = indexed
    st = state(sp)
    os.unlink(index_path(EngineName.parse(eng.name), "indexed", st.generation, st.salt))
    with engram.attach(eng.name) as att:
        r = att.space("indexed").recall(x[31], k=3, spread=False, budget_ms=None)
        assert int(r.ids[0]) == 31
    assert "could not be opened" in caplog.text and "scanning exactly" in caplog.text


@pytest.mark.parametrize("bad", [{"index_min_rows": 0}, {"index_min_rows": -5}, {"index_min_rows": "many"},
                                 {"index_threads": 0}, {"index_threads": 2.5}])
def test_bad_index_settings_are_refused(bad):
    with pytest.raises(engram.errors.InvalidInputError, match="index_"):
        engram.Engine(dim=DIM, workers=0, **bad)


def test_the_search_widens_as_the_index_grows():
    from engram.recall.ann import MAX_EXPANSION, expansion
    widths = [expansion(n, 64) for n in (1_000, 100_000, 300_000, 1_000_000, 100_000_000)]
    assert widths[0] == widths[1] == 64 and widths[1] < widths[2] < widths[3] < widths[4] == MAX_EXPANSION
    assert expansion(1_000, 700) == 700          # never fewer than the candidates asked for


def test_a_budgeted_search_is_as_broad_as_fits_the_time_left():
    import time as _time

    from engram.recall.ann import EXPANSION, SEARCH_SHARE, SearchCost, expansion
    cost = SearchCost()
    full = expansion(1_000_000, 64)
    soon = _time.perf_counter_ns() + 10_000_000               # 10 ms left
    assert cost.breadth(1_000_000, 64, soon) == full          # nothing measured yet: the full breadth
    cost.observe(254, 254 * 28_000)                           # 28 us per unit, as at 1M x 768 here
    got = cost.breadth(1_000_000, 64, _time.perf_counter_ns() + 10_000_000)
    assert EXPANSION <= got < full and abs(got - SEARCH_SHARE * 10e6 / 28_000) < 5
    assert cost.breadth(1_000_000, 64, None) == full          # no budget: as broad as the index wants
    assert cost.breadth(1_000_000, 64, _time.perf_counter_ns()) == EXPANSION    # no time left: the floor
    cost.observe(64, 64 * 2_000)                              # faster now: the average follows
    assert cost.breadth(1_000_000, 64, _time.perf_counter_ns() + 10_000_000) > got


def test_a_budgeted_recall_searches_the_index_within_its_share(indexed, monkeypatch):
    from engram.recall import ann
    monkeypatch.setattr(ann, "EXPANSION_AT", 1_000)            # as if the index were large: a broad search
    eng, sp, x, rng = indexed
    view = sp._owned.reader.ann
    full = ann.expansion(N, 64)
    sp.recall(x[3], k=10, spread=False, budget_ms=None)
    assert view.index.expansion_search == full > 64 and view.cost.ns_per_unit > 0    # every search is measured
    view.cost.ns_per_unit = 1e9                                # a second per unit: nothing fits the budget
    r = sp.recall(x[3], k=10, spread=False, budget_ms=10)
    assert int(r.ids[0]) == 3 and view.index.expansion_search == ann.EXPANSION
