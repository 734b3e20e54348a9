"""Snapshots of an engine's memory spaces on disk (``Engine(path=...)``).

    path/LOCK                 flock'd by the one engine that owns the path
    path/CURRENT              JSON manifest naming the live snapshot; replaced atomically
    path/snap-000007/<space>.npz   the tables of one space (uncompressed .npy members)

A save writes a new snapshot directory, fsyncs every file and the directory,
then swaps CURRENT with write-aside + fsync + rename, and only then removes
older snapshots; a crash at any point leaves the previous snapshot intact.
What a snapshot holds is exactly the published part of each table, so a load
rebuilds the same shared-memory state (ids, links, content, access times).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np

from engram.errors import EngramError, LayoutMismatchError
from engram.layout import PERSISTED_HASH
from engram.store.tables import TIER_TABLE

FORMAT = 2   # 2: row norms are stored with the rows


class SnapshotError(EngramError, OSError):
    """A snapshot directory is unusable (locked by another engine, or damaged)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PathLock:
    """Exclusive ownership of a snapshot directory for one live engine."""

    def __init__(self, path: Path):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise SnapshotError(f"{path} is in use by another running engram.Engine (pid {holder}); one "
                                "engine owns a path at a time: attach to it, or close that one") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def space_arrays(store) -> dict:
    """The published tables of one space, as plain arrays."""
    n = store.n_nodes
    out = {"hot": store.hot().copy(), "node_row": store.views["nodes"]["node_row"][:n].copy(),
           "content": store.views["content"]["heap"][:store.count("content")].copy()}
    for tier, table in TIER_TABLE.items():
        rows, row_node, row_live, row_norm = store.tier_rows(tier)
        out[f"{table}_rows"] = np.ascontiguousarray(rows)
        out[f"{table}_row_node"] = row_node.copy()
        out[f"{table}_row_live"] = row_live.copy()
        out[f"{table}_row_norm"] = row_norm.copy()
    csr = store.csr()
    out["csr_offsets"] = csr["offsets"].copy()
    out["csr_targets"] = csr["targets"].copy()
    out["csr_weights"] = csr["weights"].copy()
    d = store.dir[0]
    out["counters"] = np.array([d["next_id"], d["n_live"], d["n_links"]], np.uint64)
    return out


def save(path: Path, dim: int, stores: dict, extra: dict | None = None) -> Path:
    """Write every space (compacted by the caller) as a new snapshot; returns its directory.
    extra: {space: {name: array}} kept beside the tables (reconsolidation's versions); a
    load returns them with the tables, and a snapshot without them loads as before."""
    current = read_manifest(path)
    seq = (current or {}).get("seq", 0) + 1
    snap = path / f"snap-{seq:06d}"
    if snap.exists():
        shutil.rmtree(snap)
    snap.mkdir(mode=0o700)
    for name, store in stores.items():
        with open(snap / f"{name}.npz", "wb") as f:
            np.savez(f, **space_arrays(store), **(extra or {}).get(name, {}))
            f.flush()
            os.fsync(f.fileno())
    _fsync_dir(snap)
    manifest = {"format": FORMAT, "seq": seq, "snapshot": snap.name, "dim": dim,
                "record_hash": f"0x{PERSISTED_HASH:016x}", "spaces": sorted(stores)}
    tmp = path / "CURRENT.tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / "CURRENT")
    _fsync_dir(path)
    for old in path.glob("snap-*"):
        if old.name != snap.name:
            shutil.rmtree(old, ignore_errors=True)
    return snap


def read_manifest(path: Path):
    f = path / "CURRENT"
    if not f.exists():
        return None
    try:
        m = json.loads(f.read_text())
        m["seq"] = int(m["seq"])
        return m
    except (ValueError, KeyError) as e:
        raise SnapshotError(f"{f} is damaged ({e}); move it aside to start empty") from e


def current(path: Path):
    """The manifest of the snapshot at path, checked to be one this engram reads (its
    "dim" says the spaces' dimension); None if there is none."""
    m = read_manifest(path)
    if m is None:
        return None
    if m.get("format") != FORMAT:
        raise SnapshotError(f"{path} holds snapshot format {m.get('format')}, this engram reads {FORMAT}")
    # only the records a snapshot keeps decide (schema.PERSISTED), not the run-time boards
    if int(m.get("record_hash", "0x0"), 16) != PERSISTED_HASH:
        raise LayoutMismatchError(f"{path} was written with node records {m.get('record_hash', 'of an older layout')}"
                                  f", this engram has 0x{PERSISTED_HASH:016x}: open it with the engram version "
                                  "that wrote it")
    return m


def load(path: Path, manifest: dict) -> dict:
    """{space name: arrays} of the snapshot a manifest from current() names."""
    m = manifest
    out = {}
    for name in m["spaces"]:
        with np.load(path / m["snapshot"] / f"{name}.npz", allow_pickle=False) as z:
            out[name] = {k: z[k] for k in z.files}
    return out


def restore(store, arrs: dict, derive) -> None:
    """Fill a new, empty SpaceStore from ``space_arrays`` output (derive: as Graph's)."""
    n = arrs["hot"].shape[0]
    store.reserve("nodes", n)
    store.views["nodes"]["hot"][:n] = arrs["hot"]
    store.views["nodes"]["node_row"][:n] = arrs["node_row"]
    for table in TIER_TABLE.values():
        rows = arrs[f"{table}_rows"]
        r = rows.shape[0]
        store.reserve(table, r)
        v = store.views[table]
        v["rows"][:r, :store.dim] = rows
        v["row_node"][:r] = arrs[f"{table}_row_node"]
        v["row_live"][:r] = arrs[f"{table}_row_live"]
        v["row_norm"][:r] = arrs[f"{table}_row_norm"]
        store.publish(table, r)
    content = arrs["content"]
    store.reserve("content", content.shape[0])
    store.views["content"]["heap"][:content.shape[0]] = content
    store.publish("content", content.shape[0])
    off, tg, w = arrs["csr_offsets"], arrs["csr_targets"], arrs["csr_weights"]
    store.replace_csr(off, tg, w, derive(off, tg, w), 0)
    store.publish("nodes", n)
    next_id, n_live, n_links = (int(x) for x in arrs["counters"])
    store.dir["next_id"], store.dir["n_live"], store.dir["n_links"] = next_id, n_live, n_links
    store.bump()
