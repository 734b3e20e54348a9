"""One POSIX shared-memory segment: a SegmentHeader, then data.

The owner creates segments mode 0600 and is their only writer. Others attach
read-only (PROT_READ), which the header check guards: magic, format version,
layout hash and owner uid must all match, or attach is refused with a message
that says which and why. Numpy arrays are views on the mapping, so they stay
valid after the name is unlinked (a table that grew): the mapping lives as
long as any view of it. A segment created with ``keep_fd`` also keeps its file
open, so the owner can fill it with ``write_at`` (pwrite): the kernel copies into
the file's pages, which costs a third of first touching them through the mapping.
"""
from __future__ import annotations

import mmap
import os
import time
import weakref

import numpy as np
import posix_ipc

from engram.errors import LayoutMismatchError, SegmentError
from engram.layout import FORMAT_VERSION, LAYOUT_HASH, SEGMENT_HEADER_DTYPE, SEGMENT_MAGIC

HEADER_SIZE = SEGMENT_HEADER_DTYPE.itemsize  # 128: keeps data 64-byte aligned
ALIGN = 64


def align_up(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def plan(*sizes: int) -> tuple:
    """Regions of these byte sizes laid out one after another, each starting 64-byte aligned:
    (their offsets, the bytes they take together)."""
    offsets, off = [], 0
    for size in sizes:
        offsets.append(off)
        off = align_up(off + size)
    return offsets, off


class Segment:
    """A mapped segment. ``header`` is a 0-d structured view; ``data`` is a uint8 view."""

    def __init__(self, name: str, mm: mmap.mmap, writable: bool, fd: int = -1):
        self.name = name
        self.writable = writable
        self._mm = mm
        self._fd = fd
        if fd >= 0:
            weakref.finalize(self, os.close, fd)
        buf = np.frombuffer(mm, dtype=np.uint8)
        if not writable:
            buf.flags.writeable = False
        self.bytes = buf
        self.header = buf[:HEADER_SIZE].view(SEGMENT_HEADER_DTYPE)[0:1]
        self.data = buf[HEADER_SIZE:]

    @property
    def size(self) -> int:
        return self.bytes.shape[0]

    def h(self, field: str) -> int:
        return int(self.header[field][0])

    def set(self, field: str, value) -> None:
        self.header[field] = value

    def array(self, offset: int, dtype, count: int, shape=None) -> np.ndarray:
        """A view of ``count`` items of ``dtype`` at byte ``offset`` of the data region; an
        offset or count read from a header is checked here against the segment's size."""
        dtype = np.dtype(dtype)
        offset, count = int(offset), int(count)
        end = offset + dtype.itemsize * count
        if offset < 0 or count < 0 or end > self.data.shape[0]:
            raise SegmentError(f"{self.name}: view [{offset}, {end}) is outside the segment's data "
                               f"({self.data.shape[0]} bytes): the segment is damaged or of another layout")
        a = self.data[offset:end].view(dtype)
        return a.reshape(shape) if shape is not None else a

    def write_at(self, offset: int, data) -> None:
        """Copy ``data`` (a contiguous buffer) to byte ``offset`` of the data region through
        the file (the segment was created with ``keep_fd``): pages the mapping has not
        touched yet are filled by the kernel instead of faulted in one by one. OSError
        (ENOSPC: /dev/shm is full) if it does not fit; a short write is continued."""
        m = memoryview(data).cast("B")
        at = HEADER_SIZE + offset
        if offset < 0 or at + m.nbytes > self.size:
            raise SegmentError(f"{self.name}: a write of {m.nbytes} bytes at {offset} is outside the segment")
        while m.nbytes:
            n = os.pwrite(self._fd, m, at)
            m, at = m[n:], at + n

    @classmethod
    def create(cls, name: str, *, kind: int, data_bytes: int, capacity: int, row_bytes: int = 0,
               dim: int = 0, generation: int = 0, keep_fd: bool = False) -> "Segment":
        size = HEADER_SIZE + align_up(max(data_bytes, 1), mmap.PAGESIZE)
        try:
            shm = posix_ipc.SharedMemory(name, flags=posix_ipc.O_CREX, mode=0o600, size=size)
        except posix_ipc.ExistentialError as e:
            raise SegmentError(f"shared-memory segment {name} already exists: {e}") from e
        except (OSError, posix_ipc.Error) as e:
            raise SegmentError(f"cannot create shared-memory segment {name} of {size} bytes: {e}") from e
        fd = -1
        try:
            os.fchmod(shm.fd, 0o600)  # whatever the umask
            mm = mmap.mmap(shm.fd, size)
            if keep_fd:
                fd = os.dup(shm.fd)
        except OSError as e:
            shm.unlink()
            raise SegmentError(f"cannot map {name} ({size} bytes): {e}") from e
        finally:
            shm.close_fd()
        seg = cls(name, mm, writable=True, fd=fd)
        hdr = seg.header
        hdr["format_version"] = FORMAT_VERSION
        hdr["header_size"] = HEADER_SIZE
        hdr["layout_hash"] = LAYOUT_HASH
        hdr["generation"] = generation
        hdr["capacity"] = capacity
        hdr["count"] = 0
        hdr["owner_pid"] = os.getpid()
        hdr["owner_uid"] = os.getuid()
        hdr["kind"] = kind
        hdr["row_bytes"] = row_bytes
        hdr["created_ns"] = time.time_ns()
        hdr["dim"] = dim
        hdr["magic"] = SEGMENT_MAGIC  # last: a reader that sees the magic sees the rest
        return seg

    @classmethod
    def attach(cls, name: str, *, kind: int | None = None, writable: bool = False) -> "Segment":
        try:
            shm = posix_ipc.SharedMemory(name, flags=0, read_only=not writable)
        except posix_ipc.ExistentialError as e:
            raise SegmentError(f"no shared-memory segment {name}: the engine has exited or the name is wrong") from e
        except posix_ipc.PermissionsError as e:
            raise SegmentError(f"not allowed to open {name}: it belongs to another user") from e
        try:
            st = os.fstat(shm.fd)
            if st.st_uid != os.getuid():
                raise SegmentError(f"{name} is owned by uid {st.st_uid}, not you (uid {os.getuid()}); "
                                   "refusing to attach")
            if st.st_size < HEADER_SIZE:
                raise SegmentError(f"{name} is {st.st_size} bytes, too small to be an engram segment")
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            mm = mmap.mmap(shm.fd, st.st_size, prot=prot)
        finally:
            shm.close_fd()
        seg = cls(name, mm, writable=writable)
        seg.check(kind)
        return seg

    def check(self, kind: int | None = None) -> None:
        magic = self.h("magic")
        if magic != SEGMENT_MAGIC:
            raise SegmentError(f"{self.name} is not an engram segment (magic 0x{magic:016x}), "
                               "or is still being created")
        if self.h("format_version") != FORMAT_VERSION:
            raise LayoutMismatchError(f"{self.name} has format version {self.h('format_version')}, "
                                      f"this engram reads version {FORMAT_VERSION}: use the engram that created it")
        if self.h("layout_hash") != LAYOUT_HASH:
            raise LayoutMismatchError(f"{self.name} was written with layout 0x{self.h('layout_hash'):016x}, this "
                                      f"engram has layout 0x{LAYOUT_HASH:016x}: attach with the same engram "
                                      "version as the owner")
        if self.h("owner_uid") != os.getuid():
            raise SegmentError(f"{self.name} names owner uid {self.h('owner_uid')}, not you; refusing to attach")
        if kind is not None and self.h("kind") != kind:
            raise SegmentError(f"{self.name} holds table kind {self.h('kind')}, expected {kind}")

    @staticmethod
    def unlink(name: str) -> bool:
        try:
            posix_ipc.unlink_shared_memory(name)
            return True
        except posix_ipc.ExistentialError:
            return False
