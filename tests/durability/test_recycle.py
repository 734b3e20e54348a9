"""Recycled log segments: a segment a snapshot covers is kept as the file of a later one
(its blocks are written, so syncs into it commit no extent changes). Its old records stay
in the file after the new ones; the salt in every record and the LSN chain keep them from
being read as new, and a zeroed header after each group marks where the log ends."""
from __future__ import annotations

import numpy as np
import pytest

from engram.errors import WALError
from engram.store.wal import Log, RecordType, recover, writer
from engram.store.wal import format as fmt
from engram.store.wal.recovery import list_segments

SEG = 16 << 10


def read_back(d, after=0):
    got = {}
    rec = recover(d, after, lambda lsn, seq, space, rtype, flags, body: got.__setitem__(lsn, bytes(body)))
    return rec, got


def header(path):
    return fmt.parse_segment_header(path.read_bytes()[:fmt.SEGMENT_HEADER_SIZE])


def last_record_end(path):
    data = path.read_bytes()
    _, salt, lsn, _ = header(path)
    off = fmt.SEGMENT_HEADER_SIZE
    while (r := fmt.check_record(data, off, len(data), salt, lsn)) is not None:
        off, lsn = r[-1], lsn + 1
    return off


def fill(lg, sent, n, rng, size=700):
    for i in range(n):
        p = rng.bytes(int(rng.integers(1, size)))
        lsn = lg.append(0, len(sent) + 1, RecordType.LINK, [p])
        lg.wait(lsn)
        sent[lsn] = p


def recycled_log(d, keep=4):
    """A log whose first segments were dropped and their files reused, ending 10 records
    into the second reused one: (sent after the drop, the LSN dropped through, the old salts)."""
    rng = np.random.default_rng(0)
    lg = Log(d, "group", 1, segment_bytes=SEG, recycle_bytes=keep * SEG)
    sent = {}
    fill(lg, sent, 300, rng)
    salts = {header(p)[1] for _, p in list_segments(d)}
    dropped = 250
    gone = lg.drop_through(dropped)
    assert len(gone) > keep and len(writer_files(d)) == keep
    into = reused = 0       # records into the open segment if it is a reused one; how many were
    while reused < 2 or into < 10:
        fill(lg, sent, 1, rng)
        segs = list_segments(d)
        reused = sum(bool(header(p)[3] & fmt.RECYCLED_FILE) for _, p in segs)
        into = into + 1 if header(segs[-1][1])[3] & fmt.RECYCLED_FILE else 0
    lg.close()
    return {k: v for k, v in sent.items() if k > dropped}, dropped, salts


def writer_files(d):
    return sorted(p.name for p in d.iterdir() if p.name.startswith(writer.RECYCLED))


def test_dropped_segments_are_reused_and_their_old_records_are_never_read_as_new(tmp_path):
    d = tmp_path / "wal"
    sent, dropped, old_salts = recycled_log(d)
    reused = [p for _, p in list_segments(d) if header(p)[3] & fmt.RECYCLED_FILE]
    assert len(reused) >= 2                        # the kept files became later segments
    assert all(p.stat().st_size == SEG for p in reused)
    # the control: each reused file still holds records that are valid under their old salt
    stale = 0
    for p in reused:
        data, off = p.read_bytes(), last_record_end(p)
        for at in range(off + 8 - off % 8, len(data) - fmt.RECORD_HEADER_SIZE, 8):
            stale += any(fmt.check_record(data, at, len(data), s, None) is not None for s in old_salts)
    assert stale > 0
    rec, got = read_back(d, dropped)
    assert got == sent and rec.cut_bytes == 0


def test_a_clean_stop_in_a_reused_segment_cuts_nothing_but_without_the_end_mark_reads_as_torn(
        tmp_path, monkeypatch):
    d = tmp_path / "wal"
    sent, dropped, _ = recycled_log(d)
    last = list_segments(d)[-1][1]
    assert header(last)[3] & fmt.RECYCLED_FILE
    rec, got = read_back(d, dropped)
    assert got == sent and rec.cut_bytes == 0
    # negative control: without the zeroed header after each group, the old bytes right
    # after the last record look like an incomplete write
    monkeypatch.setattr(writer, "_END", b"")
    d2 = tmp_path / "wal2"
    sent2, dropped2, _ = recycled_log(d2)
    assert header(list_segments(d2)[-1][1])[3] & fmt.RECYCLED_FILE
    rec2, got2 = read_back(d2, dropped2)
    assert got2 == sent2 and rec2.cut_bytes > 0


