"""Snapshot files (docs/durability/snapshot-format.md): a round trip, and every damage a
file can carry (truncation, bit flips, crafted sizes, a lost or damaged CURRENT, a hostile
format-2 .npz) refused with SnapshotError before anything large is allocated."""
from __future__ import annotations

import io
import json
import logging
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

import engram
from engram.errors import SnapshotError
from engram.layout import NODE_HOT_DTYPE, PERSISTED_HASH
from engram.store import snapfile
from engram.store.wal.format import crc32c, sealed

HASH = f"0x{PERSISTED_HASH:016x}"


def images(seed=0):
    rng = np.random.default_rng(seed)
    hot = np.zeros(7, NODE_HOT_DTYPE)
    hot["confidence"] = rng.random(7)
    return [snapfile.SpaceImage("first", 0, 41, {"recall": {"k": 3}}, {
                "hot": hot,
                "rows": rng.standard_normal((7, 16)).astype(np.float32),
                "warm": rng.standard_normal((3, 16)).astype(np.float16),
                "empty": np.zeros((0, 16), np.float32),
                "bytes": np.frombuffer(b"some content", np.uint8)}),
            snapfile.SpaceImage("second", 1, 0, {}, {"ids": np.arange(5, dtype=np.uint64)})]


def same(a: list, b: list) -> bool:
    return [(s.name, s.index, s.seq, s.settings, sorted(s.arrays)) for s in a] == \
           [(s.name, s.index, s.seq, s.settings, sorted(s.arrays)) for s in b] and \
        all(x.arrays[k].dtype == y.arrays[k].dtype and x.arrays[k].shape == y.arrays[k].shape and
            x.arrays[k].tobytes() == y.arrays[k].tobytes() for x, y in zip(a, b) for k in x.arrays)


def test_round_trip_and_current(tmp_path):
    f = snapfile.write(tmp_path, 12, 16, HASH, images())
    assert f.name == "snap-00000000000000000012.snap" and not list(tmp_path.glob("*.tmp"))
    assert json.loads((tmp_path / "CURRENT").read_text()) == {"format": 3, "snapshot": f.name, "lsn": 12}
    snap = snapfile.newest(tmp_path)
    assert (snap.lsn, snap.dim, snap.record_hash, snap.file) == (12, 16, HASH, f)
    assert same(snap.spaces, images())
    snap.close()


def test_truncated_files_are_refused(tmp_path):
    f = snapfile.write(tmp_path, 3, 16, HASH, images())
    raw = f.read_bytes()
    for cut in sorted({0, 1, 63, 64, 127, 128, len(raw) // 2, len(raw) - 65, len(raw) - 64, len(raw) - 1,
                       *range(0, len(raw), 97)}):
        f.write_bytes(raw[:cut])
        with pytest.raises(SnapshotError, match=f.name):
            snapfile.read(f)


def test_bit_flips_are_refused_or_harmless(tmp_path):
    """Every byte that carries meaning is under a CRC; a flip in the zero padding between
    arrays changes nothing read. The control shows a flipped data byte really reaches an
    array's bytes, so a reader without CRCs would have served it."""
    f = snapfile.write(tmp_path, 5, 16, HASH, images())
    raw = bytearray(f.read_bytes())
    rng = np.random.default_rng(1)
    refused = 0
    for pos in rng.choice(len(raw), 300, replace=False):
        bad = bytearray(raw)
        bad[pos] ^= 1 << int(rng.integers(8))
        f.write_bytes(bad)
        try:
            snap = snapfile.read(f)
        except SnapshotError as e:
            assert f.name in str(e)
            refused += 1
            continue
        assert same(snap.spaces, images()), f"a flip at byte {pos} changed what was read"
        snap.close()
    assert refused >= 200, refused
    # control: the rows array's first byte, flipped, is what an unchecked read returns
    snap = snapfile.read(snapfile.write(tmp_path, 6, 16, HASH, images()))
    rows = snap.spaces[0].arrays["rows"]
    at = next(int(a["offset"]) for s in _index(snap.file)["spaces"] for k, a in s["arrays"].items() if k == "rows")
    bad = bytearray(snap.file.read_bytes())
    bad[at] ^= 0x40
    assert np.frombuffer(bytes(bad[at:at + rows.nbytes]), np.float32).tobytes() != rows.tobytes()
    snap.file.write_bytes(bad)
    with pytest.raises(SnapshotError, match="first/rows.*checksum"):
        snapfile.read(snap.file)


def _index(f):
    raw = f.read_bytes()
    _, _, _, at, n, _, _ = snapfile.FOOTER.unpack_from(raw, len(raw) - 64)
    return json.loads(raw[at:at + n])


