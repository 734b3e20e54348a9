"""Shared memory across real processes: attach, read-only, growth under a
reader, cleanup at exit and after a crash, and refusal of foreign layouts."""
import os
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import engram
from engram import errors
from engram.store.shm import EngineName, segments_of

DIM = 16


def run_py(code: str, *args, timeout=60, check=True):
    """Run python code in a fresh interpreter; returns CompletedProcess."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"child failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def shm_names(engine_name):
    return segments_of(EngineName.parse(engine_name))


def test_segments_are_private_and_unguessable():
    with engram.Engine(dim=DIM, workers=0) as a, engram.Engine(dim=DIM, workers=0) as b:
        a.space("alpha")
        b.space("alpha")
        names = shm_names(a.name)
        assert names and all(n.startswith(f"/{a.name}.") for n in names)
        for n in names:
            mode = stat.S_IMODE(os.stat("/dev/shm" + n).st_mode)
            assert mode == 0o600, f"{n} has mode {oct(mode)}"
        ta, tb = EngineName.parse(a.name).token, EngineName.parse(b.name).token
        assert ta != tb and len(ta) == 16 and int(ta, 16) >= 0


def test_second_process_attaches_read_only_and_sees_writes():
    with engram.Engine(dim=DIM, workers=0) as eng:
        m = eng.space("shared")
        rng = np.random.default_rng(5)
        v = rng.standard_normal((50, DIM)).astype(np.float32)
        m.remember(v, content=[f"item {i}" for i in range(50)])
        m.link(3, [4, 5], [0.5, 0.9])
        q = v[10] + 0.01
        want = m.recall(q, k=5).ids.tolist()
        out = run_py("""
            import sys, numpy as np, engram
            from engram import errors
            a = engram.attach(sys.argv[1])
            print(a.spaces)
            s = a.space("shared")
            g = s.get([0, 49])
            print(len(s), g.content, float(g.vectors[1, 0]))
            q = np.array([float(x) for x in sys.argv[2].split(",")], np.float32)
            print(s.recall(q, k=5).ids.tolist())
            print(s.neighbors(3)[0].tolist())
            try:
                s._reader.store.reserve("nodes", 1)
            except errors.ReadOnlyError as e:
                print("readonly", e)
            try:
                s._reader.store.hot()["confidence"][0] = 0.1
            except ValueError:
                print("numpy refuses writes")
        """, eng.name, ",".join(map(repr, q.tolist()))).stdout.splitlines()
        assert out[0] == "['shared']"
        assert out[1] == f"50 ['item 0', 'item 49'] {float(v[49, 0])}"
        assert out[2] == str(want)
        assert out[3] == "[4, 5]"
        assert out[4].startswith("readonly") and "read-only" in out[4]
        assert out[5] == "numpy refuses writes"
        assert m.get(0).confidence[0] == 1.0     # the reader wrote nothing


def test_tables_grow_while_a_reader_is_attached():
    """A reader polls while the owner grows every table many times over. The reader says
    when it has attached and whenever it sees more rows; the owner grows the tables by
    the next batch only once the reader has seen the last, so the reader polls through
    every growth step, each one while the next batch is being written."""
    with engram.Engine(dim=DIM, workers=0) as eng:
        m = eng.space("growing")
        m.remember(np.full((1, DIM), 1.0, np.float32), content=["row 0"])
        reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import sys, time, numpy as np, engram
            s = engram.attach(sys.argv[1]).space("growing")
            print("attached", flush=True)
            seen, checks, gens = 0, 0, set()
            deadline = time.time() + 60
            while time.time() < deadline:
                n = len(s)
                assert n >= seen, (n, seen)
                if n > seen:
                    print("seen", n, flush=True)
                seen = n
                gens.add(s.stats()["generations"]["nodes"])
                last = n - 1
                g = s.get([0, last])
                # row i holds the value i everywhere, and its content says so
                assert g.content[1] == f"row {last}", (g.content, last)
                assert np.all(g.vectors[1] == float(last) + 1.0), (g.vectors[1][:3], last)
                checks += 1
                if n >= 20000:
                    break
            print(seen, checks, len(gens))
        """), eng.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def reader_sees(rows):          # False: the reader exited (its error is in stderr)
            return any(line.startswith("seen") and int(line.split()[1]) >= rows for line in reader.stdout)

        def reader_ends():              # through the same buffered pipes the lines above came from
            out, err = reader.stdout.read(), reader.stderr.read()
            reader.wait(90)
            return out, err

        assert reader.stdout.readline().strip() == "attached", reader.stderr.read()
        start = 1
        while start < 20000:
            n = min(1500, 20000 - start)
            rows = np.repeat(np.arange(start, start + n, dtype=np.float32)[:, None] + 1.0, DIM, axis=1)
            m.remember(rows, content=[f"row {i}" for i in range(start, start + n)])
            start += n
            assert reader_sees(start), reader_ends()
        out, err = reader_ends()
        assert reader.returncode == 0, err
        seen, checks, gens = map(int, out.splitlines()[-1].split())
        assert seen == 20000 and checks > 1
        assert m.stats()["generations"]["nodes"] >= 4
        assert gens >= 2, "the reader should have re-attached to grown tables"


