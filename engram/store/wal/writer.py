"""The log writer: one thread appends queued records to the open segment in groups, syncs
them under the durability policy, and tells the waiting callers (group commit).

A caller queues a framed record with ``append`` (cheap: under its space's lock)
and then, outside that lock, ``wait``s for its LSN. A record nobody waits for (a
recall's access update) can be queued ``lazy``: it does not wake the thread, but goes
with the next group, or after at most LAZY_LINGER_S on its own, so a stream of recalls
costs a few writes and syncs a second instead of one each. The thread takes
everything queued (up to the torn window), writes it with one writev, runs
one fdatasync, and publishes the new durable LSN. Errors are final: the log
stops and every later call raises DurabilityError (docs/durability/wal-format.md).
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from engram.errors import ClosedError, DurabilityError, StorageFullError
from engram.store.files import FILES, Files
from engram.store.wal import format as wal_format
from engram.store.wal.format import (
    CONTINUED,
    MAX_CHUNK,
    POLICIES,
    RECORD_HEADER_SIZE,
    RECYCLED_FILE,
    SEGMENT_HEADER_SIZE,
    TORN_WINDOW,
    frame,
    padded,
    seal,
    segment_header,
    segment_name,
)
from engram.threads import named_thread

log = logging.getLogger("engram")
PREALLOC = "next.prealloc"
RECYCLED = "recycled-"      # + a number: a dropped segment kept to be the next ones' file
RECYCLE_BYTES = 1 << 30     # the most dropped segments kept for reuse (whole segments of this size)
RETRY_FULL_S = 1.0
MAX_QUEUED_WINDOWS = 4      # records waiting for the writer: at most this many torn windows' bytes
LAZY_LINGER_S = 0.05        # the longest a lazy record waits for company
_END = bytes(RECORD_HEADER_SIZE)


class Log:
    """An open log in ``directory``, appending from ``next_lsn`` (recovery says where)."""

    def __init__(self, directory: Path, policy: str = "group", next_lsn: int = 1, files: Files = FILES,
                 segment_bytes: int | None = None, torn_window: int = TORN_WINDOW, max_queued: int | None = None,
                 recycle_bytes: int = RECYCLE_BYTES):
        if policy not in POLICIES:
            raise ValueError(policy)
        self.dir, self.policy, self.files = Path(directory), policy, files
        # None: the format's default, read now (the test suite makes it small to keep files small)
        self.segment_bytes = segment_bytes or wal_format.SEGMENT_BYTES
        self.torn_window = torn_window
        self.recycle_bytes = recycle_bytes
        self.max_queued = max_queued or MAX_QUEUED_WINDOWS * torn_window    # append waits past this
        if not self.dir.is_dir():
            files.mkdir(self.dir)
        self._cond = threading.Condition()
        self._queue: list = []            # (lsn, header, body buffers, body bytes) of framed records, in LSN order
        self._queued_bytes = 0
        self._urgent = False              # a queued record is not lazy: write now
        self._lazy_since = 0.0            # when the oldest queued lazy record came
        self._next = next_lsn             # the LSN the next append gets
        self._written = self._synced = next_lsn - 1
        self._sync_to = 0                 # sync() asks the thread to sync up to here
        self._failed: DurabilityError | None = None
        self._full: str | None = None     # why the next segment could not be made
        self._closing = False
        self.bytes_logged = 0             # since open, for checkpoint triggers
        self._fd = -1
        self._salt = secrets.randbits(64)
        self._first = next_lsn
        self._pos = self._size = 0
        self._spare = False               # a preallocated next segment is ready
        self._spare_recycled = False      # ... in a recycled segment's file
        self._in_recycled = False         # the open segment is in one: end each group with zeros
        self._full_retry = 0.0
        self._recycle_lock = threading.Lock()    # the checkpointer adds recycled files, the writer takes them
        self._open_segment(next_lsn, self.segment_bytes)
        self._thread = named_thread(self._run, "engram-wal")
        self._thread.start()

    # ---- callers -----------------------------------------------------------------------
    def admit(self) -> None:
        """Raise now if a change could not be logged: call before changing anything."""
        if self._failed is not None:
            raise DurabilityError(f"the write-ahead log stopped: {self._failed}; nothing was changed. Reads go "
                                  "on; reopen the engine to recover from what is on disk")
        if self._full is not None:
            raise StorageFullError(f"the disk holding {self.dir} is full ({self._full}); nothing was changed. "
                                   "Free space: writes resume when the next log segment can be made")
        if self._closing:
            raise ClosedError("the write-ahead log is closed")

    def append(self, space: int, seq: int, rtype: int, payload: list, lazy: bool = False, flags: int = 0) -> int:
        """Queue one change (its payload parts; cut into records of at most MAX_CHUNK bytes,
        flagged CONTINUED but the last, each also flagged ``flags``); returns the LSN that
        acknowledges it. Waits while ``max_queued`` bytes are already queued. ``lazy``: nobody
        will wait for it, so it may wait up to LAZY_LINGER_S for the next group."""
        views = [memoryview(p).cast("B") for p in payload]
        if sum(v.nbytes for v in views) <= MAX_CHUNK:
            pieces = [views]
        else:
            whole = memoryview(b"".join(views))
            pieces = [[whole[i:i + MAX_CHUNK]] for i in range(0, whole.nbytes, MAX_CHUNK)]
        pieces = [wal_format.payload(parts) for parts in pieces]     # checksummed outside the lock
        with self._cond:
            # a bounded queue: past max_queued bytes the caller waits for the writer, so a
            # disk slower than the callers holds them back (and the lanes before them fill
            # and refuse) instead of piling up records, memory and acknowledgement latency
            while self._queued_bytes >= self.max_queued and self._failed is None and not self._closing:
                self._cond.wait()
            if self._failed is not None or self._closing:
                self.admit()
            first = not self._queue                  # a first lazy record wakes it to linger
            if first:
                self._lazy_since = time.monotonic()
            for i, (body, n, crc) in enumerate(pieces):
                lsn = self._next
                self._next += 1
                header = frame(lsn, seq, space, rtype, flags | (CONTINUED if i + 1 < len(pieces) else 0), n, crc)
                size = padded(n)
                self._queue.append((lsn, header, body, size))
                self._queued_bytes += RECORD_HEADER_SIZE + size
            if not lazy or self._queued_bytes >= self.torn_window:
                self._urgent = True
            if first or self._urgent:
                self._cond.notify_all()
        return lsn

    def wait(self, lsn: int, timeout: float | None = None) -> None:
        """Return once ``lsn`` is acknowledged under the policy (DurabilityError if its group
        failed; TimeoutError after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._acked() < lsn:
                if self._failed is not None:
                    raise DurabilityError(f"not durable: {self._failed}") from self._failed
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"LSN {lsn} not acknowledged within {timeout} s")
                self._cond.wait(left)

    def sync(self) -> int:
        """Make everything appended so far durable, whatever the policy; returns that LSN."""
        with self._cond:
            target = self._next - 1
            self._sync_to = max(self._sync_to, target)
            self._cond.notify_all()
            while self._synced < target:
                if self._failed is not None:
                    raise DurabilityError(f"not durable: {self._failed}") from self._failed
                self._cond.wait()
        return target

    @property
    def last_lsn(self) -> int:
        """The LSN of the last change appended (acknowledged or not)."""
        return self._next - 1

    @property
    def durable_lsn(self) -> int:
        return self._synced

    @property
    def failed(self):
        return self._failed

    @property
    def full(self) -> str | None:
        """Why writes are refused for now (the disk is full), or None."""
        return self._full

    def _acked(self) -> int:
        return self._written if self.policy == "none" else self._synced

    # ---- segments ----------------------------------------------------------------------
    def segments(self) -> list:
        """[(first LSN, path)] of the segments on disk, oldest first."""
        from engram.store.wal.recovery import list_segments
        return list_segments(self.dir)

    def drop_through(self, lsn: int) -> list:
        """Retire the segments whose records all have LSN <= ``lsn`` (a durable snapshot
        covers them); never the open one. Whole-size ones are kept for reuse as the next
        segments' files, up to ``recycle_bytes`` of them (PostgreSQL recycles WAL segments,
        RocksDB's recycle_log_file_num): their blocks are written, so a sync into them
        commits no extent changes, which made the log's syncs twice as slow as a bare loop's
        on ext4 here; the salt in every record keeps their old records from being read as
        new. The rest are deleted. Returns the paths retired."""
        segs = self.segments()
        gone = [p for (first, p), (nxt, _) in zip(segs, segs[1:]) if nxt - 1 <= lsn and first != self._first]
        with self._recycle_lock:
            kept = self._recycled()
            room = self.recycle_bytes // self.segment_bytes - len(kept)
            serial = int(kept[-1].name[len(RECYCLED):]) + 1 if kept else 0
            for p in gone:
                if room > 0 and p.stat().st_size == self.segment_bytes:
                    self.files.rename(p, self.dir / f"{RECYCLED}{serial:012d}")
                    serial, room = serial + 1, room - 1
                else:
                    self.files.unlink(p)
        if gone:
            self.files.fsync_dir(self.dir)
        return gone

    def _recycled(self) -> list:
        """The kept segments' files, oldest first."""
        return sorted(p for p in self.dir.iterdir() if p.name.startswith(RECYCLED)
                      and p.name[len(RECYCLED):].isdigit())

    def _open_segment(self, first_lsn: int, size: int) -> None:
        """Make the segment that starts at ``first_lsn`` and switch to it (writer thread, or
        the constructor): header synced and the directory synced before any record."""
        path = self.dir / segment_name(first_lsn)
        salt = secrets.randbits(64)
        spare = self.dir / PREALLOC
        f = self.files
        recycled = self._spare and size <= self.segment_bytes and self._spare_recycled
        header = segment_header(self.torn_window, salt, first_lsn, time.time_ns(), RECYCLED_FILE if recycled else 0)
        if self._spare and size <= self.segment_bytes:
            fd = f.open(spare, os.O_RDWR)
            f.write(fd, [header])
            f.fdatasync(fd)
            f.rename(spare, path)
            self._spare = False
        else:
            fd = f.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            f.allocate(fd, size)
            f.write(fd, [header])
            f.fdatasync(fd)
        f.fsync_dir(self.dir)
        if self._fd >= 0:
            if self.policy == "none":       # a sealed segment is whole on disk
                f.fdatasync(self._fd)
            f.close(self._fd)
        self._fd, self._salt, self._first, self._in_recycled = fd, salt, first_lsn, recycled
        self._pos, self._size = SEGMENT_HEADER_SIZE, max(size, f.size(fd))

    def _prepare_spare(self) -> None:
        """Make the next segment's file ahead of need, so a full disk shows before records
        are queued that could not be written."""
        f, spare = self.files, self.dir / PREALLOC
        try:
            with self._recycle_lock:    # a spare left by an earlier run may hold old bytes too
                recycled = spare.exists()
                kept = [] if recycled else self._recycled()
                if kept:
                    f.rename(kept[0], spare)       # made durable by the directory sync below
                    recycled = True
            fd = f.open(spare, os.O_RDWR | os.O_CREAT)
            try:
                f.allocate(fd, self.segment_bytes)
                f.fsync(fd)
            finally:
                f.close(fd)
            f.fsync_dir(self.dir)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            with self._cond:
                if self._full is None:
                    log.error("engram: the disk holding %s is full (%s): writes are refused until "
                              "there is room for the next log segment", self.dir, e.strerror)
                self._full = e.strerror or "no space left on device"
                self._full_retry = time.monotonic() + RETRY_FULL_S
            return
        with self._cond:
            if self._full is not None:
                log.warning("engram: there is room on the disk again: writes resume")
            self._full, self._spare, self._spare_recycled = None, True, recycled

    # ---- the writer thread -------------------------------------------------------------
    def _take(self):
        """The next group (called with the lock held): records up to the torn window."""
        q, n, size = self._queue, 0, 0
        limit = 1 if self.policy == "always" else len(q)
        while n < limit and (n == 0 or size + RECORD_HEADER_SIZE + q[n][3] <= self.torn_window):
            size += RECORD_HEADER_SIZE + q[n][3]
            n += 1
        group, self._queue[:n] = q[:n], []
        self._queued_bytes -= size
        self._urgent = bool(self._queue)       # what is left over goes next, lazy or not
        self._lazy_since = time.monotonic()
        return group, size

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._urgent and self._sync_to <= self._synced and not self._closing:
                        if self._full is not None:
                            self._cond.wait(max(self._full_retry - time.monotonic(), 0.01))
                            if time.monotonic() >= self._full_retry:
                                break
                        elif self._queue:                # lazy records only: linger, then write them
                            left = self._lazy_since + LAZY_LINGER_S - time.monotonic()
                            if left <= 0:
                                break
                            self._cond.wait(left)
                        else:
                            self._cond.wait()
                    if not self._queue and self._closing:
                        return
                    group, size = self._take()
                    want_sync = self._sync_to
                if (not self._spare and self._pos * 2 >= self._size) or (self._full is not None
                                                                        and time.monotonic() >= self._full_retry):
                    self._prepare_spare()
                if group:
                    self._write(group, size)        # and synced, unless the policy is "none"
                synced = bool(group) and self.policy != "none"
                if not synced and want_sync > self._synced:
                    self.files.fdatasync(self._fd)
                    synced = True
                with self._cond:
                    last = group[-1][0] if group else self._written
                    self._written = last
                    if synced:
                        self._synced = last
                    self.bytes_logged += size
                    self._cond.notify_all()
        except OSError as e:
            with self._cond:
                self._failed = DurabilityError(f"{e.strerror or e} while writing {self.dir}")
                self._cond.notify_all()
            log.error("engram: the write-ahead log in %s failed (%s): no further writes are "
                      "acknowledged; reopen the engine to recover", self.dir, e)

    def _write(self, group: list, size: int) -> None:
        if self._pos + size > self._size:
            if self._pos == SEGMENT_HEADER_SIZE:    # nothing in it yet: make it big enough
                self.files.allocate(self._fd, SEGMENT_HEADER_SIZE + size)
                self._size = SEGMENT_HEADER_SIZE + size
            else:                                   # roll: the group starts a new segment
                self._open_segment(group[0][0], max(self.segment_bytes, SEGMENT_HEADER_SIZE + size))
        first = group[0][0]
        bufs = []
        for lsn, header, body, _ in group:      # recovery tells a torn last group from damage by these
            seal(header, self._salt, lsn - first)
            bufs.append(header)
            bufs += body
        # once synced, the group's pages leave the page cache: only recovery reads the log
        # back, and reusing freed pages is cheaper than new ones (on a VM whose memory is
        # backed on first touch, new pages cost ~10 us each: more than the write itself)
        end_mark = self._in_recycled and self._pos + size + RECORD_HEADER_SIZE <= self._size
        if end_mark:                # recovery reads a zeroed header as the log's end, not a torn write
            bufs.append(_END)
        synced = self.policy != "none"
        self.files.write_all(self._fd, bufs, synced, self._pos if synced else -1)
        self._pos += size
        if end_mark:                # the next group starts on the mark
            os.lseek(self._fd, self._pos, os.SEEK_SET)

    def close(self) -> None:
        """Write and sync everything queued, stop the thread, close the segment."""
        with self._cond:
            if self._closing:
                return
            self._sync_to = self._next - 1
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        if self._fd >= 0:
            if self._failed is None:
                try:
                    self.files.fdatasync(self._fd)
                except OSError as e:
                    log.error("engram: the last sync of the write-ahead log failed: %s", e)
            self.files.close(self._fd)
            self._fd = -1
        spare = self.dir / PREALLOC
        if spare.exists():
            self.files.unlink(spare)
