"""A space's approximate index kept beside its snapshots, so a reopened engine need not rebuild it.

    path/index/<space>.usearch    the usearch file, as the indexer saved it
    path/index/<space>.json       {"format", "dim", "rows", "size", "bytes", "crc32c", "lsn"}

The index is derived data: it covers the first ``rows`` rows of each tier's table, and
rows never change once written (a new vector is a new row), so it stays true for any
later state of the space that has those rows. It is saved at a checkpoint, after the
snapshot that holds those rows is on disk, so a recovery that brings the snapshot (or an
older one and the log after it) back brings the same rows back. Opening checks the
manifest's fields, the file's size and its CRC32C before usearch reads a byte; anything
wrong, missing or covering more rows than the recovered tables hold means the index is
rebuilt in the background (and says why), never that recall uses a wrong one.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from engram.store.files import FILES, Files
from engram.store.wal.format import crc32c

log = logging.getLogger("engram")

FORMAT = 1
CHUNK = 16 << 20
MAX_MANIFEST = 1 << 16


def _paths(path: Path, space: str):
    d = Path(path) / "index"
    return d, d / f"{space}.usearch", d / f"{space}.json"


def save(path: Path, space: str, source: str, rows: tuple, size: int, dim: int, lsn: int,
         files: Files = FILES) -> None:
    """Copy the index file ``source`` (covering ``rows``) into ``path``, durably: the data
    file and then its manifest, each written, synced and renamed into place."""
    d, data, manifest = _paths(path, space)
    if not d.is_dir():
        files.mkdir(d)
    tmp = data.with_suffix(".usearch.tmp")
    crc, n = 0, 0
    src = os.open(source, os.O_RDONLY)
    fd = files.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while chunk := os.read(src, CHUNK):
            crc = crc32c(chunk, crc)
            files.write_all(fd, [chunk], sync=False)
            n += len(chunk)
        files.fdatasync(fd)
    finally:
        files.close(fd)
        os.close(src)
    files.rename(tmp, data)
    body = json.dumps({"format": FORMAT, "dim": dim, "rows": list(rows), "size": size, "bytes": n, "crc32c": crc,
                       "lsn": lsn}).encode()
    tmp = manifest.with_suffix(".json.tmp")
    fd = files.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        files.write_all(fd, [body], sync=True)
    finally:
        files.close(fd)
    files.rename(tmp, manifest)
    files.fsync_dir(d)


def load(path: Path, space: str, dim: int, counts: tuple, dest: str):
    """Copy a space's saved index to ``dest`` if it holds up against the recovered tables
    (``counts``: rows of each tier): (rows, size), or None (nothing left at ``dest``), with
    the reason logged. The checksum is taken as the bytes are copied: the file is read once."""
    d, data, manifest = _paths(path, space)
    if not manifest.exists():
        return None
    why = _wrong(data, manifest, dim, counts, dest)
    if isinstance(why, str):
        try:
            os.unlink(dest)
        except FileNotFoundError:
            pass
        log.warning("engram: %s: the saved index of space %r is not used (%s); it is rebuilt in the background",
                    data, space, why)
        return None
    return why


def _wrong(data: Path, manifest: Path, dim: int, counts: tuple, dest: str):
    """What is wrong with a saved index (a str), or (rows, size) once it is copied to ``dest``."""
    try:
        if manifest.stat().st_size > MAX_MANIFEST:
            return f"its manifest is {manifest.stat().st_size:,} bytes"
        m = json.loads(manifest.read_bytes())
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            return f"manifest format {m.get('format') if isinstance(m, dict) else m!r}, not {FORMAT}"
        rows, size, n, crc = m.get("rows"), m.get("size"), m.get("bytes"), m.get("crc32c")
        if m.get("dim") != dim:
            return f"it is of dimension {m.get('dim')!r}, the space's is {dim}"
        if isinstance(rows, list) and len(rows) < len(counts):    # saved before a tier was added: none of it
            rows = rows + [0] * (len(counts) - len(rows))
        if not (isinstance(rows, list) and len(rows) == len(counts) and all(isinstance(r, int) and r >= 0
                                                                             for r in rows)):
            return f"its rows {rows!r} are not {len(counts)} counts"
        if any(r > c for r, c in zip(rows, counts)):
            return f"it covers rows {rows} and the recovered tables hold {list(counts)}"
        if not (isinstance(size, int) and 0 < size <= sum(rows)):
            return f"its size {size!r} does not fit its {sum(rows):,} rows"
        if not (isinstance(n, int) and isinstance(crc, int)):
            return "its manifest has no size or checksum"
        if data.stat().st_size != n:
            return f"the file is {data.stat().st_size:,} bytes, its manifest says {n:,}"
        got = 0
        with open(data, "rb") as f, open(dest, "xb") as out:
            while chunk := f.read(CHUNK):
                got = crc32c(chunk, got)
                out.write(chunk)
        if got != crc:
            return f"its CRC32C is {got:#010x}, its manifest says {crc:#010x}: the file is damaged"
    except (OSError, ValueError) as e:      # ValueError: JSON
        return f"{type(e).__name__}: {e}"
    return tuple(rows), size


def remove(path: Path, space: str, files: Files = FILES) -> None:
    """Forget a space's saved index (the manifest first: without it the data is not read)."""
    _, data, manifest = _paths(path, space)
    for p in (manifest, data):
        if p.exists():
            files.unlink(p)
