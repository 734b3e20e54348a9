"""The shared-memory ingest ring between a connected process and the owner
(docs/durability/ingest.md, "Another process").

One ring per channel: the connected process is its only producer, the owner's
channel thread its only consumer. The segment is an IngestRingHeader (the
layout schema) and then ``capacity`` bytes of records. ``head`` and ``tail``
count bytes ever appended and consumed; a record starts at ``head %
capacity`` and never wraps: where it would not fit before the end, a WRAP
marker fills the rest. The producer writes a record and then moves head; it
then rings the owner over the channel's socket, and the owner reads head only
after that message (a syscall between the two orders the stores on any CPU).

The producer may be buggy or hostile: the owner copies each record out of
the ring before it looks at it, checks every length against the ring and the
record, and a record it cannot frame ends the channel (RingDamaged).

    record header (32 bytes, little-endian):
      u32 kind, u32 length (header included, a multiple of 8), u64 op (0, 1, 2, ... per ring),
      u32 count, u32 tier, u32 flags, u32 text_bytes
    REMEMBER: f32 vectors[count][dim]; f32 confidence[count] if flags & HAS_CONFIDENCE;
              i32 text_len[count] (-1: None) and text_bytes of UTF-8 if flags & HAS_CONTENT
    LINK:     i64 src[count], i64 dst[count], f32 weight[count]
    FORGET:   i64 ids[count]
    WRAP:     the rest of the ring is empty; the next record starts at offset 0
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import numpy as np

from engram.errors import EngramError, InvalidInputError
from engram.layout import CONSTANTS, INGEST_RING_HEADER_DTYPE
from engram.store.shm import Segment

KIND = CONSTANTS["TABLE_INGEST_RING"]
RECORD = struct.Struct("<IIQIIII")      # kind, length, op, count, tier, flags, text_bytes
HEADER_BYTES = INGEST_RING_HEADER_DTYPE.itemsize
MIN_CAPACITY = 1 << 16
MAX_CAPACITY = 1 << 30
DEFAULT_CAPACITY = 32 << 20
HAS_CONFIDENCE, HAS_CONTENT = 1, 2


class Kind(enum.IntEnum):
    REMEMBER = 1
    LINK = 2
    FORGET = 3
    WRAP = 0xFFFF


class RingDamaged(EngramError):
    """A record the owner cannot frame: the channel ends (nothing of that record is applied)."""


@dataclass
class Op:
    """One record, decoded from the owner's copy of it."""
    op: int
    kind: Kind
    count: int
    tier: int = 0
    vectors: np.ndarray | None = None
    confidence: np.ndarray | None = None
    texts: list | None = None
    src: np.ndarray | None = None
    dst: np.ndarray | None = None
    weights: np.ndarray | None = None
    ids: np.ndarray | None = None


def _pad8(n: int) -> int:
    return (n + 7) & ~7


