"""The write-ahead log on its own: group commit, recovery's cut of a torn tail, and refusal of
every other damage (docs/durability/wal-format.md), on real files."""
from __future__ import annotations

import os
import struct
import threading

import numpy as np
import pytest

from engram.errors import DurabilityError, WALError
from engram.store.wal import Log, RecordType, recover, truncate_damage
from engram.store.wal import format as fmt
from engram.store.wal.recovery import list_segments


def write_log(d, n, size=700, segment_bytes=64 << 10, policy="group", seed=0):
    """n records of random payloads, each waited for (a group of its own); returns the
    payloads by LSN."""
    rng = np.random.default_rng(seed)
    sent = {}
    lg = Log(d, policy, 1, segment_bytes=segment_bytes)
    for i in range(n):
        p = rng.bytes(int(rng.integers(1, size)))
        lsn = lg.append(i % 3, i + 1, RecordType.LINK, [p])
        lg.wait(lsn)
        sent[lsn] = p
    lg.close()
    return sent


def read_back(d, after=0):
    got = {}
    rec = recover(d, after, lambda lsn, seq, space, rtype, flags, body: got.__setitem__(lsn, bytes(body)))
    return rec, got


def record_offsets(path):
    """(offset, end) of each record in a segment file, by walking its framing."""
    data = path.read_bytes()
    salt = fmt.parse_segment_header(data[:64])[1]
    out, off = [], fmt.SEGMENT_HEADER_SIZE
    lsn = int(path.name[:20])
    while (r := fmt.check_record(data, off, len(data), salt, lsn)) is not None:
        out.append((off, r[-1]))
        off, lsn = r[-1], lsn + 1
    return out


def test_round_trip_across_segments_and_threads(tmp_path):
    d = tmp_path / "wal"
    lg = Log(d, "group", 1, segment_bytes=32 << 10)
    sent, lock = {}, threading.Lock()

    def producer(k):
        rng = np.random.default_rng(k)
        for i in range(300):
            p = rng.bytes(int(rng.integers(1, 900)))
            lsn = lg.append(k, i + 1, RecordType.LINK, [p])
            with lock:
                sent[lsn] = p
            if i % 7 == 0:
                lg.wait(lsn)
                assert lg.durable_lsn >= lsn
    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lg.close()
    assert len(list_segments(d)) > 3
    rec, got = read_back(d)
    assert got == sent and rec.next_lsn == 1201 and rec.cut_bytes == 0


def test_a_large_call_is_cut_into_continued_records_and_joined_again(tmp_path):
    d = tmp_path / "wal"
    big = os.urandom(fmt.MAX_CHUNK * 2 + 123)
    lg = Log(d, "group", 1)
    lsn = lg.append(0, 1, RecordType.REMEMBER, [big[:10], big[10:]])
    lg.wait(lsn)
    lg.close()
    assert lsn == 3
    rec, got = read_back(d)
    assert got == {3: big} and rec.replayed == 1


def test_a_call_whose_last_record_is_torn_is_not_applied(tmp_path):
    d = tmp_path / "wal"
    lg = Log(d, "group", 1)
    lg.wait(lg.append(0, 1, RecordType.LINK, [b"before"]))
    lg.wait(lg.append(0, 2, RecordType.REMEMBER, [os.urandom(fmt.MAX_CHUNK + 10)]))
    lg.close()
    seg = list_segments(d)[-1][1]
    off, end = record_offsets(seg)[-1]
    with open(seg, "r+b") as f:
        f.truncate(off + 40)
    rec, got = read_back(d)
    assert got == {1: b"before"} and rec.dropped_calls == 1 and 0 < rec.cut_bytes <= 40


def test_torn_tail_is_cut_at_every_offset_of_the_last_records(tmp_path):
    d = tmp_path / "wal"
    sent = write_log(d, 40, segment_bytes=1 << 20)
    seg = list_segments(d)[-1][1]
    whole = seg.read_bytes()
    recs = record_offsets(seg)
    first_cut = recs[-3][0]
    for cut in range(first_cut, recs[-1][1], 13):
        seg.write_bytes(whole[:cut])
        rec, got = read_back(d)
        kept = [i for i, (o, e) in enumerate(recs) if e <= cut]
        n = len(kept)
        assert got == {k: v for k, v in sent.items() if k <= n}, cut
        assert rec.next_lsn == n + 1
        end = recs[n - 1][1] if n else fmt.SEGMENT_HEADER_SIZE
        assert seg.stat().st_size == (end if whole[end:cut].strip(b"\0") else cut)
        assert rec.cut_bytes == len(whole[end:cut].rstrip(b"\0"))     # the bytes that held something
    # after a cut the log goes on: append, reopen, everything is there
    seg.write_bytes(whole[:recs[-1][0] + 5])
    rec, got = read_back(d)
    lg = Log(d, "group", rec.next_lsn)
    lg.wait(lg.append(0, 99, RecordType.LINK, [b"after"]))
    lg.close()
    rec2, got2 = read_back(d)
    assert got2 == {**got, rec.next_lsn: b"after"}


