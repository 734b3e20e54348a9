"""Engine(path=...): snapshots written by save()/close() and loaded at start."""
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import engram
from engram import errors
from engram.errors import SnapshotError
from engram.store import snapfile

DIM = 12


def fill(eng):
    rng = np.random.default_rng(2)
    m = eng.space("kept")
    m.remember(rng.standard_normal((2500, DIM)), content=[f"k{i}" for i in range(2500)], confidence=0.75)
    m.remember(rng.standard_normal((10, DIM)), tier="warm")
    m.link(0, [1, 2, 3], [0.2, 0.4, 0.6])
    m.link(5, 6)                 # left in the delta log: save compacts it
    m.forget([2, 7])
    m.recall(m.get(9).vectors[0], k=1)
    eng.space("second").remember(np.ones((2, DIM)))
    return m


def observe(m):
    ids = [i for i in range(m.stats()["ids_issued"]) if i not in (2, 7)]
    g = m.get(ids)
    return (len(m), g.vectors.tobytes(), g.content, g.confidence.tobytes(), g.access_count.tobytes(),
            g.tier, m.neighbors(0)[0].tolist(), m.neighbors(0)[1].tolist(), m.neighbors(5)[0].tolist())


def test_round_trip_keeps_everything(tmp_path):
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        m = fill(eng)
        recalled = m.recall(np.ones(DIM), k=7).ids.tolist()   # recall updates access counts...
        before = observe(m)                                     # ...which must survive too
    snap = snapfile.newest(tmp_path)
    assert [s.name for s in snap.spaces] == ["kept", "second"] and snap.dim == DIM
    snap.close()
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        assert eng.spaces == ["kept", "second"]
        m = eng.space("kept")
        assert observe(m) == before
        assert m.recall(np.ones(DIM), k=7).ids.tolist() == recalled
        with pytest.raises(errors.UnknownIdError):
            m.get(2)
        assert m.remember(np.ones(DIM)).tolist() == [2510]     # ids continue, never reused


def test_one_engine_per_path(tmp_path):
    with engram.Engine(path=tmp_path, dim=DIM, workers=0), pytest.raises(SnapshotError, match="in use"):
        engram.Engine(path=tmp_path, dim=DIM, workers=0)
    engram.Engine(path=tmp_path, dim=DIM, workers=0).close()   # free again after close


def test_an_engine_never_closed_is_saved_at_exit_with_a_warning(tmp_path):
    """A script that forgets close() (default workers, which a recall starts) loses nothing:
    the engine is saved as the interpreter exits, and says so on stderr."""
    code = textwrap.dedent("""
        import sys, numpy as np, engram
        eng = engram.Engine(path=sys.argv[1], dim=6)
        m = eng.space("unclosed")
        ids = m.remember(np.eye(6), content=[f"m{i}" for i in range(6)])
        m.link(ids[0], ids[1:3], [0.5, 0.25])
        m.recall(np.eye(6)[2], k=2)
        print(eng.name, flush=True)
    """)                                  # ...and exits without eng.close()
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    name = p.stdout.strip()
    assert f"Engine {name} (path {tmp_path}) was not closed; saving it at exit" in p.stderr, p.stderr
    from engram.store.shm import EngineName, segments_of, semaphores_of
    assert not segments_of(EngineName.parse(name)) and not semaphores_of(EngineName.parse(name))
    with engram.Engine(path=tmp_path, workers=0) as eng:       # no dim: it is read from the snapshot
        assert eng.dim == 6 and eng.spaces == ["unclosed"]
        m = eng.space("unclosed")
        assert len(m) == 6 and m.get(range(6)).content == [f"m{i}" for i in range(6)]
        assert m.neighbors(0)[0].tolist() == [1, 2]
        assert m.get(2).access_count.tolist() == [1]           # the recall's access was saved too


