"""One POSIX shared-memory segment: a SegmentHeader, then data.

The owner creates segments mode 0600 and is their only writer. Others attach
read-only (PROT_READ), which the header check guards: every header field is
checked before use (magic, format version, header size, layout hash, owner uid,
kind, flags, count against capacity, dim), and a segment that fails is refused
with an AttachError that names the segment and the field. What a header says about
the data (a table's capacity, a board's offsets) is checked by the module that
reads that data, through ``array``, which refuses a view outside the segment.
Numpy arrays are views on the mapping, so they stay valid after the name is
unlinked (a table that grew): the mapping lives as long as any view of it. A
segment created with ``keep_fd`` also keeps its file open, so the owner can fill it
with ``write_at`` (pwrite): the kernel copies into the file's pages, which costs a
third of first touching them through the mapping.

A name with a directory in it (``/data/cold/eg...``, not ``/eg...``) is a file-backed
segment: a regular file there, mapped shared. The cold tier lives in one
(engram/store/tables.py), so the kernel can write its pages back to the disk and drop
them under memory pressure, which it cannot do for /dev/shm without swap.
"""
from __future__ import annotations

import logging
import mmap
import os
import stat
import time
import weakref

import numpy as np
import posix_ipc

from engram.config import MAX_DIM
from engram.errors import AttachError, SegmentError, SegmentLayoutError
from engram.layout import FORMAT_VERSION, LAYOUT_HASH, SEGMENT_HEADER_DTYPE, SEGMENT_MAGIC, schema
from engram.store.shm.names import fresh_salt

HEADER_SIZE = SEGMENT_HEADER_DTYPE.itemsize  # 128: keeps data 64-byte aligned
ALIGN = 64
KINDS = {v: k.removeprefix("TABLE_").lower() for k, v in schema.CONSTANTS.items() if k.startswith("TABLE_")}
_TABLES = {schema.CONSTANTS[f"TABLE_{t.upper()}"] for t in schema.TABLES}
#: the kinds whose header carries each field; in every other kind it is 0
USES = {"generation": _TABLES,
        "dim": _TABLES | {schema.CONSTANTS[k] for k in ("TABLE_DIRECTORY", "TABLE_TASKS", "TABLE_INGEST_RING")},
        "row_bytes": {schema.CONSTANTS[f"TABLE_{t.upper()}"] for t in schema.TABLES if t.startswith("emb")}}
NAME_ATTEMPTS = 8      # fresh names tried before giving up (a clash means someone planted the name)

log = logging.getLogger("engram.shm")


class NameTakenError(SegmentError):
    """Segment.create: the name exists already."""


def is_file(name: str) -> bool:
    """A file-backed segment's name is a path with a directory; a shared-memory name is /name."""
    return os.sep in name[1:]