@pytest.mark.parametrize("tail", ["zeros", "garbage", "stale-record"])
def test_what_follows_the_last_record_is_recognised(tmp_path, tail):
    d = tmp_path / "wal"
    sent = write_log(d, 30, segment_bytes=8 << 10)
    segs = list_segments(d)
    last = segs[-1][1]
    end = record_offsets(last)[-1][1]
    data = bytearray(last.read_bytes())
    if tail == "zeros":
        extra = bytes(5000)
    elif tail == "garbage":
        extra = os.urandom(300)
    else:       # a valid record of an older segment, copied here: its salt is wrong here
        old = segs[0][1]
        o, e = record_offsets(old)[0]
        raw = bytearray(old.read_bytes()[o:e])
        struct.pack_into("<Q", raw, 8, len(sent) + 1)        # even with the LSN that would come next
        extra = bytes(raw)
    data[end:end + len(extra)] = extra
    last.write_bytes(bytes(data))
    rec, got = read_back(d)
    assert got == sent
    assert rec.cut_bytes == (0 if tail == "zeros" else len(extra.rstrip(b"\0")))


def test_a_flipped_bit_in_a_sealed_segment_refuses_to_open(tmp_path):
    d = tmp_path / "wal"
    write_log(d, 200, segment_bytes=16 << 10)
    segs = list_segments(d)
    victim = segs[1][1]
    o, e = record_offsets(victim)[2]
    flip(victim, o + 40)
    with pytest.raises(WALError, match=rf"{victim}: the record at offset {o} \(LSN \d+\) is damaged") as err:
        read_back(d)
    assert err.value.file == str(victim) and err.value.offset == o
    # the operator's explicit way past it: cut there, later segments moved aside
    lost = truncate_damage(d)
    assert lost.cut_file == str(victim) and len(lost.lost_segments) == len(segs) - 2
    rec, got = read_back(d)
    assert rec.next_lsn == lost.cut_lsn and max(got) == lost.cut_lsn - 1


def flip(path, offset, mask=0x10):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def test_damage_in_the_last_segment_before_a_later_group_refuses(tmp_path):
    """Only the last write group can be incomplete: damage with a later group after it was synced."""
    d = tmp_path / "wal"
    write_log(d, 100, segment_bytes=1 << 20)
    seg = list_segments(d)[-1][1]
    o, _ = record_offsets(seg)[95]
    flip(seg, o + 50)
    with pytest.raises(WALError, match=r"LSN 96\) is damaged, and a record of a later write group follows"):
        read_back(d)


def test_damage_inside_the_last_group_is_a_torn_write(tmp_path):
    """A power loss can keep later records of the group in flight and lose an earlier one:
    that group was never acknowledged, so it is cut, whatever of it survived."""
    d = tmp_path / "wal"
    lg = Log(d, "group", 1)
    for i in range(5):
        lg.wait(lg.append(0, i + 1, RecordType.LINK, [b"synced %d" % i]))
    with lg._cond:          # the writer takes all six at once: one group
        last = [lg.append(0, 6 + i, RecordType.LINK, [os.urandom(300)]) for i in range(6)]
    lg.wait(last[-1])
    lg.close()
    seg = list_segments(d)[-1][1]
    o, _ = record_offsets(seg)[7]
    flip(seg, o + 45)
    rec, got = read_back(d)
    assert sorted(got) == [1, 2, 3, 4, 5, 6, 7] and rec.cut_lsn == 8 and rec.next_lsn == 8


def test_a_missing_segment_is_a_gap(tmp_path):
    d = tmp_path / "wal"
    write_log(d, 100, segment_bytes=8 << 10)
    segs = list_segments(d)
    segs[2][1].unlink()
    with pytest.raises(WALError, match="a segment is missing"):
        read_back(d)


def test_records_a_snapshot_covers_are_skipped_and_a_log_that_ends_before_it_refuses(tmp_path):
    d = tmp_path / "wal"
    sent = write_log(d, 50, segment_bytes=8 << 10)
    rec, got = read_back(d, after=20)
    assert sorted(got) == list(range(21, 51)) and rec.next_lsn == 51
    with pytest.raises(WALError, match="before the 80 the snapshot covers"):
        read_back(d, after=80)
    assert len(sent) == 50