def test_owner_exit_removes_segments():
    out = run_py("""
        import engram, numpy as np
        eng = engram.Engine(dim=8, workers=0)
        eng.space("exiting").remember(np.ones((3, 8)))
        print(eng.name)
        # no close(): interpreter exit must clean up
    """).stdout.strip()
    assert shm_names(out) == []


def test_context_manager_removes_segments():
    with engram.Engine(dim=DIM, workers=0) as eng:
        eng.space("ctx").remember(np.ones(DIM))
        name = eng.name
        assert shm_names(name)
    assert shm_names(name) == []


@pytest.mark.parametrize("how", ["kill9", "os_exit"])
def test_leftovers_of_a_crashed_owner_are_cleaned_at_next_start(how):
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys, time, engram, numpy as np
        eng = engram.Engine(dim=8, workers=0)
        eng.space("crashing").remember(np.ones((3, 8)))
        print(eng.name, flush=True)
        if {how == 'os_exit'!r}:
            os._exit(3)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    name = p.stdout.readline().strip()
    if how == "kill9":
        p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert shm_names(name), "a crash leaves segments behind"
    with engram.Engine(dim=DIM, workers=0) as eng:
        assert str(EngineName.parse(name)) in map(str, eng.cleaned)
    assert shm_names(name) == []


def test_attach_refuses_a_foreign_layout():
    with engram.Engine(dim=DIM, workers=0) as eng:
        m = eng.space("foreign")
        hdr = m._store.dir_seg.header
        good = int(hdr["layout_hash"][0])
        hdr["layout_hash"] = good ^ 0xFFFF
        try:
            with pytest.raises(errors.LayoutMismatchError, match="layout"):
                engram.attach(eng.name).space("foreign")
            p = run_py("""
                import sys, engram
                try:
                    engram.attach(sys.argv[1]).space("foreign")
                except engram.errors.LayoutMismatchError as e:
                    print("refused:", e)
            """, eng.name)
            assert p.stdout.startswith("refused:") and f"{good ^ 0xFFFF:016x}" in p.stdout
        finally:
            hdr["layout_hash"] = good
        assert len(engram.attach(eng.name).space("foreign")) == 0


def test_attach_to_a_missing_engine_or_space_is_a_clear_error():
    with pytest.raises(ValueError, match="engine name"):
        engram.attach("not-an-engine")
    gone = f"eg.{os.getuid()}.{2**22 + 7}.{'0' * 16}"              # well formed, but no such engine
    with pytest.raises(errors.UnknownEngineError, match="not in shared memory"):
        engram.attach(gone)
    with pytest.raises(errors.UnknownEngineError, match="pid"):
        engram.attach(2**22 + 7)
    with engram.Engine(dim=DIM, workers=0) as eng:
        eng.space("here").remember(np.ones(DIM, np.float32))
        with pytest.raises(errors.UnknownSpaceError, match="no memory space 'nothere'.*'here'"):
            engram.attach(eng.name).space("nothere")


