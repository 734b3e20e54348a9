"""A quantised sketch of a space's indexed rows: 4 bits an element, one row per memory,
scanned whole.

The HNSW index (engram/recall/ann.py) finds a memory's neighbours in a few hundred
vector reads, but on data without clusters (hashed word vectors, noise) its recall falls
below what recall promises, and the audit (engram/recall/audit.py) then scans every row
exactly: 1 ms at 10K x 384 f32 and 3 ms at 30K, bound by memory bandwidth. The sketch is
the same rows at an eighth of the bytes, scanned with an exact integer dot product
(engram.h's eg_sketch_topk); its nearest candidates are then scored exactly from the
stored rows like the index's, so a quantisation error can only reorder what lies near
the cut, which the oversampled candidates absorb. The audit measures its recall like a
search breadth's and chooses it only when it reaches the target.

Why 4 bits: the scan's cost follows the bytes it reads and multiplies, and the candidates
are re-scored anyway. An int8 sketch of WordNet-30K x 384 (11.5 MB) took 0.58 ms at the
median on this machine, the 4-bit one 0.3 ms, and the candidates' recall@10 against an
exact scan stayed 1.000 (64 candidates, hashed word vectors and clustered dense vectors
at 384 and 768: the numbers are in docs/scale.md, "The sketch").

The index's builder (engram/workers/indexrun.py) writes it beside each index file for
spaces up to MAX_BYTES of sketch (past that a scan costs more than the index's search),
or up to HARD_MAX_BYTES where the audit found the index's search expensive on the
space's data, from the live rows the index covers. A row is quantised by its own largest magnitude to
integers in [-7, 7], stored as codes value + 8; byte b of a row holds element b in its
low nibble and element half + b in its high one (half = ceil(dim / 2); an odd dim's last
high nibble is a zero element), so the kernel reads a query's two halves in order. A
row's scale is 1 / the quantised row's norm, so the kernel's score ranks as cosine does.
The query is quantised to int8 by its own largest magnitude (its norm does not change
the order).

File (little-endian; every size checked against the file before anything is mapped):

    0   8   magic b"EGSKTCH2"  (EGSKTCH1, the int8 sketch before it, is refused: exact scans
                               until the index's next generation brings a new one)
    8   4   dim (u32)
    12  4   zero
    16  8   count (u64)
    24  40  zero
    64      ids: int64[count]        the memory ids
            scale: f32[count]        1 / norm of the quantised row (0: a zero row)
    R       rows: uint8[count x half], R = the first multiple of 64 after the scales
"""
from __future__ import annotations

import mmap
import os
import stat
import struct

import numpy as np

from engram.errors import AttachError

MAGIC = b"EGSKTCH2"
HEAD = struct.Struct("<8sII Q40x")
#: a sketch larger than this is not written: its scan would cost more than the index's
#: search, and it would cost memory where the index serves alone (at 100K x 384 the audit
#: kept HNSW at ef 64). 16 MiB: 85K x 384 or 42K x 768, the row counts the int8 sketch
#: stopped at (32 MiB then), ~1 ms of scan on this machine
MAX_BYTES = 16 << 20
#: ... and up to this where the owner's audit found the index misses its recall target at
#: every cheap breadth (engram/recall/audit.py, Audit.hard): on such data the search needs
#: a breadth of 512 or more, or the exact scan, and a whole scan of the sketch (~8.5 ns a
#: row at 384-d) costs less than either. 64 MiB: 350K x 384 or 175K x 768, ~3 ms of scan
HARD_MAX_BYTES = 64 << 20
LEVELS = 7                   # elements are quantised to [-LEVELS, LEVELS]
OFFSET = 8                   # stored code = value + OFFSET, in [0, 15]
CHUNK = 4096                 # rows quantised at a time (the builder's memory stays bounded)


def half(dim: int) -> int:
    """Bytes of one row: two elements a byte."""
    return (dim + 1) // 2


def fits(count: int, dim: int, limit: int | None = None) -> bool:
    """Whether a sketch of ``count`` rows of ``dim`` is written at all: at most ``limit``
    bytes of rows (None: MAX_BYTES)."""
    return 0 < count * half(dim) <= (MAX_BYTES if limit is None else limit)