def test_a_failed_fsync_fails_its_group_and_stops_the_log(tmp_path):
    from engram.store.files import Files

    class FailSecondSync(Files):
        syncs = 0

        def fdatasync(self, fd):
            self.syncs += 1
            if self.syncs == 3:          # header sync, first group, then this one fails
                raise OSError(5, "Input/output error")
            super().fdatasync(fd)

    d = tmp_path / "wal"
    lg = Log(d, "group", 1, files=FailSecondSync())
    lg.wait(lg.append(0, 1, RecordType.LINK, [b"one"]))
    lsn = lg.append(0, 2, RecordType.LINK, [b"two"])
    with pytest.raises(DurabilityError, match="Input/output error"):
        lg.wait(lsn)
    with pytest.raises(DurabilityError, match="the write-ahead log stopped"):
        lg.admit()
    with pytest.raises(DurabilityError):
        lg.append(0, 3, RecordType.LINK, [b"three"])
    lg.close()
    rec, got = read_back(d)
    assert got[1] == b"one"          # acknowledged: there; the failed one may or may not be


def test_negative_control_without_the_crc_a_flipped_payload_is_served(tmp_path, monkeypatch):
    """The damage tests can see damage only because records are checked: with the CRC
    comparison switched off, a flipped payload byte comes back as data."""
    d = tmp_path / "wal"
    sent = write_log(d, 20, segment_bytes=1 << 20)
    seg = list_segments(d)[0][1]
    o, _ = record_offsets(seg)[3]
    flip(seg, o + 41, 1)
    with pytest.raises(WALError):
        read_back(d)
    monkeypatch.setattr(fmt, "check_record", _check_without_crc)
    import engram.store.wal.recovery as recovery
    monkeypatch.setattr(recovery, "check_record", _check_without_crc)
    rec, got = read_back(d)
    assert got[4] != sent[4] and len(got) == 20


def _check_without_crc(buf, off, end, salt, expect_lsn):
    if off + fmt.RECORD_HEADER_SIZE > end:
        return None
    crc, n, lsn, seq, space, rtype, flags, _, _ = fmt.RECORD_HEADER.unpack_from(buf, off)
    if n > fmt.MAX_RECORD or off + 40 + n > end or rtype not in fmt.KNOWN_TYPES or lsn != expect_lsn:
        return None
    body = memoryview(buf)[off + 40:off + 40 + n]
    return lsn, seq, space, rtype, flags, 0, body, off + 40 + fmt.padded(n)


def test_appends_wait_while_the_queue_is_full_and_nothing_is_lost(tmp_path):
    """A disk slower than the callers: past max_queued bytes an append waits for the writer
    (a bounded queue) instead of piling up records; every record still reaches the log."""
    from engram.store.files import Files
    gate = threading.Event()

    class HeldSync(Files):
        def fdatasync(self, fd):
            gate.wait()                  # the disk is stuck until the test lets it go
            super().fdatasync(fd)

    d = tmp_path / "wal"
    gate.set()                           # the segment header's sync
    lg = Log(d, "group", 1, files=HeldSync(), max_queued=4096)
    gate.clear()
    queued, done = [], threading.Event()

    def appender():
        for i in range(40):
            queued.append(lg.append(0, i + 1, RecordType.LINK, [bytes([i]) * 1000]))
        done.set()

    t = threading.Thread(target=appender)
    t.start()
    assert not done.wait(0.5)            # held back: the writer is stuck on its first group
    assert lg._queued_bytes <= 4096 + 1048 and len(queued) < 40
    gate.set()
    t.join(10)
    assert done.is_set()
    lg.wait(queued[-1])
    lg.close()
    _, got = read_back(d)
    assert [got[lsn] for lsn in queued] == [bytes([i]) * 1000 for i in range(40)]


def test_write_all_writes_every_buffer_in_order_and_raises_like_os(tmp_path):
    """Files.write_all: the plain layer's one-call writev + fdatasync (no GIL between them),
    past IOV_MAX buffers, empty ones among them; an error is an OSError with its errno."""
    import errno

    from engram.store.files import FILES, Files
    rng = np.random.default_rng(3)
    bufs = [rng.bytes(int(n)) for n in rng.integers(0, 300, 3000)] + [b"", memoryview(rng.bytes(5 << 20))[7:]]
    f = tmp_path / "f"
    fd = FILES.open(f, os.O_WRONLY | os.O_CREAT)
    FILES.write_all(fd, bufs, True)
    FILES.write_all(fd, [b"tail"], False)
    FILES.close(fd)
    assert f.read_bytes() == b"".join(bytes(b) for b in bufs) + b"tail"
    with pytest.raises(OSError) as e:
        FILES.write_all(fd, [b"x"], True)          # closed
    assert e.value.errno == errno.EBADF

    seen = []

    class Watching(Files):                         # overrides write: sees every writev, IOV_MAX at a time
        def write(self, fd, buffers):
            seen.append(len(buffers))
            return super().write(fd, buffers)

    fd = FILES.open(f, os.O_WRONLY | os.O_TRUNC)
    Watching().write_all(fd, bufs, True)
    FILES.close(fd)
    assert seen == [1024, 1024, 954] and f.read_bytes() == b"".join(bytes(b) for b in bufs)