def test_attach_by_pid_opens_the_engine_of_that_process():
    with engram.Engine(dim=DIM, workers=0) as eng:
        eng.space("here").remember(np.ones(DIM, np.float32))
        with engram.attach(os.getpid()) as a:      # an int pid, as `engram inspect <pid>` takes
            assert a.name == eng.name and a.spaces == ["here"] and len(a.space("here")) == 1


@pytest.mark.parametrize("dim", [16, 10])      # rows packed end to end (written through the file) / padded
def test_rows_and_norms_survive_growth_whatever_the_row_padding(dim):
    from engram.store.tables import INITIAL_CAPACITY
    with engram.Engine(dim=dim, workers=0) as eng:
        m = eng.space("grow")
        rng = np.random.default_rng(dim)
        n = INITIAL_CAPACITY["emb_hot"] * 3 + 7       # two growths of the hot table
        v = rng.standard_normal((n, dim)).astype(np.float32)
        v[5] *= 1e30                                   # squares overflow float32: norm inf, exact path
        for i in range(0, n, 500):
            m.remember(v[i:i + 500])
        rows, _, live, norms = m._store.tier_rows(0)
        assert rows.shape == (n, dim) and np.array_equal(rows, v) and live.all()
        want = np.linalg.norm(v.astype(np.float64), axis=1)
        ok = np.arange(n) != 5
        np.testing.assert_allclose(norms[ok], want[ok], rtol=1e-5)
        assert not np.isfinite(norms[5])
        assert m.recall(v[5], k=1, spread=False).ids[0] == 5


def test_a_write_outside_a_segment_is_refused():
    from engram.store.shm.segment import Segment
    name = f"/eg-test-write-at-{os.getpid()}"
    seg = Segment.create(name, kind=1, data_bytes=4096, capacity=1, keep_fd=True)
    try:
        seg.write_at(4000, b"x" * 96)
        assert seg.data[4000:4096].tobytes() == b"x" * 96
        with pytest.raises(errors.SegmentError):
            seg.write_at(4000, b"x" * 97)
    finally:
        Segment.unlink(name)


@pytest.mark.parametrize("change", [None, "forget", "reconsolidate"])
def test_an_embedding_table_grows_from_a_copy_made_ahead(monkeypatch, change):
    """Past PREGROW_AT of its capacity the next generation is filled in the background and
    installed when the table is full; an in-place change to a copied row meanwhile drops
    that copy (the table then grows as before). Either way the rows are the rows."""
    from engram.store import growth
    monkeypatch.setattr(growth, "PREGROW_MIN", 1024)
    monkeypatch.setattr(growth, "RESERVE_BYTES", 0)      # grow FACTOR times, as past the reservation
    made = []

    class Spy(growth.Growth):
        def __init__(self, *args):
            made.append(self)
            super().__init__(*args)

    monkeypatch.setattr(growth, "Growth", Spy)
    with engram.Engine(dim=DIM, workers=0) as eng:
        m = eng.space("ahead")
        st = m._store
        rng = np.random.default_rng(11)
        v = rng.standard_normal((4096, DIM)).astype(np.float32)
        m.remember(v[:900])                  # 900 of 1024: the copy of the next generation starts
        assert len(made) == 1 and made[0].finish() and made[0].rows == 900
        if change == "forget":
            m.forget([3])
        elif change == "reconsolidate":
            st.rewrite_row(7, 0, v[8])       # a new row (900) for memory 7; row 7 leaves the scan
        gen = st.generation("emb_hot")
        m.remember(v[900:1100])              # full: installed from the copy (or grown as before)
        assert st.segs["emb_hot"].h("capacity") == (4096 if change is None else 2048)
        assert st.generation("emb_hot") == gen + 1
        assert (made[0].seg is st.segs["emb_hot"]) == (change is None)
        m.remember(v[1100:])                 # (a copy ahead of 2048's growth, if that came first)
        rows, row_node, live, norms = st.tier_rows(0)
        if change == "reconsolidate":
            assert row_node[900] == 7 and not live[7]
            v = np.concatenate([v[:900], v[8:9], v[900:]])
        assert np.array_equal(rows, v) and live.sum() == 4096 - (change == "forget")
        np.testing.assert_allclose(norms, np.linalg.norm(v.astype(np.float64), axis=1), rtol=1e-5)
    assert not shm_names(eng.name)