class Ring:
    """One end of a ring: ``create`` (the owner) or ``attach`` (the connected process)."""

    def __init__(self, seg: Segment):
        self.seg = seg
        self.header = seg.data[:HEADER_BYTES].view(INGEST_RING_HEADER_DTYPE)
        self.capacity = int(self.header["capacity"][0])
        self.dim = int(self.header["dim"][0])
        if not MIN_CAPACITY <= self.capacity <= MAX_CAPACITY or self.capacity % 8 or \
                HEADER_BYTES + self.capacity > seg.data.shape[0] or self.dim < 1:
            raise RingDamaged(f"{seg.name}: ring header names capacity {self.capacity} and dim {self.dim}, "
                              f"which the {seg.data.shape[0]}-byte segment cannot hold")
        self.area = seg.data[HEADER_BYTES:HEADER_BYTES + self.capacity]
        self.max_record = self.capacity // 2     # always fits once the ring is empty, wrapped or not

    @classmethod
    def create(cls, name: str, capacity: int, dim: int) -> "Ring":
        capacity = _pad8(min(max(int(capacity), MIN_CAPACITY), MAX_CAPACITY))
        seg = Segment.create(name, kind=KIND, data_bytes=HEADER_BYTES + capacity, capacity=capacity, dim=dim)
        h = seg.data[:HEADER_BYTES].view(INGEST_RING_HEADER_DTYPE)
        h["capacity"], h["dim"] = capacity, dim
        return cls(seg)

    @classmethod
    def attach(cls, name: str) -> "Ring":
        return cls(Segment.attach(name, kind=KIND, writable=True))

    def _get(self, field: str) -> int:
        return int(self.header[field][0])

    @property
    def head(self) -> int:
        return self._get("head")

    @property
    def tail(self) -> int:
        return self._get("tail")

    @property
    def closed(self) -> bool:
        return bool(self._get("closed"))

    def close(self, unlink: bool) -> None:
        name = self.seg.name
        self.header = self.area = None
        self.seg = None
        if unlink:
            Segment.unlink(name)

    # ---- the producer (a connected process) ---------------------------------------------
    def free(self) -> int:
        return self.capacity - (self.head - self.tail)

    def try_append(self, kind: Kind, op: int, count: int, parts: list, tier: int = 0, flags: int = 0,
                   text_bytes: int = 0) -> bool:
        """Write one record of ``parts`` (byte-like) and move head; False if it does not fit now."""
        views = [memoryview(p).cast("B") for p in parts]
        length = RECORD.size + _pad8(sum(v.nbytes for v in views))
        if length > self.max_record:
            raise InvalidInputError(f"a record of {length} bytes is larger than the ring allows "
                                    f"({self.max_record}): put fewer at a time")
        head, tail = self.head, self.tail
        pos = head % self.capacity
        wrap = self.capacity - pos if self.capacity - pos < length else 0
        if head + wrap + length - tail > self.capacity:
            return False
        area = self.area
        if wrap:
            struct.pack_into("<II", area, pos, Kind.WRAP, wrap)      # 8 bytes at least: all is 8-aligned
            pos = 0
        RECORD.pack_into(area, pos, kind, length, op, count, tier, flags, text_bytes)
        at = pos + RECORD.size
        for v in views:
            area[at:at + v.nbytes] = np.frombuffer(v, np.uint8)
            at += v.nbytes
        self.header["head"] = head + wrap + length     # last: the record is whole before head covers it
        return True

    # ---- the consumer (the owner) -------------------------------------------------------
    def take(self, expect_op: int, head: int | None = None):
        """The next record as (an owner's copy of its bytes, bytes it used in the ring), or
        None if the ring is empty up to ``head`` (default: the producer's head now)."""
        tail = self.tail
        head = self.head if head is None else head
        if head < tail or head - tail > self.capacity or head % 8:
            raise RingDamaged(f"ring {self.seg.name}: head {head} and tail {tail} do not bound a ring of "
                              f"{self.capacity} bytes")
        used = 0
        while tail + used < head:
            pos = (tail + used) % self.capacity
            kind, length = struct.unpack_from("<II", self.area, pos)
            if kind == Kind.WRAP:
                if length != self.capacity - pos or tail + used + length > head:
                    raise RingDamaged(f"ring {self.seg.name}: a wrap marker at {pos} of length {length}")
                used += length
                continue
            if length < RECORD.size or length % 8 or pos + length > self.capacity or \
                    tail + used + length > head or length > self.max_record:
                raise RingDamaged(f"ring {self.seg.name}: a record at {pos} claims {length} bytes "
                                  f"({head - tail - used} written, {self.capacity - pos} to the end)")
            raw = bytes(self.area[pos:pos + length])       # the owner's copy: checked from here on
            op = RECORD.unpack_from(raw)[2]
            if op != expect_op:
                raise RingDamaged(f"ring {self.seg.name}: record {op} where record {expect_op} was due")
            return raw, used + length
        return None

    def consumed(self, nbytes: int) -> None:
        self.header["tail"] = self.tail + nbytes

    def decode(self, raw: bytes) -> Op:
        """A record's fields as arrays (views of ``raw``), every size checked first."""
        kind, length, op, count, tier, flags, text_bytes = RECORD.unpack_from(raw)
        body = memoryview(raw)[RECORD.size:]
        try:
            kind = Kind(kind)
        except ValueError:
            raise RingDamaged(f"record {op} has unknown kind {kind}") from None
        if count == 0:
            raise RingDamaged(f"record {op} holds no items")
        if kind is Kind.REMEMBER:
            need = count * self.dim * 4 + (count * 4 if flags & HAS_CONFIDENCE else 0) + \
                (count * 4 + text_bytes if flags & HAS_CONTENT else 0)
        elif kind is Kind.LINK:
            need = count * 20
        else:
            need = count * 8
        if flags & ~(HAS_CONFIDENCE | HAS_CONTENT) or need > body.nbytes or _pad8(need) != body.nbytes:
            raise RingDamaged(f"record {op} ({kind.name}, {count} items, flags {flags}) needs {need} bytes "
                              f"of payload and has {body.nbytes}")
        out = Op(op, kind, count, tier)
        at = 0

        def take(dtype, n):
            nonlocal at
            a = np.frombuffer(body, dtype, n, at)
            at += a.nbytes
            return a

        if kind is Kind.REMEMBER:
            out.vectors = take("<f4", count * self.dim).reshape(count, self.dim)
            if flags & HAS_CONFIDENCE:
                out.confidence = take("<f4", count)
            if flags & HAS_CONTENT:
                out.texts = _texts(take("<i4", count), bytes(body[at:at + text_bytes]), op)
        elif kind is Kind.LINK:
            out.src, out.dst, out.weights = take("<i8", count), take("<i8", count), take("<f4", count)
        else:
            out.ids = take("<i8", count)
        return out


def _texts(lengths: np.ndarray, blob: bytes, op: int) -> list:
    """The record's texts from their lengths (-1: None) and their UTF-8 bytes."""
    if np.any(lengths < -1) or int(np.sum(lengths[lengths > 0])) != len(blob):
        raise RingDamaged(f"record {op}: text lengths do not add up to the {len(blob)} bytes of text")
    texts, at = [], 0
    for n in lengths.tolist():
        if n < 0:
            texts.append(None)
            continue
        try:
            texts.append(blob[at:at + n].decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InvalidInputError(f"content of record {op} is not valid UTF-8: {e}") from None
        at += n
    return texts


def encode_texts(texts: list) -> tuple:
    """(i32 lengths, UTF-8 bytes) of a list of str or None: the REMEMBER record's content."""
    enc = [None if t is None else t.encode("utf-8") for t in texts]
    lengths = np.array([-1 if b is None else len(b) for b in enc], "<i4")
    return lengths, b"".join(b for b in enc if b)
