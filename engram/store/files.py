"""The file operations that durability rests on, in one small object.

Every byte the write-ahead log and the snapshots put on disk goes through a
``Files``: open, write, fdatasync, rename, directory fsync, unlink. The
engine uses ``FILES`` (plain ``os`` calls); the crash tests hand the log and
the snapshot writer a recording ``Files`` that can later materialise what a
power loss would leave (SQLite's crash VFS and CrashMonkey are the model), and
fault-injecting ones (a failing fdatasync, a full disk). Nothing here retries:
an error reaches the caller, which decides (the log stops acknowledging).
"""
from __future__ import annotations

import ctypes
import os

# sync_file_range(2), which the os module does not offer: Linux only (None elsewhere)
_libc = ctypes.CDLL(None, use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    _sync_file_range.restype = ctypes.c_int
SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
IOV_MAX = 1024              # buffers per writev (Linux)


class Files:
    """Durable file I/O through ``os``; subclasses observe or fail it."""

    def open(self, path, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, buffers: list) -> int:
        """All of ``buffers`` (bytes-like objects) at the file position, or OSError: a
        short write is retried for the rest, as POSIX allows writes to stop early."""
        total = sum(memoryview(b).nbytes for b in buffers)
        done = os.writev(fd, buffers)
        while done < total:                     # rare: signals, or a nearly full disk
            rest, skip = [], done
            for b in buffers:
                m = memoryview(b).cast("B")
                if skip >= m.nbytes:
                    skip -= m.nbytes
                    continue
                rest.append(m[skip:])
                skip = 0
            n = os.writev(fd, rest)
            if n == 0:
                raise OSError(28, "no progress writing (disk full?)")
            done += n
        return total

    def write_all(self, fd: int, buffers: list, sync: bool, drop_from: int = -1) -> None:
        """All of ``buffers`` at the file position, then fdatasync if ``sync``: a log group;
        then, with ``drop_from`` >= 0 (the position they were written at), ``drop_cached``
        for them. Plain Files do it all in one call that holds no GIL from the first byte
        to the end (taking the GIL back between the steps costs the log writer
        milliseconds while other threads run Python); a subclass that overrides ``write``
        or ``fdatasync`` sees them as calls of their own, IOV_MAX buffers at a time."""
        if type(self).write is Files.write and type(self).fdatasync is Files.fdatasync:
            from engram.kernels._cy.stream import write_all  # compiled: imported at first use
            write_all(fd, buffers, sync, drop_from)
            return
        for i in range(0, len(buffers), IOV_MAX):
            self.write(fd, buffers[i:i + IOV_MAX])
        if sync:
            self.fdatasync(fd)
        if drop_from >= 0:
            self.drop_cached(fd, drop_from, sum(memoryview(b).nbytes for b in buffers))

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        return os.pread(fd, n, offset)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def writeback(self, fd: int, offset: int, nbytes: int, wait: bool) -> None:
        """Start writing a written range of a file to disk now (sync_file_range), and with
        ``wait`` wait until it is written and drop it from the page cache. Not durability:
        only fdatasync is; it bounds how much dirty data a big file (a snapshot) piles up
        for the next sync, the file system's journal and the log's syncs to wait behind.
        Does nothing where sync_file_range is missing or refused."""
        if _sync_file_range is None:
            return
        flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER if wait \
            else SYNC_FILE_RANGE_WRITE
        if _sync_file_range(fd, offset, nbytes, flags) == 0 and wait:
            self.drop_cached(fd, offset, nbytes)

    def drop_cached(self, fd: int, offset: int, nbytes: int) -> None:
        """Let the page cache drop a written range that is on disk (POSIX_FADV_DONTNEED;
        dirty pages stay): bytes nobody reads back soon should not push out ones that are,
        and the kernel reuses the freed pages for the next writes."""
        os.posix_fadvise(fd, offset, nbytes, os.POSIX_FADV_DONTNEED)

    def fsync_dir(self, path) -> None:
        """Make a directory's entries (a create, rename or unlink in it) durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def mkdir(self, path) -> None:
        """Make a directory (mode 0700) and make its name durable in its parent."""
        os.mkdir(path, 0o700)
        self.fsync_dir(os.path.dirname(os.path.abspath(path)))

    def allocate(self, fd: int, size: int) -> None:
        """Reserve ``size`` bytes of disk for the file now, so a full disk is found here and
        not halfway through a group of records (ENOSPC raises OSError)."""
        os.posix_fallocate(fd, 0, size)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def rename(self, src, dst) -> None:
        os.replace(src, dst)

    def unlink(self, path) -> None:
        os.unlink(path)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size


FILES = Files()