def test_closing_with_a_copy_in_flight_leaves_no_segment(monkeypatch):
    from engram.store import growth
    monkeypatch.setattr(growth, "PREGROW_MIN", 1024)
    with engram.Engine(dim=DIM, workers=0) as eng:
        eng.space("ahead").remember(np.random.default_rng(1).standard_normal((900, DIM)).astype(np.float32))
        assert eng.space("ahead")._store._growths
        name = eng.name
    assert not shm_names(name)


def test_the_copy_ahead_catches_up_with_rows_appended_while_it_runs(monkeypatch):
    """Rows appended during a pass are copied by the next, so reserve is left with fewer
    than CATCH_UP rows to copy itself."""
    import threading

    from engram.store import growth
    from engram.store.shm.segment import Segment
    monkeypatch.setattr(growth, "PREGROW_MIN", 1024)
    monkeypatch.setattr(growth, "CATCH_UP", 64)
    go, real = threading.Event(), Segment.write_at

    def held(self, offset, data):                   # the copy's first write waits for the test
        if threading.current_thread().name == "engram-grow":
            go.wait(10)
        return real(self, offset, data)

    monkeypatch.setattr(Segment, "write_at", held)
    with engram.Engine(dim=DIM, workers=0) as eng:
        m = eng.space("ahead")
        st = m._store
        v = np.random.default_rng(5).standard_normal((1030, DIM)).astype(np.float32)
        m.remember(v[:900])                          # 900 of 1024: the copy starts, and is held
        m.remember(v[900:1000])                      # appended during its first pass
        go.set()
        g = st._growths["emb_hot"]
        assert g.finish() and g.rows == 1000         # a second pass took them
        m.remember(v[1000:])                         # past 1024: full, installed from the copy
        assert st.segs["emb_hot"] is g.seg and np.array_equal(st.tier_rows(0)[0], v)


def test_a_big_embedding_table_reserves_address_space_not_memory(monkeypatch):
    """From PREGROW_MIN rows on, an embedding table grows once to RESERVE_BYTES of rows:
    its segment is that large, but only the rows written take shared memory, and a reader
    attached in another process sees every row."""
    from engram.store import growth
    monkeypatch.setattr(growth, "PREGROW_MIN", 1024)
    with engram.Engine(dim=DIM, workers=0) as eng:
        m = eng.space("reserved")
        st = m._store
        v = np.random.default_rng(3).standard_normal((3000, DIM)).astype(np.float32)
        for at in range(0, 3000, 500):
            m.remember(v[at:at + 500])
        seg = st.segs["emb_hot"]
        rb = seg.h("row_bytes")
        assert seg.h("capacity") == growth.next_capacity(1024, rb) == growth.RESERVE_BYTES // rb
        assert seg.size > growth.RESERVE_BYTES
        assert os.fstat(seg._fd).st_blocks * 512 < 4 * 3000 * rb + (1 << 20)    # written rows and little more
        out = run_py("""
            import sys, numpy as np, engram
            s = engram.attach(sys.argv[1]).space("reserved")
            print(len(s), float(np.abs(s.get([2999]).vectors[0]).sum()))
        """, eng.name).stdout.split()
        assert int(out[0]) == 3000 and float(out[1]) == pytest.approx(float(np.abs(v[2999]).sum()), rel=1e-5)
        rows, _, live, _ = st.tier_rows(0)
        assert np.array_equal(rows, v) and live.all()