def rows_offset(count: int) -> int:
    return -(-(HEAD.size + 12 * count) // 64) * 64


def file_size(count: int, dim: int) -> int:
    return rows_offset(count) + count * half(dim)


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(packed uint8 rows, f32 scales) of f32/f16 rows ``x``: each row by its largest
    magnitude to integers in [-LEVELS, LEVELS], packed two a byte as the module says; the
    scale is 1 / the quantised row's norm (0 for a zero or non-finite row)."""
    x = np.asarray(x, np.float32)
    n, dim = x.shape
    big = np.abs(x).max(axis=1, initial=0.0) if dim else np.zeros(n, np.float32)
    ok = np.isfinite(big) & (big > 0)
    big = big.astype(np.float64)        # LEVELS / a subnormal largest magnitude overflows float32
    mult = np.where(ok, LEVELS / np.where(ok, big, 1.0), 0.0)
    v = np.zeros((n, 2 * half(dim)), np.int8)
    v[:, :dim] = np.clip(np.rint(np.nan_to_num(x) * mult[:, None]), -LEVELS, LEVELS)
    norm = np.sqrt(np.einsum("ij,ij->i", v, v, dtype=np.int64).astype(np.float64))
    scale = np.where(norm > 0, 1.0 / np.where(norm > 0, norm, 1.0), 0.0).astype(np.float32)
    codes = (v + OFFSET).astype(np.uint8)
    h = half(dim)
    return codes[:, :h] | (codes[:, h:] << 4), scale


def unpack(rows: np.ndarray) -> np.ndarray:
    """The int8 elements of packed rows (2 x their bytes a row; an odd dim's last is 0)."""
    rows = np.asarray(rows, np.uint8)
    return np.concatenate([(rows & 15).astype(np.int8), (rows >> 4).astype(np.int8)], axis=1) - OFFSET


def quantize_query(q: np.ndarray) -> np.ndarray:
    """One query as the kernel reads it: int8 in [-127, 127] by its largest magnitude,
    padded to two elements a row byte, in a few numpy calls: recall pays this per query."""
    q = np.asarray(q, np.float32)
    out = np.zeros(2 * half(q.shape[0]), np.int8)
    big = float(np.max(np.abs(q))) if q.shape[0] else 0.0
    if 0.0 < big < np.inf:          # in float64: 127 / a subnormal magnitude overflows float32
        out[:q.shape[0]] = np.rint(q.astype(np.float64) * (127.0 / big))
    elif q.shape[0] and np.isinf(big):      # the infinite elements alone, at full scale
        out[:q.shape[0]] = np.where(np.isinf(q), np.sign(q) * 127, 0)
    return out


def write(path: str, dim: int, parts, count: int) -> None:
    """Write a sketch of ``count`` rows to ``path`` (a new file): ``parts`` yields
    (memory ids, f32/f16 rows) in any number of pieces that add up to ``count``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, file_size(count, dim))
        os.pwrite(fd, HEAD.pack(MAGIC, dim, 0, count), 0)
        at = 0
        for got_ids, got_rows in parts:
            for a in range(0, got_ids.shape[0], CHUNK):
                b = min(a + CHUNK, got_ids.shape[0])
                if at + b - a > count:
                    raise ValueError(f"the sketch was sized for {count:,} rows and given more")
                rows, scale = quantize(got_rows[a:b])
                os.pwrite(fd, np.ascontiguousarray(got_ids[a:b], "<i8").tobytes(), HEAD.size + 8 * at)
                os.pwrite(fd, scale.astype("<f4").tobytes(), HEAD.size + 8 * count + 4 * at)
                os.pwrite(fd, rows.tobytes(), rows_offset(count) + half(dim) * at)
                at += b - a
        if at != count:
            raise ValueError(f"the sketch was sized for {count:,} rows and given {at:,}")
    finally:
        os.close(fd)


class Sketch:
    """One sketch file, memory-mapped read-only and checked: the same layout test for
    every process, so a damaged or foreign file is refused, never read past its end."""

    def __init__(self, path: str, dim: int, count: int):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as e:
            raise AttachError(f"{path}: the space's sketch file cannot be opened ({e.strerror})", path) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                raise AttachError(f"{path}: the sketch file is not a regular file of this user: not opened", path)
            want = file_size(count, dim)
            if st.st_size != want:
                raise AttachError(f"{path}: the sketch file has {st.st_size:,} bytes; {count:,} rows of {dim} need "
                                  f"{want:,}: not used", path)
            self._map = mmap.mmap(fd, want, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, got_dim, zero, got_count = HEAD.unpack_from(self._map)
        if magic != MAGIC or got_dim != dim or zero or got_count != count:
            self._map.close()
            raise AttachError(f"{path}: the sketch file's head says {magic!r}, dim {got_dim}, {got_count:,} rows; "
                              f"expected {MAGIC!r}, dim {dim}, {count:,} rows: not used", path)
        self.path, self.dim, self.count = path, dim, count
        self.ids = np.frombuffer(self._map, np.int64, count, HEAD.size)
        self.scale = np.frombuffer(self._map, np.float32, count, HEAD.size + 8 * count)
        self.rows = np.frombuffer(self._map, np.uint8, count * half(dim), rows_offset(count)).reshape(count, half(dim))

    def __len__(self) -> int:
        return self.count

    def candidates(self, kern, q: np.ndarray, n: int) -> np.ndarray:
        """The memory ids (int64) of the ``n`` rows nearest to ``q`` by the sketch, best
        first; forgotten ones included (the caller's exact scoring drops them)."""
        idx, _ = kern.sketch_topk(quantize_query(q), self.rows, self.scale, n)
        ids = self.ids[idx]
        if len(set(ids.tolist())) != ids.shape[0]:     # a file is written with each memory once; a
            _, first = np.unique(ids, return_index=True)    # damaged one must not repeat answers
            ids = ids[np.sort(first)]
        return ids