def _rewrite_index(f, index):
    """A crafted file: the index replaced and every CRC made to match (an attacker's file)."""
    raw = f.read_bytes()
    _, _, _, at, n, lsn, _ = snapfile.FOOTER.unpack_from(raw, len(raw) - 64)
    body = json.dumps(index).encode()
    size = at + len(body) + 64
    footer = sealed(snapfile.FOOTER, snapfile.END_MAGIC, 3, crc32c(body), at, len(body), lsn, size)
    f.write_bytes(raw[:at] + body + footer)


@pytest.mark.parametrize("craft, message", [
    (lambda a: a.update(shape=[1 << 40, 16]), "does not fit the file"),
    (lambda a: a.update(shape=[1 << 40, 16], nbytes=(1 << 46)), "does not fit the file"),
    (lambda a: a.update(offset=8), "does not fit the file"),
    (lambda a: a.update(shape=[-1, 16]), "malformed"),
    (lambda a: a.update(dtype="|O"), "malformed"),
    (lambda a: a.update(dtype=[["x", "<f4", [1 << 30]]]), "malformed"),
    (lambda a: a.update(dtype="<f4", shape=[7, 16, 2]), "does not fit the file"),
])
def test_crafted_sizes_are_refused_before_allocation(tmp_path, craft, message):
    f = snapfile.write(tmp_path, 9, 16, HASH, images())
    index = _index(f)
    craft(index["spaces"][0]["arrays"]["rows"])
    _rewrite_index(f, index)
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotError, match=message):
            snapfile.read(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def test_a_crafted_footer_is_refused(tmp_path):
    f = snapfile.write(tmp_path, 9, 16, HASH, images())
    raw = f.read_bytes()
    footer = sealed(snapfile.FOOTER, snapfile.END_MAGIC, 3, 0, 64, 1 << 40, 9, len(raw))
    f.write_bytes(raw[:-64] + footer)
    with pytest.raises(SnapshotError, match="footer does not fit"):
        snapfile.read(f)


def test_current_lost_or_damaged_falls_back_to_the_newest_valid(tmp_path, caplog):
    snapfile.write(tmp_path, 4, 16, HASH, images(0))
    newer = snapfile.write(tmp_path, 8, 16, HASH, images(1))
    (tmp_path / "CURRENT").unlink()
    with caplog.at_level(logging.WARNING, "engram"):
        assert snapfile.newest(tmp_path).lsn == 8
    assert "CURRENT does not name" in caplog.text
    (tmp_path / "CURRENT").write_text("{garbage")
    assert snapfile.newest(tmp_path).lsn == 8
    raw = bytearray(newer.read_bytes())
    raw[100] ^= 1
    newer.write_bytes(raw)                         # the newest damaged: the older one opens
    caplog.clear()
    with caplog.at_level(logging.WARNING, "engram"):
        snap = snapfile.newest(tmp_path)
    assert snap.lsn == 4 and same(snap.spaces, images(0)) and "checksum" in caplog.text


def test_no_readable_snapshot_refuses_rather_than_open_empty(tmp_path):
    f = snapfile.write(tmp_path, 4, 16, HASH, images())
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(SnapshotError, match="no snapshot reads"):
        snapfile.newest(tmp_path)
    f.unlink()
    with pytest.raises(SnapshotError, match="which is missing.*refusing to open this directory empty"):
        snapfile.newest(tmp_path)
    (tmp_path / "CURRENT").write_text("{garbage")
    with pytest.raises(SnapshotError, match="CURRENT is damaged.*refusing"):
        snapfile.newest(tmp_path)
    (tmp_path / "CURRENT").unlink()
    assert snapfile.newest(tmp_path) is None       # a directory with nothing in it: a new engine


def test_prune_keeps_what_it_is_told_and_removes_leftovers(tmp_path):
    for lsn in (1, 2, 3):
        snapfile.write(tmp_path, lsn, 16, HASH, images())
    (tmp_path / "snap-00000000000000000009.snap.tmp").write_bytes(b"half")
    snapfile.prune(tmp_path, {3, 2})
    assert sorted(p.name for p in tmp_path.glob("snap-*")) == [snapfile.file_name(2), snapfile.file_name(3)]


# ---- format 2 (.npz directories of earlier releases) ----------------------------------------
def legacy(tmp_path, arrays: dict):
    snap = tmp_path / "snap-000003"
    snap.mkdir()
    np.savez(snap / "old.npz", **arrays)
    (tmp_path / "CURRENT").write_text(json.dumps({"format": 2, "seq": 3, "snapshot": snap.name, "dim": 4,
                                                  "record_hash": HASH, "spaces": ["old"]}))
    return snap


def test_legacy_snapshots_read_with_their_settings(tmp_path):
    snap = legacy(tmp_path, {"rows": np.eye(4, dtype=np.float32), "settings": np.array(json.dumps({"a": 1}))})
    m = snapfile.legacy_manifest(tmp_path)
    got = snapfile.read_legacy(snap, m)
    assert got.lsn == 0 and got.dim == 4 and got.spaces[0].settings == {"a": 1}
    assert got.spaces[0].arrays["rows"].tobytes() == np.eye(4, dtype=np.float32).tobytes()


def _npy(header: dict, data: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


@pytest.mark.parametrize("member, message", [
    (_npy({"descr": "<f4", "fortran_order": False, "shape": (1 << 33, 1)}, b"\0" * 64), "claims"),
    (_npy({"descr": "|O", "fortran_order": False, "shape": (2,)}, b"\0" * 16), "objects"),
    (b"not an npy member at all", "damaged"),
])
def test_hostile_legacy_members_are_refused_before_allocation(tmp_path, member, message):
    snap = legacy(tmp_path, {"rows": np.eye(4, dtype=np.float32)})
    with zipfile.ZipFile(snap / "old.npz", "w") as z:
        z.writestr("rows.npy", member)
    m = snapfile.legacy_manifest(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotError, match=message):
            snapfile.read_legacy(snap, m)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def test_a_damaged_legacy_zip_is_a_snapshot_error(tmp_path):
    snap = legacy(tmp_path, {"rows": np.eye(4, dtype=np.float32)})
    raw = (snap / "old.npz").read_bytes()
    (snap / "old.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SnapshotError, match="old.npz"):
        snapfile.read_legacy(snap, snapfile.legacy_manifest(tmp_path))


# ---- through the engine ---------------------------------------------------------------------
def test_a_damaged_newest_snapshot_opens_from_the_previous_one_and_the_log(tmp_path):
    rng = np.random.default_rng(3)
    with engram.Engine(path=tmp_path, dim=8, workers=0) as eng:
        m = eng.space("kept")
        m.remember(rng.standard_normal((50, 8)))
        eng.checkpoint()
        m.remember(rng.standard_normal((30, 8)), content=[f"c{i}" for i in range(30)])
        m.link(1, [2, 3], 0.5)
        before = m.get(range(80))
    newest = max(tmp_path.glob("snap-*.snap"))
    assert len(list(tmp_path.glob("snap-*.snap"))) == 2
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    newest.write_bytes(raw)
    with engram.Engine(path=tmp_path, workers=0) as eng:
        m = eng.space("kept")
        assert eng.recovery["snapshot_lsn"] < int(newest.name[5:25]) and eng.recovery["replayed"] >= 2
        after = m.get(range(80))
        assert after.vectors.tobytes() == before.vectors.tobytes() and after.content == before.content
        assert m.neighbors(1)[0].tolist() == [2, 3]


def test_header_struct_sizes():
    assert snapfile.HEADER.size + 4 == snapfile.FOOTER.size + 4 == 64


@pytest.mark.parametrize("sizes", [[1, 2, 3], [40 << 20], [5 << 20] * 9, [100] * 3000 + [33 << 20], []])
def test_chunked_writing_writes_the_bytes_in_order(tmp_path, sizes, monkeypatch):
    """The snapshot's pieces are written in chunks with writeback between them, and with
    fewer buffers per write than IOV_MAX however many arrays there are."""
    from engram.store.files import FILES, Files
    calls = []

    class Counting(Files):
        def write(self, fd, buffers):
            assert len(buffers) <= snapfile.MAX_IOV
            return super().write(fd, buffers)

        def writeback(self, fd, offset, nbytes, wait):
            calls.append((offset, nbytes, wait))
            return super().writeback(fd, offset, nbytes, wait)

    rng = np.random.default_rng(len(sizes))
    bufs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    f = tmp_path / "out"
    fd = FILES.open(f, os.O_WRONLY | os.O_CREAT)
    snapfile._write_in_chunks(fd, bufs, Counting())
    FILES.close(fd)
    assert f.read_bytes() == b"".join(bufs)
    started = [(o, n) for o, n, w in calls if not w]
    assert [o for o, _ in started] == [sum(n for _, n in started[:i]) for i in range(len(started))]
    assert all(n >= snapfile.WRITE_CHUNK for _, n in started)
    assert [(o, n) for o, n, w in calls if w] == started[:-1]
