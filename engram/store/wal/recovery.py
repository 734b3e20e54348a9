"""Reading the log back: every record after a snapshot's LSN, in order, checked; the torn
tail of the last segment cut; damage anywhere else refused (docs/durability/wal-format.md).

The default tolerates exactly one kind of loss, an incomplete last group (none
of it was acknowledged), like RocksDB's kTolerateCorruptedTailRecords; anything
else is a WALError naming file, offset and LSN. ``truncate_damage`` is the
operator's explicit choice to cut the log at the first damage instead.
"""
from __future__ import annotations

import logging
import mmap
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engram.errors import WALError
from engram.store.files import FILES, Files
from engram.store.wal.format import (
    CONTINUED,
    KNOWN_TYPES,
    MAX_RECORD,
    NAME,
    RECORD_HEADER_SIZE,
    RECYCLED_FILE,
    SEGMENT_HEADER_SIZE,
    check_record,
    parse_segment_header,
)

log = logging.getLogger("engram")


@dataclass
class Recovered:
    """What recovery found: where the log goes on, what it replayed and what it cut."""
    next_lsn: int
    replayed: int = 0
    segments: int = 0
    cut_bytes: int = 0                 # torn tail (or, with truncate_damage, damage) cut off
    cut_file: str = ""
    cut_lsn: int = 0                   # the first LSN given up
    dropped_calls: int = 0             # calls whose CONTINUED records never finished
    lost_segments: list = field(default_factory=list)
    seconds: float = 0.0


def list_segments(directory: Path) -> list:
    """[(first LSN, path)] of the segment files, oldest first (other names are ignored)."""
    if not directory.is_dir():
        return []
    out = []
    for p in directory.iterdir():
        m = NAME.match(p.name)
        if m and p.is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


class _Damage(Exception):
    def __init__(self, file: Path, offset: int, lsn: int, what: str):
        super().__init__(what)
        self.file, self.offset, self.lsn, self.what = file, offset, lsn, what


