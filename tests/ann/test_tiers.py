"""Tiers: hot (f32), warm (f16) and cold (int8 with a scale per row, file-backed with a path),
memories moved between them by Space.migrate and by the background tier keeper; moves are
logged, so a crash keeps them; readers in other processes and the workers find cold memories."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import engram
from engram.errors import InvalidInputError, UnknownIdError
from engram.kernels import reference
from engram.store import image
from engram.store import rows as codec
from tests.ann.test_index import clustered, exact_top, kill_9_when_ready, state
from tests.metrics.test_metrics import sample, scrape

DIM = 48
COLD = codec.TIER_COLD


def vectors(n, seed=0):
    return clustered(n, np.random.default_rng(seed), centers=20).astype(np.float32)


def test_cold_rows_decode_close_to_the_vector_and_scan_like_the_oracle():
    x = vectors(500) * np.float32(3.0)
    stored, scale = codec.encode(x, COLD)
    assert stored.dtype == np.int8 and scale.dtype == np.float32 and np.abs(stored).max() == 127
    back = codec.decode(stored, scale)
    assert (np.abs(back - x) <= scale[:, None] / 2 + 1e-6).all()     # half a step at most
    again, again_scale = codec.encode(x, COLD)                       # replay re-creates the same bytes
    assert np.array_equal(again, stored) and np.array_equal(again_scale, scale)
    q = x[3] + np.float32(0.01)
    kern = engram.kernels.backend()
    idx, sc = kern.cosine_topk(q, stored, 10, norms=codec.norms(stored))
    ref_sc_all = reference.scores("cosine", q, back)          # the numpy oracle, on the decoded vectors
    ref_idx = np.argsort(-ref_sc_all, kind="stable")[:10]
    ref_sc = ref_sc_all[ref_idx]
    assert idx.tolist() == ref_idx.tolist() and np.allclose(sc, ref_sc, atol=1e-5)


@pytest.fixture
def space():
    x = vectors(2000)
    with engram.Engine(dim=DIM, workers=0, index_min_rows=None) as eng:
        sp = eng.space("tiers")
        sp.remember(x)
        yield eng, sp, x


def test_migrated_memories_are_recalled_from_their_new_tier(space):
    eng, sp, x = space
    assert sp.migrate(np.arange(0, 1500), "cold") == 1500
    assert sp.migrate(np.arange(1000, 1200), "warm") == 200
    assert sp.migrate(np.arange(1000, 1200), "warm") == 0          # there already
    got = sp.get([0, 1100, 1700])
    assert got.tier == ["cold", "warm", "hot"]
    assert np.abs(got.vectors - x[[0, 1100, 1700]]).max() < 0.02
    for i in (5, 1100, 1999):
        r = sp.recall(x[i], k=10, spread=False, budget_ms=None)
        assert int(r.ids[0]) == i
        cold_vectors = sp.get(np.arange(2000)).vectors     # as stored: the scan ranks these exactly
        assert r.ids.tolist() == exact_top(cold_vectors, x[i], 10).tolist()
    stats = sp.stats()
    assert stats["cold_rows"] == 1500 and len(sp) == 2000


def test_bad_migrations_are_refused_and_change_nothing(space):
    eng, sp, x = space
    sp.forget([7])
    before = sp.get([1, 2]).tier
    with pytest.raises(InvalidInputError, match="tier must be"):
        sp.migrate([1, 2], "frozen")
    with pytest.raises(UnknownIdError):
        sp.migrate([1, 7], "cold")          # 7 was forgotten: all or none
    with pytest.raises(UnknownIdError):
        sp.migrate([1, 10 ** 6], "cold")
    assert sp.get([1, 2]).tier == before == ["hot", "hot"]
    big = np.full((1, DIM), 1e6, np.float32)
    (i,) = sp.remember(big)
    with pytest.raises(InvalidInputError, match="float16 range"):
        sp.migrate([i], "warm")
    assert sp.get([i]).tier == ["hot"]
    assert sp.migrate([i], "cold") == 1 and np.allclose(sp.get([i]).vectors, big, rtol=1e-2)


def test_cold_table_is_a_file_in_the_path_and_leaves_with_the_engine(tmp_path):
    x = vectors(300)
    cold = tmp_path / "db" / "cold"
    (tmp_path / "db").mkdir()
    with engram.Engine(tmp_path / "db", dim=DIM, workers=0, index_min_rows=None) as eng:
        sp = eng.space("files")
        sp.remember(x, tier="cold")
        files = os.listdir(cold)
        assert len(files) == 1 and "emb_cold" in files[0]
        assert os.stat(cold / files[0]).st_size > 300 * DIM          # rows live there, not in /dev/shm
        assert not any("emb_cold" in f for f in os.listdir("/dev/shm") if eng.name in f)
        from engram.observe.attach import tools
        from engram.store.shm.names import EngineName
        listed = [r for r in tools.segment_headers(EngineName.parse(eng.name)) if r["name"].startswith(str(cold))]
        assert [(r["ok"], r["kind"], r["count"]) for r in listed] == [(True, "emb_cold", 300)]   # engram inspect
        leftover = cold / "eg.0.1.dead.files.emb_cold.g0.0000000000000000"
        leftover.write_bytes(b"x")               # as a killed run leaves it
    assert os.listdir(cold) == [leftover.name]          # its own table went at close
    with engram.Engine(tmp_path / "db", workers=0, index_min_rows=None) as eng:
        assert [f for f in os.listdir(cold) if "dead" in f] == []  # cleared at open
        assert eng.space("files").get([0]).tier == ["cold"]


MIGRATING = r'''
import sys, numpy as np, engram
path, dim = sys.argv[1], int(sys.argv[2])
x = np.load(sys.argv[3])
eng = engram.Engine(path, dim=dim, workers=0, index_min_rows=None)
sp = eng.space("crash")
sp.remember(x[:600])
eng.checkpoint()                          # the snapshot holds these, all hot
sp.migrate(np.arange(0, 400), "cold")     # logged only
sp.migrate(np.arange(100, 150), "warm")
sp.remember(x[600:], tier="cold")
np.save(sys.argv[4], sp.get(np.arange(len(x))).vectors)
print("ready", flush=True)
sys.stdin.read()
'''


def test_moves_survive_kill_9_and_replay_the_same_rows(tmp_path):
    x = vectors(800)
    np.save(tmp_path / "x.npy", x)
    kill_9_when_ready(MIGRATING, tmp_path / "db", DIM, tmp_path / "x.npy", tmp_path / "before.npy")
    before = np.load(tmp_path / "before.npy")
    for reopen in range(2):                 # replayed from the log, then from the snapshot close wrote
        with engram.Engine(tmp_path / "db", workers=0, index_min_rows=None) as eng:
            sp = eng.space("crash")
            got = sp.get(np.arange(800))
            assert got.tier[:100] == ["cold"] * 100 and got.tier[100:150] == ["warm"] * 50
            assert got.tier[400:600] == ["hot"] * 200 and got.tier[600:] == ["cold"] * 200
            assert np.array_equal(got.vectors, before), f"reopen {reopen}: the vectors differ from before the crash"
            assert int(sp.recall(x[650], k=1, spread=False, budget_ms=None).ids[0]) == 650


def test_a_crafted_cold_scale_is_refused():
    x = vectors(10)
    with engram.Engine(dim=DIM, workers=0, index_min_rows=None) as eng:
        sp = eng.space("crafted")
        sp.remember(x, tier="cold")
        arrs = {k: np.array(v) for k, v in image.capture(sp._store).items()}
    assert image.check(arrs, DIM) is None
    arrs["emb_cold_row_scale"][3] = -1.0
    assert "row scale" in image.check(arrs, DIM)
    del arrs["emb_cold_rows"]
    assert "no rows" in image.check(arrs, DIM)


READER = r'''
import sys, json, numpy as np, engram
att = engram.attach(sys.argv[1]); sp = att.space("shared")
q = np.load(sys.argv[2])
r = sp.recall(q, k=5, spread=False, budget_ms=None)
g = sp.get(r.ids[:1])
print(json.dumps({"ids": r.ids.tolist(), "tier": g.tier, "v": g.vectors[0].tolist()}))
'''


def test_other_processes_and_workers_read_cold_memories(tmp_path):
    x = vectors(1500)
    with engram.Engine(tmp_path / "db", dim=DIM, workers=1, routing="workers", index_min_rows=None) as eng:
        sp = eng.space("shared")
        sp.remember(x)
        far = int(np.argmin(x @ x[42]))          # found only by spreading along the link
        sp.link([42], [far], 1.0)
        sp.migrate(np.arange(0, 1500), "cold")
        np.save(tmp_path / "q.npy", x[42])
        out = subprocess.run([sys.executable, "-c", READER, eng.name, str(tmp_path / "q.npy")], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        import json
        got = json.loads(out.stdout)
        assert got["ids"][0] == 42 and got["tier"] == ["cold"]
        assert np.array_equal(np.array(got["v"], np.float32), sp.get([42]).vectors[0])
        assert eng.start_workers()
        done = eng.worker_stats()["completed"]
        r = sp.recall(x[42], k=200, spread=True, budget_ms=None)
        assert eng.worker_stats()["completed"] == done + 1, "the recall did not run in the worker"
        reached = dict(zip(r.ids.tolist(), r.hops.tolist()))
        assert int(r.ids[0]) == 42 and reached.get(far, 0) == 1     # cold seeds; the association reached


def test_the_tier_keeper_moves_idle_memories_cold_and_recalled_ones_back(tmp_path):
    x = vectors(1000)
    now = [10 ** 18]
    cfg = engram.TieringConfig(cold_after_s=3600, warm_after_access_s=60, interval_s=3600, batch=300)
    with engram.Engine(tmp_path / "db", dim=DIM, workers=0, index_min_rows=None, tiering=cfg) as eng:
        sp = eng.space("kept")
        sp.clock = lambda: now[0]
        sp.remember(x)
        keeper = eng._life.tiering
        assert keeper.run_once() == {"cold": 0, "warm": 0}          # nothing idle yet
        now[0] += 1800 * 10 ** 9
        sp.recall(x[5], k=3, spread=False, budget_ms=None)           # 5 (and its neighbours) were recalled
        recalled = sp.recall(x[5], k=3, spread=False, budget_ms=None).ids.tolist()
        now[0] += 1900 * 10 ** 9                                   # the rest idle 3,700 s, those 1,900 s
        assert keeper.run_once() == {"cold": 1000 - len(recalled), "warm": 0}
        assert sp.get(recalled).tier == ["hot"] * len(recalled) and sp.get([999]).tier == ["cold"]
        sp.recall(x[999], k=1, spread=False, budget_ms=None)         # recalled: comes back
        moved = keeper.run_once()
        assert moved["warm"] >= 1 and sp.get([999]).tier == ["warm"]
        srv = engram.serve_metrics(eng)
        try:
            f = scrape(srv.url)
        finally:
            srv.close()
        tiers = sp.get(np.arange(1000)).tier
        for t in ("hot", "warm", "cold"):
            assert sample(f, "engram_tier_memories", "engram_tier_memories", space="kept", tier=t) == tiers.count(t)
        assert sample(f, "engram_tier_migrations", "engram_tier_migrations_total", space="kept",
                      tier="cold") == 1000 - len(recalled)
    with engram.Engine(tmp_path / "db", workers=0, index_min_rows=None) as eng:
        assert eng.space("kept").get(np.arange(1000)).tier == tiers


def test_bad_tiering_settings_are_refused():
    with pytest.raises(InvalidInputError, match="warm_after_access_s"):
        engram.TieringConfig(cold_after_s=60, warm_after_access_s=60).check()
    with pytest.raises(InvalidInputError, match="tiering must be"):
        engram.Engine(dim=8, workers=0, tiering="yes")


def test_the_index_takes_moved_memories_back_without_a_rebuild():
    x = vectors(4000, seed=2)
    with engram.Engine(dim=DIM, workers=0, index_min_rows=2000) as eng:
        sp = eng.space("indexed")
        sp.remember(x)
        keeper = eng._life.indexer
        assert keeper.wait_idle(120)
        first = state(sp)
        sp.migrate(np.arange(0, 3000), "cold")          # 75% of the indexed rows now dead
        assert keeper.due(sp._store) == (first.rows, False), "a move should extend the index, not rebuild it"
        assert keeper.wait_idle(120)
        after = state(sp)
        assert after.size == 4000 and after.rows == (4000, 0, 3000)
        for i in (10, 2999, 3500):
            r = sp.recall(x[i], k=10, spread=False, budget_ms=None)
            assert int(r.ids[0]) == i


def test_a_daemon_moves_idle_memories_cold_and_engram_list_shows_it(tmp_path):
    import time

    from engram.observe.attach import tools
    from tests.daemon.conftest import DIM as DAEMON_DIM
    from tests.daemon.conftest import Daemon

    d = Daemon(tmp_path / "data", "--cold-after-s", "1", "--index-min-rows", "0")
    try:
        sp = engram.Client(d.url).space("default")
        sp.remember(np.random.default_rng(1).standard_normal((50, DAEMON_DIM)).astype(np.float32))
        deadline = time.monotonic() + 60       # the keeper looks every 10 s
        while time.monotonic() < deadline:
            row = next(r for r in tools.list_engines() if r["engine"] == d.engine)
            tiers = row["spaces"]["default"]["tiers"]
            if tiers["cold"] == 50:
                break
            time.sleep(0.5)
        assert tiers == {"hot": 0, "warm": 0, "cold": 50}
        assert "cold 50" in tools.format_list([row])
        assert sp.get([3]).tier == ["cold"]
    finally:
        assert d.stop() == 0
    assert not any(f.name.startswith("eg.") for f in (tmp_path / "data" / "cold").iterdir())


FILLING = r'''
import sys, numpy as np, engram
from engram.errors import StorageFullError
eng = engram.Engine(sys.argv[1], dim=200, workers=0, index_min_rows=None, checkpoint_mb=1024, log_segment_mb=4)
sp = eng.space("filling")
rng = np.random.default_rng(1)
acked = 0
try:   # the second batch grows the table at once (no copy to fail first) and then outgrows the disk
    for n in (500, 25000):
        sp.remember(rng.standard_normal((n, 200)).astype(np.float32), tier="cold")
        acked += n
except StorageFullError as e:
    print("full", acked, len(sp), str(e).replace("\n", " "), flush=True)
'''


def test_a_full_disk_under_the_cold_tier_is_an_error_not_sigbus(tmp_path):
    """The cold table is a sparse file written through its mapping: without disk blocks
    allocated first, a full disk would kill the owner with SIGBUS."""
    import uuid
    mnt = tmp_path / "db" / "cold"          # a 6 MiB disk under the cold tier alone; the log has room
    mnt.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", f"engram-{uuid.uuid4().hex[:8]}", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = subprocess.run([sys.executable, "-c", FILLING, str(tmp_path / "db")], capture_output=True, text=True,
                             timeout=300)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    assert out.returncode != -7, "the owner died of SIGBUS"
    words = out.stdout.split()
    assert words[:1] == ["full"], out.stdout + out.stderr
    acked, held = int(words[1]), int(words[2])
    assert acked == held > 0 and "no room" in out.stdout


def test_a_relative_path_keeps_its_cold_tier_where_other_processes_find_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = vectors(100)
    with engram.Engine("db", dim=DIM, workers=0, index_min_rows=None) as eng:
        sp = eng.space("shared")
        sp.remember(x, tier="cold")
        np.save(tmp_path / "q.npy", x[42])
        out = subprocess.run([sys.executable, "-c", READER, eng.name, str(tmp_path / "q.npy")], capture_output=True,
                             text=True, timeout=120, cwd="/")
        assert out.returncode == 0, out.stderr
        assert '"tier": ["cold"]' in out.stdout and sp.get([0]).tier == ["cold"]
