"""The log's bytes: segment headers and record framing (docs/durability/wal-format.md).

Nothing here does I/O; the writer frames records with ``frame`` and recovery
checks them with ``parse_header`` / ``check_record``.
"""
from __future__ import annotations

import enum
import re
import struct

from engram import kernels

MAGIC = b"ENGRAMWL"
VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sIIQQQB19x")      # magic, version, torn_window, salt, first_lsn, created_ns, flags
SEGMENT_HEADER_SIZE = 64                            # the struct above (60 bytes) + crc32c
RECORD_HEADER = struct.Struct("<IIQQHBBII4x")       # crc, len, lsn, seq, space, type, flags, group, payload crc
RECORD_HEADER_SIZE = RECORD_HEADER.size             # 40
MAX_RECORD = 16 << 20       # payload bytes: a larger length is damage, not a record
MAX_CHUNK = 4 << 20         # a call's payload is cut into records of at most this
TORN_WINDOW = 8 << 20       # the most bytes the writer leaves unsynced at once
SEGMENT_BYTES = 64 << 20
CONTINUED = 1
RECYCLED_FILE = 1           # segment flag: its file held an older segment, whose bytes follow the records
KEYED = 2            # the payload starts with an idempotency key's block (engram/store/keys.py)
POLICIES = ("always", "group", "none")
NAME = re.compile(r"^(\d{20})\.wal$")


class RecordType(enum.IntEnum):
    SPACE = 1
    REMEMBER = 2
    LINK = 3
    FORGET = 4
    STATE = 5
    RECONSOLIDATE = 6
    SETTINGS = 7
    MIGRATE = 8


KNOWN_TYPES = frozenset(int(t) for t in RecordType)


def segment_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}.wal"


_crc = None


def crc32c(data, crc: int = 0) -> int:
    global _crc
    if _crc is None:      # chosen at first use, not import, so importing engram stays silent
        _crc = kernels.backend()._crc32c
    return _crc(memoryview(data).cast("B"), crc)


def sealed(packer: struct.Struct, *values) -> bytes:
    """``packer``'s bytes followed by their CRC32C: a header that checks itself (the log's
    segment header, the snapshot file's header and footer)."""
    body = packer.pack(*values)
    return body + struct.pack("<I", crc32c(body))


def segment_header(torn_window: int, salt: int, first_lsn: int, created_ns: int, flags: int = 0) -> bytes:
    return sealed(SEGMENT_HEADER, MAGIC, VERSION, torn_window, salt, first_lsn, created_ns, flags)


def parse_segment_header(raw: bytes):
    """(torn_window, salt, first_lsn, flags) of a segment header, or a str saying what is wrong."""
    if len(raw) < SEGMENT_HEADER_SIZE:
        return f"the file is {len(raw)} bytes, shorter than a segment header ({SEGMENT_HEADER_SIZE})"
    body, (crc,) = raw[:60], struct.unpack_from("<I", raw, 60)
    magic, version, window, salt, first, _, flags = SEGMENT_HEADER.unpack(body)
    if magic != MAGIC:
        return f"it does not start with {MAGIC!r} (found {magic!r})"
    if crc != crc32c(body):
        return "its header checksum does not match"
    if version != VERSION:
        return f"it is log format version {version}; this engram reads {VERSION}"
    if not 0 < window <= 1 << 40:
        return f"its torn window ({window}) is not a size"
    return window, salt, first, flags


def padded(n: int) -> int:
    return (n + 7) & ~7


_PAD = [bytes(i) for i in range(8)]


def payload(parts: list) -> tuple:
    """A record's payload from its parts: (body buffers, padded bytes, CRC32C). The body is
    the parts themselves and their padding, not a copy (the caller keeps them unchanged until
    the record is written: a call waits for that); the CRC is computed here, in the caller's
    thread and before the log's lock is taken."""
    views = [memoryview(p).cast("B") for p in parts]
    n = sum(v.nbytes for v in views)
    crc = 0
    for v in views:
        crc = crc32c(v, crc)
    return (views + [_PAD[padded(n) - n]] if n % 8 else views), n, crc


def frame(lsn: int, seq: int, space: int, rtype: int, flags: int, n: int, crc: int) -> bytearray:
    """A record's header for a payload of ``n`` bytes and checksum ``crc`` (``payload``),
    unsealed: the writer seals it (``seal``)."""
    header = bytearray(RECORD_HEADER_SIZE)
    RECORD_HEADER.pack_into(header, 0, 0, n, lsn, seq, space, rtype, flags, 0, crc)
    return header


def seal(header: bytearray, salt: int, group: int) -> None:
    """Write a framed record's group offset (its LSN minus the first LSN of the group it is
    written in) and its header CRC, which covers the segment's salt and the payload's CRC."""
    struct.pack_into("<I", header, 28, group)
    struct.pack_into("<I", header, 0, crc32c(memoryview(header)[4:RECORD_HEADER_SIZE],
                                             crc32c(salt.to_bytes(8, "little"))))


def check_record(buf, off: int, end: int, salt: int, expect_lsn: int | None):
    """The record at ``off`` of ``buf`` (valid bytes up to ``end``): (lsn, seq, space, type,
    flags, group, payload memoryview, next offset) if it is valid and has LSN ``expect_lsn``
    (None: any LSN, for the damage scan), else None."""
    if off + RECORD_HEADER_SIZE > end:
        return None
    crc, n, lsn, seq, space, rtype, flags, group, body_crc = RECORD_HEADER.unpack_from(buf, off)
    if n > MAX_RECORD or off + RECORD_HEADER_SIZE + n > end or rtype not in KNOWN_TYPES or group > lsn:
        return None
    if expect_lsn is not None and lsn != expect_lsn:
        return None
    m = memoryview(buf)
    if crc != crc32c(m[off + 4:off + RECORD_HEADER_SIZE], crc32c(salt.to_bytes(8, "little"))):
        return None
    body = m[off + RECORD_HEADER_SIZE:off + RECORD_HEADER_SIZE + n]
    if body_crc != crc32c(body):
        return None
    return lsn, seq, space, rtype, flags, group, body, off + RECORD_HEADER_SIZE + padded(n)