def _open(name: str, create: bool, writable: bool, size: int = 0) -> int:
    """An open descriptor of a segment's file (sized, when created); the errors posix_ipc raises."""
    if not is_file(name):
        if create:
            shm = posix_ipc.SharedMemory(name, flags=posix_ipc.O_CREX, mode=0o600, size=size)
        else:
            shm = posix_ipc.SharedMemory(name, flags=0, read_only=not writable)
        fd = os.dup(shm.fd)
        shm.close_fd()
        return fd
    flags = os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_RDWR if writable or create else os.O_RDONLY)
    try:
        fd = os.open(name, flags | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
    except (FileExistsError, FileNotFoundError) as e:
        raise posix_ipc.ExistentialError(str(e)) from e
    except PermissionError as e:
        raise posix_ipc.PermissionsError(str(e)) from e
    if create:
        try:
            os.ftruncate(fd, size)      # sparse: the disk takes what is written (Segment.allocate)
            os.posix_fallocate(fd, 0, min(size, HEADER_SIZE))   # the header is written through the mapping
        except OSError:
            os.close(fd)
            os.unlink(name)
            raise
    return fd


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


def _natural_alignment(dtype: np.dtype) -> int:
    """The alignment a view of ``dtype`` needs: its itemsize's largest power-of-two factor, at most 8."""
    return min(8, dtype.itemsize & -dtype.itemsize) if dtype.itemsize else 1


class Segment:
    """A mapped segment. ``header`` is a 0-d structured view; ``data`` is a uint8 view."""

    def __init__(self, name: str, mm: mmap.mmap, writable: bool, fd: int = -1):
        self.name = name
        self.writable = writable
        self.salt = None        # the random end of its name, when create_fresh made it
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

    def refuse(self, field: str, what: str, cls=AttachError):
        """An AttachError naming this segment and the field found wrong (raise it)."""
        return cls(f"{self.name}: {field} {what}", self.name, field)

    def array(self, offset: int, dtype, count: int, shape=None, field: str = "") -> np.ndarray:
        """A view of ``count`` items of ``dtype`` at byte ``offset`` of the data region. An
        offset or count read from a header is checked here against the segment's size (and
        the offset against the dtype's alignment); ``field`` names the header field(s) they
        came from, for the AttachError that refuses them."""
        dtype = np.dtype(dtype)
        offset, count = int(offset), int(count)
        end = offset + dtype.itemsize * count
        if offset < 0 or count < 0 or end > self.data.shape[0]:
            raise self.refuse(field or "view", f"puts {count:,} x {dtype.itemsize} bytes at [{offset:,}, {end:,}), "
                              f"outside the segment's {self.data.shape[0]:,} bytes of data: the segment is damaged "
                              "or of another layout")
        if offset % _natural_alignment(dtype):
            raise self.refuse(field or "view", f"puts {dtype.itemsize}-byte items at offset {offset:,}, which is not "
                              f"{_natural_alignment(dtype)}-byte aligned: the segment is damaged")
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

    def allocate(self, offset: int, length: int) -> None:
        """Give a file-backed segment's data region disk blocks at [offset, offset + length)
        before they are written through the mapping: a store into a hole the disk has no room
        for is SIGBUS, where this is an OSError (ENOSPC). Kept open with ``keep_fd``."""
        os.posix_fallocate(self._fd, HEADER_SIZE + offset, length)

    @classmethod
    def create(cls, name: str, *, kind: int, data_bytes: int, capacity: int, row_bytes: int = 0,
               dim: int = 0, generation: int = 0, keep_fd: bool = False) -> "Segment":
        size = HEADER_SIZE + align_up(max(data_bytes, 1), mmap.PAGESIZE)
        try:
            opened = _open(name, True, True, size)
        except posix_ipc.ExistentialError as e:
            raise NameTakenError(f"shared-memory segment {name} already exists: {e}") from e
        except (OSError, posix_ipc.Error) as e:
            raise SegmentError(f"cannot create shared-memory segment {name} of {size} bytes: {e}") from e
        fd = -1
        try:
            os.fchmod(opened, 0o600)  # whatever the umask
            mm = mmap.mmap(opened, size)
            if keep_fd:
                fd = os.dup(opened)
        except OSError as e:
            cls.unlink(name)
            raise SegmentError(f"cannot map {name} ({size} bytes): {e}") from e
        finally:
            os.close(opened)
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
    def create_fresh(cls, name_for, **kw) -> "Segment":
        """``create`` under ``name_for(salt)`` with a fresh random salt, and another if that name
        exists (no accident: another user created it first); the salt is kept as ``.salt``."""
        for _ in range(NAME_ATTEMPTS):
            salt = fresh_salt()
            try:
                seg = cls.create(name_for(salt), **kw)
            except NameTakenError as e:
                log.warning("engram: %s; trying another name", e)
                continue
            seg.salt = salt
            return seg
        raise SegmentError(f"{NAME_ATTEMPTS} fresh names like {name_for(0)} were all taken in /dev/shm: another "
                           "process is creating them first")

    @classmethod
    def attach(cls, name: str, *, kind: int | None = None, writable: bool = False) -> "Segment":
        try:
            opened = _open(name, False, writable)
        except posix_ipc.ExistentialError as e:
            raise AttachError(f"no shared-memory segment {name}: the engine has exited or the name is wrong",
                              name) from e
        except posix_ipc.PermissionsError as e:
            raise AttachError(f"not allowed to open {name}: it belongs to another user", name) from e
        except (OSError, posix_ipc.Error) as e:
            raise AttachError(f"cannot open {name}: {e}", name) from e
        try:
            st = os.fstat(opened)
            if not stat.S_ISREG(st.st_mode):
                raise AttachError(f"{name} is not a regular file", name)
            if st.st_uid != os.getuid():
                raise AttachError(f"{name} is owned by uid {st.st_uid}, not you (uid {os.getuid()}); "
                                  "refusing to attach", name)
            if st.st_size < HEADER_SIZE:
                raise AttachError(f"{name} is {st.st_size} bytes, too small to be an engram segment", name)
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            try:
                mm = mmap.mmap(opened, st.st_size, prot=prot)
            except OSError as e:
                raise AttachError(f"cannot map {name} ({st.st_size} bytes): {e}", name) from e
        finally:
            os.close(opened)
        seg = cls(name, mm, writable=writable)
        seg.check(kind)
        return seg

    def check(self, kind: int | None = None) -> None:
        """Refuse (AttachError) a header any of whose fields is wrong for this engram and this
        user: the magic, format, header size, layout, owner, kind, flags, count, dim."""
        magic = self.h("magic")
        if magic != SEGMENT_MAGIC:
            raise self.refuse("magic", f"is 0x{magic:016x}: not an engram segment, or still being created")
        if self.h("format_version") != FORMAT_VERSION:
            raise self.refuse("format_version", f"is {self.h('format_version')}, this engram reads version "
                              f"{FORMAT_VERSION}: use the engram that created it", SegmentLayoutError)
        if self.h("header_size") != HEADER_SIZE:
            raise self.refuse("header_size", f"is {self.h('header_size')}, engram's segment header is "
                              f"{HEADER_SIZE} bytes", SegmentLayoutError)
        if self.h("layout_hash") != LAYOUT_HASH:
            raise self.refuse("layout_hash", f"says it was written with layout 0x{self.h('layout_hash'):016x}, "
                              f"this engram has layout 0x{LAYOUT_HASH:016x}: attach with the same engram version "
                              "as the owner", SegmentLayoutError)
        if self.h("owner_uid") != os.getuid():
            raise self.refuse("owner_uid", f"names uid {self.h('owner_uid')}, not you (uid {os.getuid()}); "
                              "refusing to attach")
        if self.h("owner_pid") == 0:
            raise self.refuse("owner_pid", "is 0: no process made this segment")
        if self.h("kind") not in KINDS:
            raise self.refuse("kind", f"is {self.h('kind')}, which is no kind of engram segment")
        if kind is not None and self.h("kind") != kind:
            raise self.refuse("kind", f"is {self.h('kind')} ({KINDS[self.h('kind')]}), expected {kind} "
                              f"({KINDS.get(kind, '?')})")
        if self.h("flags") != 0:
            raise self.refuse("flags", f"is 0x{self.h('flags'):x}: this engram knows no segment flags")
        if self.h("count") > self.h("capacity"):
            raise self.refuse("count", f"{self.h('count'):,} is more than the capacity {self.h('capacity'):,}")
        if self.h("dim") > MAX_DIM:
            raise self.refuse("dim", f"{self.h('dim'):,} is more than engram's largest dimension {MAX_DIM:,}")
        for field, kinds in USES.items():
            if self.h("kind") not in kinds and self.h(field) != 0:
                raise self.refuse(field, f"is {self.h(field):,}; a {KINDS[self.h('kind')]} segment has none")
        if self.h("row_bytes") > self.data.shape[0]:
            raise self.refuse("row_bytes", f"{self.h('row_bytes'):,} is more than the segment's "
                              f"{self.data.shape[0]:,} bytes of data")

    @staticmethod
    def unlink(name: str) -> bool:
        """Remove a name; False if it was gone or could not be removed (it is not ours)."""
        try:
            if is_file(name):
                os.unlink(name)
            else:
                posix_ipc.unlink_shared_memory(name)
            return True
        except (posix_ipc.ExistentialError, FileNotFoundError):
            return False
        except (posix_ipc.PermissionsError, OSError) as e:
            log.warning("engram: could not remove shared-memory segment %s: %s", name, e)
            return False