def test_a_torn_group_in_a_reused_segment_is_cut_within_the_torn_window(tmp_path):
    d = tmp_path / "wal"
    sent, dropped, _ = recycled_log(d)
    last = list_segments(d)[-1][1]
    end = last_record_end(last)
    with open(last, "r+b") as f:                   # half a group's header landed on the end mark
        f.seek(end)
        f.write(b"\x7f" * 24)
    rec, got = read_back(d, dropped)
    assert got == sent
    assert 0 < rec.cut_bytes <= fmt.TORN_WINDOW and rec.cut_file == str(last)
    assert last.stat().st_size == end              # cut in place: the old bytes are gone too


def test_the_last_record_of_a_sealed_reused_segment_damaged_refuses_to_open(tmp_path):
    """The old bytes after a sealed segment's records are accepted only because the next
    segment goes on at the next LSN; a damaged last record breaks that chain."""
    d = tmp_path / "wal"
    _, dropped, _ = recycled_log(d)
    sealed = [p for _, p in list_segments(d)[:-1] if header(p)[3] & fmt.RECYCLED_FILE]
    victim = sealed[0]
    data = victim.read_bytes()
    _, salt, lsn, _ = header(victim)
    off, starts = fmt.SEGMENT_HEADER_SIZE, []
    while (r := fmt.check_record(data, off, len(data), salt, lsn)) is not None:
        starts.append(off)
        off, lsn = r[-1], lsn + 1
    with open(victim, "r+b") as f:
        f.seek(starts[-1] + fmt.RECORD_HEADER_SIZE)
        b = f.read(1)
        f.seek(starts[-1] + fmt.RECORD_HEADER_SIZE)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(WALError, match="in a sealed segment"):
        read_back(d, dropped)


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_at_most_recycle_bytes_of_segments_are_kept_and_the_rest_deleted(tmp_path, keep):
    d = tmp_path / "wal"
    rng = np.random.default_rng(1)
    lg = Log(d, "group", 1, segment_bytes=SEG, recycle_bytes=keep * SEG)
    sent = {}
    fill(lg, sent, 300, rng)
    before = list_segments(d)
    gone = lg.drop_through(250)
    assert len(gone) > keep
    assert len(writer_files(d)) == keep
    assert len(list_segments(d)) == len(before) - len(gone)
    lg.close()
    rec, got = read_back(d, 250)
    assert got == {k: v for k, v in sent.items() if k > 250}


def test_power_loss_at_any_point_of_recycling_keeps_every_acknowledged_record(tmp_path):
    """The log's file operations recorded while segments are retired into reusable files
    and reused (rename, header, records over old ones, end marks); every state a power
    loss could leave recovers every record acknowledged before it, and nothing else."""
    from .crashfs import RecordingFiles, crash_states

    root = tmp_path / "db"
    root.mkdir()
    rec = RecordingFiles(root)
    rng = np.random.default_rng(2)
    lg = Log(root / "wal", "group", 1, files=rec, segment_bytes=SEG, recycle_bytes=3 * SEG)
    sent, acked = {}, []
    for i in range(420):
        if i == 300:
            drop_at = rec.position
            assert len(lg.drop_through(250)) > 3
        p = rng.bytes(int(rng.integers(1, 700)))
        lsn = lg.append(0, i + 1, RecordType.LINK, [p])
        lg.wait(lsn)
        sent[lsn] = p
        acked.append((lsn, rec.position))
    lg.close()
    assert any(header(p)[3] & fmt.RECYCLED_FILE for _, p in list_segments(root / "wal"))
    cuts = sorted({at for _, at in acked[::7]} | set(rec.persistence_cuts()[::5]))
    checked = 0
    for cut, state in crash_states(rec, cuts, randoms=1, seed=4):
        db = state.materialise(tmp_path / f"c{cut}-{state.mode}-{state.seed}")
        after = 250 if cut >= drop_at else 0
        _, got = read_back(db / "wal", after)
        must = {lsn for lsn, at in acked if at <= cut and lsn > after}
        assert must <= got.keys(), state
        assert all(got[lsn] == sent[lsn] for lsn in got), state
        checked += 1
    assert checked > 100