def test_write_all_stops_at_a_short_write_with_the_prefix_written(tmp_path):
    """A write cut short (here by RLIMIT_FSIZE) is continued from where it stopped, and the
    error that ends it is raised: the file holds exactly a prefix of the buffers."""
    import subprocess
    import sys
    code = f"""
import os, resource, signal
from engram.store.files import FILES
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10000, 10000))
fd = os.open({str(tmp_path / "g")!r}, os.O_WRONLY | os.O_CREAT, 0o600)
try:
    FILES.write_all(fd, [bytes([i]) * 3000 for i in range(5)], True)
except OSError as e:
    print(e.errno)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "27", out.stderr          # EFBIG
    assert (tmp_path / "g").read_bytes() == b"".join(bytes([i]) * 3000 for i in range(5))[:10000]


def test_lazy_records_ride_with_the_next_group_and_still_reach_the_log_alone(tmp_path, monkeypatch):
    """Records nobody waits for (recalls' access updates, STATE) are queued lazy: they do
    not wake the writer, so they go in one write with the next record that is waited for;
    alone they are written after the linger, and close writes whatever is queued."""
    import engram.store.wal.writer as writer
    from engram.store.files import Files
    writes = []

    class Counting(Files):                 # overrides write: sees each group's writev
        def write(self, fd, buffers):
            writes.append(len(buffers) // 2)       # a header and a body per record
            return super().write(fd, buffers)

    monkeypatch.setattr(writer, "LAZY_LINGER_S", 3600.0)     # nothing but the next group takes them
    d = tmp_path / "wal"
    lg = Log(d, "group", 1, files=Counting())
    writes.clear()                                           # the segment header
    sent = {lg.append(0, i + 1, RecordType.STATE, [bytes([i]) * 40], lazy=True): bytes([i]) * 40
            for i in range(50)}
    assert lg.durable_lsn == 0 and writes == []
    urgent = lg.append(0, 51, RecordType.LINK, [b"link"])
    sent[urgent] = b"link"
    lg.wait(urgent)
    assert writes == [51]                                    # one group: 50 lazy records and the link
    monkeypatch.setattr(writer, "LAZY_LINGER_S", 0.001)
    alone = lg.append(0, 52, RecordType.STATE, [b"alone"], lazy=True)
    sent[alone] = b"alone"
    lg.wait(alone)                                           # written after the linger, unasked
    monkeypatch.setattr(writer, "LAZY_LINGER_S", 3600.0)
    last = lg.append(0, 53, RecordType.STATE, [b"at close"], lazy=True)
    sent[last] = b"at close"
    lg.close()
    _, got = read_back(d)
    assert got == sent


@pytest.mark.parametrize("policy", ["always", "group", "none"])
def test_synced_groups_leave_the_page_cache_and_unsynced_ones_stay(tmp_path, policy):
    """Once a group is synced the writer lets the page cache drop exactly the bytes it
    wrote (the log is read back only by recovery); under "none" nothing is synced, so
    nothing is dropped. Through Files.write_all's own path, and through a subclass's."""
    from engram.store.files import Files

    for split in (False, True):
        class Seen(Files):
            drops: list = []

            def drop_cached(self, fd, offset, nbytes):
                self.drops.append((offset, nbytes))
                super().drop_cached(fd, offset, nbytes)

        if split:       # a subclass that sees write and fdatasync as calls of their own
            Seen.fdatasync = lambda self, fd: Files.fdatasync(self, fd)
        else:           # the one nogil call: drops are not seen, but the bytes must still come back
            Seen.drop_cached = Files.drop_cached
        d = tmp_path / f"wal-{split}"
        lg = Log(d, policy, 1, files=Seen())
        sizes = []
        for i in range(3):
            body = os.urandom(100 + i)
            lg.wait(lg.append(0, i + 1, RecordType.LINK, [body]))
            sizes.append(fmt.RECORD_HEADER_SIZE + fmt.padded(len(body)))
        lg.close()
        if split:
            if policy == "none":
                assert Seen.drops == []
            else:
                at = np.cumsum([fmt.SEGMENT_HEADER_SIZE] + sizes)[:-1].tolist()
                assert Seen.drops == list(zip(at, sizes))
        rec, got = read_back(d)
        assert sorted(got) == [1, 2, 3]