def test_reopening_with_another_dim_is_refused_and_names_the_stored_one(tmp_path):
    with engram.Engine(path=tmp_path, dim=6, workers=0) as eng:
        eng.space("six").remember(np.eye(6))
    with pytest.raises(errors.DimensionError) as info:
        engram.Engine(path=tmp_path, dim=8, workers=0)
    assert str(info.value) == (f"{tmp_path} holds memories of dimension 6, not 8: open it without dim "
                               "(it is read from the data) or with dim=6")
    with engram.Engine(path=tmp_path, workers=0) as eng:       # refused: nothing changed
        assert eng.dim == 6 and len(eng.space("six")) == 6


def test_a_path_in_use_names_the_process_that_holds_it(tmp_path):
    code = textwrap.dedent("""
        import sys, time, engram
        eng = engram.Engine(path=sys.argv[1], dim=4, workers=0)
        print("open", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "open"
        with pytest.raises(SnapshotError, match=rf"{tmp_path} is in use by another running engram.Engine "
                                                rf"\(pid {p.pid}\)"):
            engram.Engine(path=tmp_path, workers=0)
    finally:
        p.kill()
        p.wait(timeout=30)


def test_dimension_mismatch_is_refused_and_changes_nothing(tmp_path):
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        fill(eng)
    before = (tmp_path / "CURRENT").read_text()
    with pytest.raises(errors.DimensionError, match=f"dim={DIM}"):
        engram.Engine(path=tmp_path, dim=DIM + 1, workers=0)
    assert (tmp_path / "CURRENT").read_text() == before
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        assert len(eng.space("kept")) == 2508


def test_damaged_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "CURRENT").write_text("{not json")
    with pytest.raises(SnapshotError, match="damaged"):
        engram.Engine(path=tmp_path, dim=DIM, workers=0)


def test_save_needs_a_path():
    with engram.Engine(dim=DIM, workers=0) as eng, pytest.raises(errors.InvalidInputError, match="path"):
        eng.save()


def test_a_killed_owner_loses_nothing_it_acknowledged(tmp_path):
    code = textwrap.dedent("""
        import sys, time, numpy as np, engram
        eng = engram.Engine(path=sys.argv[1], dim=4, workers=0)
        m = eng.space("crash")
        m.remember(np.ones((10, 4)))
        eng.save()
        m.remember(np.ones((5, 4)))      # not in a snapshot: in the log
        print("saved", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "saved"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    with engram.Engine(path=tmp_path, dim=4, workers=0) as eng:   # the lock died with the process
        assert len(eng.space("crash")) == 15
        assert eng.recovery["replayed"] == 1 and eng.recovery["snapshot_lsn"] == 2


def test_snapshots_are_checked_against_the_records_they_keep(tmp_path):
    from engram.layout import PERSISTED_HASH
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        fill(eng)
    snap = snapfile.newest(tmp_path)
    assert int(snap.record_hash, 16) == PERSISTED_HASH       # node records only: boards and rings may change
    other = f"0x{PERSISTED_HASH ^ 1:016x}"                    # written by an engram with other node records
    snapfile.write(tmp_path, snap.lsn, snap.dim, other, snap.spaces)
    snap.close()
    with pytest.raises(errors.LayoutMismatchError, match="node records"):
        engram.Engine(path=tmp_path, dim=DIM, workers=0)


def test_settings_are_kept_with_the_snapshot(tmp_path):
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        m = fill(eng)
        recall = m.configure_recall(mode="ppr", fan="both", spread_weight=0.6, max_depth=3, priming=True)
        inter = m.configure_interference(proactive=True, threshold=0.95)
        recon = m.configure_reconsolidation(opens_after_s=60.0, history=3)
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        m = eng.space("kept")
        assert m.configure_recall() == recall
        assert m.configure_interference() == inter
        assert m.configure_reconsolidation() == recon
        assert eng.space("second").configure_recall() == engram.RecallConfig()   # untouched: defaults
