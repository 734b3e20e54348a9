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

import os


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

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        return os.pread(fd, n, offset)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

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
