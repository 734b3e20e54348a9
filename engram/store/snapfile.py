"""Snapshot files: every space's tables at one log sequence number, in one checked file.

    path/snap-<lsn:020d>.snap    a snapshot (docs/durability/snapshot-format.md)
    path/CURRENT                 {"format": 3, "snapshot": name, "lsn": n}: a hint, not the truth

A file is a 64-byte header, the arrays (each 64-byte aligned), a JSON index
(dtype, shape, offset, size and CRC32C of every array) and a 64-byte footer
that locates and checksums the index. Every size is checked against the file
before anything is mapped or allocated, every array against its CRC, and
nothing is unpickled. A snapshot becomes visible only after its bytes are on
disk (write, fdatasync, rename, directory fsync), so a crash leaves either the
old set of snapshots or the new one. Format-2 snapshot directories of .npz
files (earlier engram releases) are read once and replaced at the first
checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import mmap
import os
import re
import struct
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engram.errors import LayoutMismatchError, SnapshotError
from engram.layout import PERSISTED_HASH
from engram.store.files import FILES, Files
from engram.store.wal.format import crc32c, sealed

log = logging.getLogger("engram")

FORMAT = 3
LEGACY_FORMAT = 2
MAGIC, END_MAGIC = b"ENGRAMSN", b"ENGRAMSE"
HEADER = struct.Struct("<8sIIQQ28x")         # magic, version, dim, lsn, created_ns (+ crc32c)
# magic, version, index crc, index offset, index size, lsn, file size (+ crc32c)
FOOTER = struct.Struct("<8sIIQQQQ12x")
BLOCK = 64
MAX_INDEX = 64 << 20                         # an index beyond this is damage, not a big engine
MAX_ITEMSIZE = 4096
WRITE_CHUNK = 16 << 20                       # written and sent to disk in pieces of this (_write_in_chunks)
MAX_IOV = 512                                # buffers per write, below the system's IOV_MAX (1024)
NAME = re.compile(r"^snap-(\d{20})\.snap$")
assert HEADER.size + 4 == FOOTER.size + 4 == BLOCK


@dataclass
class SpaceImage:
    """One space as a snapshot holds it: its number in log records, the last per-space
    sequence number it covers, its persisted settings and its arrays."""
    name: str
    index: int
    seq: int
    settings: dict
    arrays: dict = field(repr=False)


@dataclass
class Snapshot:
    file: Path
    lsn: int
    dim: int
    record_hash: str
    spaces: list
    _map: object = field(default=None, repr=False)

    def close(self) -> None:
        """Let go of the file mapping (arrays still referenced keep it alive until dropped)."""
        self.spaces = []
        m, self._map = self._map, None
        if m is not None:
            _unmap(m)


def _unmap(m) -> None:
    try:
        m.close()
    except BufferError:      # a view of it is still alive: unmapped when that goes
        pass


def file_name(lsn: int) -> str:
    return f"snap-{lsn:020d}.snap"


def _unsealed(packer: struct.Struct, raw: bytes, file: Path, what: str) -> tuple:
    if len(raw) != packer.size + 4 or struct.unpack_from("<I", raw, packer.size)[0] != crc32c(raw[:packer.size]):
        raise SnapshotError(f"{file}: the {what} is damaged (checksum mismatch)")
    return packer.unpack_from(raw)


def _dtype_spec(dt: np.dtype):
    return dt.descr if dt.names else dt.str


# ---- writing -------------------------------------------------------------------------------
def write(path: Path, lsn: int, dim: int, record_hash: str, spaces: list, files: Files = FILES,
          before_publish=None) -> Path:
    """Write a snapshot of ``spaces`` at ``lsn`` and make it the current one; returns its file.
    ``before_publish()`` runs after the file's bytes are durable and before its name is
    (the engine syncs the log there, so a snapshot never runs ahead of the log)."""
    final = path / file_name(lsn)
    tmp = path / (final.name + ".tmp")
    index, blobs, at = {"format": FORMAT, "lsn": lsn, "dim": dim, "record_hash": record_hash, "spaces": []}, [], BLOCK
    for img in spaces:
        entry = {"name": img.name, "index": img.index, "seq": img.seq, "settings": img.settings, "arrays": {}}
        for key, arr in img.arrays.items():
            a = np.ascontiguousarray(arr)
            data = memoryview(a).cast("B") if a.size else memoryview(b"")
            entry["arrays"][key] = {"dtype": _dtype_spec(a.dtype), "shape": list(a.shape), "offset": at,
                                    "nbytes": a.nbytes, "crc32c": crc32c(data)}
            pad = -a.nbytes % BLOCK
            blobs += [data, bytes(pad)] if pad else [data]
            at += a.nbytes + pad
        index["spaces"].append(entry)
    raw_index = json.dumps(index, separators=(",", ":")).encode()
    size = at + len(raw_index) + BLOCK
    header = sealed(HEADER, MAGIC, FORMAT, dim, lsn, time.time_ns())
    footer = sealed(FOOTER, END_MAGIC, FORMAT, crc32c(raw_index), at, len(raw_index), lsn, size)
    fd = files.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        _write_in_chunks(fd, [header, *blobs, raw_index, footer], files)
        files.fdatasync(fd)
    finally:
        files.close(fd)
    if before_publish is not None:
        before_publish()
    files.rename(tmp, final)
    files.fsync_dir(path)
    _write_current(path, final.name, lsn, files)
    return final


def _write_in_chunks(fd: int, buffers: list, files: Files) -> None:
    """Write ``buffers`` in pieces, starting the writeback of each WRITE_CHUNK bytes as soon
    as they are written and waiting for the chunk before: at most about two chunks are
    dirty at once. A snapshot is as large as the engine; written whole and then synced,
    gigabytes of dirty pages would make every log sync meanwhile wait behind them (one
    disk, one ext4 journal), stalling acknowledgements for seconds."""
    pending, size = [], 0
    at = started = waited = 0        # written, writeback started, writeback waited for: up to here
    for b in buffers:
        m = memoryview(b).cast("B")
        while m.nbytes:
            take = min(m.nbytes, WRITE_CHUNK - size)
            pending.append(m[:take])
            m, size = m[take:], size + take
            if size < WRITE_CHUNK and len(pending) < MAX_IOV:
                continue
            files.write(fd, pending)
            pending, at, size = [], at + size, 0
            if at - started >= WRITE_CHUNK:
                files.writeback(fd, started, at - started, wait=False)
                if started > waited:
                    files.writeback(fd, waited, started - waited, wait=True)
                waited, started = started, at
    if pending:
        files.write(fd, pending)


def _write_current(path: Path, name: str, lsn: int, files: Files) -> None:
    tmp = path / "CURRENT.tmp"
    fd = files.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        files.write(fd, [json.dumps({"format": FORMAT, "snapshot": name, "lsn": lsn}).encode()])
        files.fsync(fd)
    finally:
        files.close(fd)
    files.rename(tmp, path / "CURRENT")
    files.fsync_dir(path)


def prune(path: Path, keep: set, files: Files = FILES) -> None:
    """Remove snapshots whose LSN is not in ``keep`` (and leftovers of interrupted writes)."""
    for lsn, f in snapshots(path):
        if lsn not in keep:
            files.unlink(f)
    for f in path.glob("snap-*.snap.tmp"):
        files.unlink(f)
    files.fsync_dir(path)


# ---- reading -------------------------------------------------------------------------------
def snapshots(path: Path) -> list:
    """[(lsn, file)] of the snapshot files at path, newest first."""
    found = [(int(m.group(1)), f) for f in path.glob("snap-*.snap") if (m := NAME.match(f.name))]
    return sorted(found, reverse=True)


def _current(path: Path):
    """(the file CURRENT names or None, what is wrong with CURRENT or None)."""
    f = path / "CURRENT"
    try:
        m = json.loads(f.read_bytes()[:4096])
        name = m["snapshot"]
        if m.get("format") != FORMAT or not isinstance(name, str) or not NAME.match(name):
            raise ValueError(f"it names {name!r} in format {m.get('format')!r}")
        return path / name, None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        log.warning("engram: %s is damaged (%s); looking for the newest valid snapshot instead", f, e)
        return None, f"{f} is damaged ({e})"


def newest(path: Path):
    """The snapshot to open path from: the one CURRENT names if it reads, else the newest
    valid one (with a warning); None if there is no snapshot at all. Refuses (SnapshotError)
    rather than open an engine empty when snapshots exist and none reads."""
    named, damage = _current(path)
    candidates = [f for _, f in snapshots(path)]
    if named is not None and named in candidates:
        candidates.remove(named)
        candidates.insert(0, named)
    problems = []
    for f in candidates:
        try:
            snap = read(f)
        except SnapshotError as e:
            problems.append(str(e))
            log.warning("engram: %s; trying an older snapshot", e)
            continue
        if f != named:
            log.warning("engram: opening %s from %s, which CURRENT does not name", path, f.name)
        return snap
    if problems:
        raise SnapshotError(f"{path}: no snapshot reads: " + "; ".join(problems))
    if named is not None or damage:
        what = damage or f"{path}/CURRENT names {named.name}, which is missing"
        raise SnapshotError(f"{what}, and no snapshot file exists; refusing to open this directory empty "
                            "(move CURRENT aside to start an empty engine here)")
    if any(path.glob("snap-[0-9][0-9][0-9][0-9][0-9][0-9]")):
        raise SnapshotError(f"{path} holds format-{LEGACY_FORMAT} snapshot directories but no CURRENT names "
                            "one; restore CURRENT or move them aside (refusing to open empty)")
    return None


def _check_hash(file: Path, record_hash) -> None:
    try:
        ok = int(str(record_hash), 16) == PERSISTED_HASH
    except ValueError:
        ok = False
    if not ok:
        raise LayoutMismatchError(f"{file} was written with node records {record_hash}, this engram has "
                                  f"0x{PERSISTED_HASH:016x}: open it with the engram version that wrote it")


def read(file: Path) -> Snapshot:
    """Map and check one snapshot file; SnapshotError names the file and what is wrong."""
    try:
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 2 * BLOCK:
                raise SnapshotError(f"{file}: {size} bytes is too short for a snapshot")
            m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    except OSError as e:
        if isinstance(e, SnapshotError):
            raise
        raise SnapshotError(f"{file}: cannot be read ({e.strerror or e})") from None
    try:
        return _parse(file, m, size)
    except BaseException:
        _unmap(m)
        raise


def _parse(file: Path, m, size: int) -> Snapshot:
    magic, version, dim, lsn, _ = _unsealed(HEADER, m[:BLOCK], file, "header")
    if magic != MAGIC:
        raise SnapshotError(f"{file}: not an engram snapshot (magic {magic!r})")
    if version != FORMAT:
        raise SnapshotError(f"{file}: snapshot format {version}, this engram reads {FORMAT}")
    magic, version, index_crc, at, n, flsn, fsize = _unsealed(FOOTER, m[size - BLOCK:size], file, "footer")
    if magic != END_MAGIC or fsize != size or flsn != lsn or at + n != size - BLOCK or n > MAX_INDEX or at < BLOCK:
        raise SnapshotError(f"{file}: the footer does not fit the file ({size} bytes; index at {at}, {n} "
                            f"bytes; file size {fsize} recorded)")
    raw = m[at:at + n]
    if crc32c(raw) != index_crc:
        raise SnapshotError(f"{file}: the index is damaged (checksum mismatch)")
    try:
        index = json.loads(raw)
        if index["lsn"] != lsn or index["dim"] != dim or index.get("format") != FORMAT:
            raise ValueError("it disagrees with the header")
        _check_hash(file, index["record_hash"])
        spaces = [_space(file, m, at, s) for s in index["spaces"]]
    except (ValueError, KeyError, TypeError) as e:
        raise SnapshotError(f"{file}: the index is malformed ({e})") from None
    return Snapshot(file, lsn, dim, index["record_hash"], spaces, m)


def _space(file: Path, m, end: int, entry: dict) -> SpaceImage:
    name, number, seq, settings = entry["name"], entry["index"], entry["seq"], entry["settings"]
    if not (isinstance(name, str) and isinstance(settings, dict) and type(number) is int and type(seq) is int
            and 0 <= number < 1 << 16 and seq >= 0):
        raise ValueError(f"space entry {name!r} has bad fields")
    arrays = {}
    for key, a in entry["arrays"].items():
        dt = _dtype(a["dtype"])
        shape = tuple(a["shape"])
        if not all(type(x) is int and x >= 0 for x in shape):
            raise ValueError(f"array {key!r} has shape {shape}")
        nbytes, offset = math.prod(shape) * dt.itemsize, a["offset"]
        if nbytes != a["nbytes"] or type(offset) is not int or offset % BLOCK or not BLOCK <= offset <= end - nbytes:
            raise SnapshotError(f"{file}: array {name}/{key} claims {a['nbytes']} bytes at {offset} as "
                                f"{dt} {shape}, which does not fit the file")
        data = memoryview(m)[offset:offset + nbytes]
        if crc32c(data) != a["crc32c"]:
            raise SnapshotError(f"{file}: array {name}/{key} at offset {offset} is damaged (checksum mismatch)")
        arrays[key] = np.frombuffer(data, dt).reshape(shape) if nbytes else np.zeros(shape, dt)
    return SpaceImage(name, number, seq, settings, arrays)


def _dtype(spec) -> np.dtype:
    """A dtype from the index: plain numbers, bytes and text, or records of them; never objects."""
    if isinstance(spec, list):
        spec = [tuple(tuple(x) if isinstance(x, list) else x for x in f) for f in spec]
    try:
        dt = np.dtype(spec)
    except (TypeError, ValueError) as e:
        raise ValueError(f"dtype {spec!r} ({e})") from None
    if dt.hasobject or dt.itemsize > MAX_ITEMSIZE or dt.itemsize == 0 and not dt.names:
        raise ValueError(f"dtype {spec!r} is not one a snapshot holds")
    return dt


# ---- format-2 directories (earlier releases) -----------------------------------------------
def legacy_manifest(path: Path):
    """The format-2 manifest in path/CURRENT, or None if CURRENT is not one."""
    try:
        m = json.loads((path / "CURRENT").read_bytes()[:65536])
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(m, dict) or m.get("format") != LEGACY_FORMAT:
        return None
    if not isinstance(m.get("snapshot"), str) or not re.fullmatch(r"snap-\d{6}", m["snapshot"]) or \
            not isinstance(m.get("spaces"), list) or type(m.get("dim")) is not int:
        raise SnapshotError(f"{path}/CURRENT is a format-{LEGACY_FORMAT} manifest with bad fields")
    _check_hash(path / "CURRENT", m.get("record_hash", "of an older layout"))
    return m


def read_legacy(snap_dir: Path, manifest: dict) -> Snapshot:
    """A format-2 snapshot directory as a Snapshot at LSN 0 (it predates the log)."""
    spaces = []
    for i, name in enumerate(manifest["spaces"]):
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise SnapshotError(f"{snap_dir}: the manifest names space {name!r}")
        f = snap_dir / f"{name}.npz"
        arrays = _read_npz(f)
        settings = {}
        if "settings" in arrays:
            try:
                settings = json.loads(str(arrays.pop("settings")))
            except ValueError as e:
                raise SnapshotError(f"{f}: the settings are damaged ({e})") from None
        spaces.append(SpaceImage(name, i, 0, settings, arrays))
    return Snapshot(snap_dir, 0, manifest["dim"], manifest.get("record_hash", ""), spaces)


HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npz(f: Path) -> dict:
    """The .npy members of an uncompressed .npz, each size checked before it is read."""
    out = {}
    try:
        with zipfile.ZipFile(f) as z:
            for info in z.infolist():
                key = info.filename.removesuffix(".npy")
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > f.stat().st_size:
                    raise SnapshotError(f"{f}: member {info.filename} is compressed or larger than the file")
                with z.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = HEADER_READERS.get(version)
                    if read_header is None:
                        raise SnapshotError(f"{f}: member {info.filename} is .npy version {version}")
                    shape, fortran, dt = read_header(member)
                    if dt.hasobject:
                        raise SnapshotError(f"{f}: member {info.filename} holds Python objects")
                    need = math.prod(shape) * dt.itemsize
                    if need != info.file_size - member.tell():
                        raise SnapshotError(f"{f}: member {info.filename} claims {dt} {shape} ({need} bytes) "
                                            f"in {info.file_size} bytes")
                    data = member.read(need)
                out[key] = np.frombuffer(data, dt).reshape(shape, order="F" if fortran else "C")
    except SnapshotError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        raise SnapshotError(f"{f}: damaged ({type(e).__name__}: {e})") from None
    return out