def _mapped(path: Path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        return (mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else b""), size
    finally:
        os.close(fd)


def _damage_proof(buf, start: int, end: int, salt: int, expect: int, window: int) -> int:
    """Offset of a valid record after the invalid one at ``start`` that proves the invalid
    one was not in the last write group (so it had been synced, and maybe acknowledged), or
    -1. Such a record is from a later group (its group began after ``expect``), or lies
    beyond the most the writer leaves unsynced. Candidates are picked by their header
    fields at once, then checked one by one."""
    first = (start + 8) & ~7
    if first + RECORD_HEADER_SIZE > end:
        return -1
    words = np.frombuffer(buf, np.uint64, count=(end - first) // 8, offset=first)
    if words.shape[0] < 5:
        return -1
    lens = (words[:-4] >> np.uint64(32)) & np.uint64(0xFFFFFFFF)
    lsns = words[1:-3]
    types = (words[3:-1] >> np.uint64(16)) & np.uint64(0xFF)
    maybe = (lsns >= expect) & (lsns < expect + (1 << 32)) & (lens <= MAX_RECORD) & np.isin(types, list(KNOWN_TYPES))
    for i in np.flatnonzero(maybe).tolist():
        off = first + 8 * i
        r = check_record(buf, off, end, salt, int(lsns[i]))
        if r is not None and (r[0] - r[5] > expect or off >= start + window):
            return off
    return -1


def _scan(directory: Path, after, apply, files: Files, cut_damage: bool) -> Recovered:
    t0 = time.perf_counter()
    segs = list_segments(directory)
    if after is None:
        after = segs[0][0] - 1 if segs else 0
    # segments wholly covered by the snapshot are not needed (they wait for deletion)
    while len(segs) > 1 and segs[1][0] <= after + 1:
        segs.pop(0)
    out = Recovered(next_lsn=after + 1)
    if not segs:
        return out
    if segs[0][0] > after + 1:
        raise WALError(f"{segs[0][1]}: the log starts at LSN {segs[0][0]}, but the snapshot covers only up to "
                       f"{after}: the segments between are missing", str(segs[0][1]), 0)
    expect, pending = segs[0][0], {}
    for i, (first, path) in enumerate(segs):
        last = i == len(segs) - 1
        buf, size = _mapped(path)
        try:
            if first != expect:
                raise _Damage(path, 0, expect, f"the segment starts at LSN {first}, but the one before ends at "
                                               f"{expect - 1}: a segment is missing")
            head = parse_segment_header(bytes(buf[:SEGMENT_HEADER_SIZE]))
            if isinstance(head, str):
                if last and not np.frombuffer(buf, np.uint8).any():   # made, header never written
                    files.unlink(path)
                    files.fsync_dir(directory)
                    out.segments += 1
                    break
                raise _Damage(path, 0, expect, f"the segment header is damaged: {head}")
            window, salt, hfirst, seg_flags = head
            if hfirst != first:
                raise _Damage(path, 0, expect, f"its header says it starts at LSN {hfirst}, its name says {first}")
            off = SEGMENT_HEADER_SIZE
            while True:
                r = check_record(buf, off, size, salt, expect)
                if r is None:
                    break
                lsn, seq, space, rtype, flags, _, body, off = r
                expect += 1
                if lsn <= after:
                    continue
                parts = pending.pop(space, [])
                if flags & CONTINUED:
                    pending[space] = parts + [bytes(body)]
                    continue
                if apply is not None:
                    apply(lsn, seq, space, rtype, flags, b"".join(parts + [body]) if parts else body)
                out.replayed += 1
            rest = np.frombuffer(buf, np.uint8, offset=off) if off < size else np.zeros(0, np.uint8)
            nonzero = np.flatnonzero(rest)
            out.segments += 1
            if not nonzero.size:
                continue                     # a clean end (the rest of a preallocated segment)
            what = f"the record at offset {off} (LSN {expect}) is damaged"
            if not last:
                if segs[i + 1][0] == expect:     # the next segment goes on from here: the rest is
                    continue                     # what a recycled segment's file held before
                raise _Damage(path, off, expect, what + " in a sealed segment")
            proof = _damage_proof(buf, off, size, salt, expect, window)
            if proof >= 0:
                raise _Damage(path, off, expect, what + f", and a record of a later write group follows at "
                                                        f"offset {proof}: it is not a torn last write")
            if seg_flags & RECYCLED_FILE:    # bytes past the torn window are the file's old ones; the
                torn = nonzero[nonzero < window]    # writer zeroes a record header after each group, so
                ended = int(nonzero[0]) >= RECORD_HEADER_SIZE   # intact, the log ended cleanly here
                out.cut_bytes = 0 if ended or not torn.size else int(torn[-1]) + 1
            else:
                out.cut_bytes = int(nonzero[-1]) + 1
            out.cut_file, out.cut_lsn = str(path), expect
        except _Damage as d:
            if not cut_damage:
                raise WALError(f"{d.file}: {d.what}. The log is damaged before its end, so acknowledged writes "
                               f"would be lost: the engine does not open. `engram recover --truncate "
                               f"{directory.parent}` accepts losing LSN {d.lsn} onward",
                               str(d.file), d.offset) from None
            out.cut_file, out.cut_lsn = str(d.file), d.lsn
            out.cut_bytes = max(size - d.offset, 0)
            off = d.offset
            lost = directory / f"lost-{time.strftime('%Y%m%dT%H%M%S')}"
            for _, later in segs[i + 1:]:
                lost.mkdir(mode=0o700, exist_ok=True)
                shutil.move(str(later), lost / later.name)
                out.lost_segments.append(str(lost / later.name))
            if d.offset < SEGMENT_HEADER_SIZE:            # nothing of this segment is usable
                lost.mkdir(mode=0o700, exist_ok=True)
                shutil.move(str(path), lost / path.name)
                out.lost_segments.append(str(lost / path.name))
                files.fsync_dir(directory)
                break
            files.fsync_dir(directory)
        finally:
            if isinstance(buf, mmap.mmap):
                try:
                    buf.close()
                except BufferError:      # a view of it is still alive: unmapped when that goes
                    pass
        if out.cut_file == str(path):                   # cut here: the log ends at ``off``
            fd = files.open(path, os.O_RDWR)
            try:
                files.truncate(fd, off)
                files.fdatasync(fd)
            finally:
                files.close(fd)
            break
    if segs and segs[-1][0] == expect and segs[-1][1].exists():   # the last segment holds no record:
        files.unlink(segs[-1][1])                                   # the log makes it again
        files.fsync_dir(directory)
    if expect <= after and not cut_damage:
        raise WALError(f"{directory}: the log ends at LSN {expect - 1}, before the {after} the snapshot covers: "
                       "the log does not belong to this snapshot", str(directory), -1)
    out.dropped_calls = len(pending)
    out.next_lsn = expect
    out.seconds = time.perf_counter() - t0
    return out


def recover(directory: Path, after: int, apply, files: Files = FILES) -> Recovered:
    """Replay every record with LSN > ``after`` through ``apply(lsn, seq, space, type,
    flags, payload)``, a call's CONTINUED records joined into one payload; cut a torn tail (in
    place, synced). Raises WALError for any other damage. Returns where the log goes on."""
    out = _scan(Path(directory), after, apply, files, cut_damage=False)
    if out.cut_bytes:
        log.warning("engram: the log %s ended in an incomplete write (%d bytes from LSN %d, never "
                    "acknowledged): cut", out.cut_file, out.cut_bytes, out.cut_lsn)
    return out


def truncate_damage(directory: Path, files: Files = FILES) -> Recovered:
    """``engram recover --truncate``: cut the log at its first damaged record (wherever it
    is) and move every later segment to ``lost-<time>/``; returns what was given up."""
    return _scan(Path(directory), None, None, files, cut_damage=True)
