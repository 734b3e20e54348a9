"""An engine's directory on disk: opening it (newest valid snapshot, then the log after it),
logging every change from then on, checkpoints, and the last flush at close.

    path/LOCK                         flock'd by the one engine that owns the path
    path/cold/                        the cold tier's tables while the engine runs (not data: rebuilt at open)
    path/CURRENT                      names the newest snapshot (a hint: a damaged one is passed over)
    path/snap-<lsn>.snap              snapshots (docs/durability/snapshot-format.md)
    path/wal/<first lsn>.wal          the write-ahead log (docs/durability/wal-format.md)
    path/index/<space>.usearch|.json  a space's approximate index, saved at checkpoints (derived
                                      data: engram/store/indexfile.py)

Opening needs no manual step after a crash: recovery cuts a torn tail and
refuses any other damage (WALError). A checkpoint holds the writers only while
it reads the LSN and copies the small tables; old log segments go only after
the snapshot that covers them, and one older snapshot with its log, is durable.
"""
from __future__ import annotations

import errno
import logging
import shutil
import threading
import time
from pathlib import Path

from engram import validate
from engram.cognition.fan import fan_weights
from engram.errors import SnapshotError, StorageFullError, WALError
from engram.layout import PERSISTED_HASH
from engram.recall.ann import AnnState, index_path
from engram.store import image, indexfile, snapfile
from engram.store.files import FILES, Files
from engram.store.mutations import STATE_COALESCE_S
from engram.store.shm.names import fresh_salt
from engram.store.snapshot import PathLock
from engram.store.wal import Log, RecordType, recover
from engram.threads import named_thread

log = logging.getLogger("engram")
MB = 1 << 20
#: a checkpoint waits for at least this many times the last snapshot's size of log: snapshot
#: bytes stay at most half the logged bytes, however large the engine grows (at 1, the disk
#: wrote every logged byte twice); the price is up to this many snapshots' worth of log to
#: replay after a crash, and about 2 x (1 + this) snapshots of disk (docs/durability/wal-format.md)
LOG_PER_SNAPSHOT = 2
RECORD_HASH = f"0x{PERSISTED_HASH:016x}"


class Persistence:
    """The durable side of one engine with a path. ``make_space(name) -> Owned`` creates a
    space in the engine (the owner's own method, so replay builds spaces as a caller would)."""

    def __init__(self, path: Path, durability: str, files: Files = FILES,
                 checkpoint_mb: float = 256.0, checkpoint_s: float = 300.0, segment_bytes: int | None = None):
        self.path, self.policy, self.files = path, durability, files
        self.segment_bytes = segment_bytes      # None: the log format's default
        self.checkpoint_bytes, self.checkpoint_s = int(checkpoint_mb * MB), checkpoint_s
        self.lock = PathLock(path)      # ours before anything is read, so no other engine replaces it
        self.log: Log | None = None
        self.owned: dict = {}           # space name -> Owned
        self.by_index: dict = {}        # space number in log records -> Owned
        self.recovery = None
        self._snap_lsns: list = []      # snapshots on disk we keep, newest first
        self._legacy = None             # a format-2 snapshot directory read at open
        self._at_checkpoint = (0, time.monotonic())
        self._snap_bytes = 0            # the last snapshot's size: see due()
        self._stop = threading.Event()
        self._checkpointer = None
        self._checkpoint_lock = threading.Lock()
        self._index_saved: dict = {}    # space -> (generation, salt) of its index saved in path/index
        try:
            self.cold_dir = self._cold_dir()
            self.snapshot = self._newest()
        except BaseException:
            self.lock.release()
            raise
        self.dim = self.snapshot.dim if self.snapshot is not None else None

    def _cold_dir(self) -> Path:
        """path/cold, where the cold tier's tables live (file-backed), emptied of any left by a
        run that did not close: they are rebuilt from the snapshot and the log."""
        d = (self.path / "cold").resolve()     # absolute: readers in other processes open it
        d.mkdir(mode=0o700, exist_ok=True)
        for f in d.iterdir():
            if f.is_file() and not f.is_symlink():
                f.unlink()
        return d

    def _newest(self):
        legacy = snapfile.legacy_manifest(self.path)
        if legacy is not None:
            self._legacy = self.path / legacy["snapshot"]
            return snapfile.read_legacy(self._legacy, legacy)
        return snapfile.newest(self.path)

    # ---- open ------------------------------------------------------------------------------
    def open(self, make_space, hold) -> None:
        """Load the snapshot, replay the log after it, and start logging. ``hold``: a context
        manager that holds every space's writers (the engine's), for checkpoints."""
        snap = self.snapshot
        self._make, self._hold = make_space, hold
        after = 0
        if snap is not None:
            try:
                for img in snap.spaces:
                    o = self._space(img.name, img.index)
                    what = image.check(img.arrays, snap.dim)
                    if what:
                        raise SnapshotError(f"{snap.file}: space {img.name!r}: {what}")
                    image.restore(o.store, img.arrays, fan_weights)
                    o.labile.restore(img.arrays)
                    o.changes.keys.restore(img.arrays)
                    o.apply_settings(img.settings)
                    o.changes.seq = img.seq
            finally:
                snap.close()
            after = snap.lsn
            self._snap_lsns = [] if self._legacy else [snap.lsn]
        self.recovery = recover(self.path / "wal", after, self._replay, self.files)
        for name, o in self.owned.items():
            self._reuse_index(name, o.store)
        self.log = Log(self.path / "wal", self.policy, self.recovery.next_lsn, self.files, self.segment_bytes)
        for o in self.owned.values():
            o.changes.log = self.log
        self._at_checkpoint = (self.log.bytes_logged, time.monotonic())
        if snap is None:       # a new directory: its first snapshot records the dimension
            self.checkpoint()
        self._checkpointer = named_thread(self._background, "engram-checkpoint")
        self._checkpointer.start()

    def _reuse_index(self, name: str, store) -> None:
        """Give a recovered space the index saved at a checkpoint, if it holds up: copied to
        shared memory as its first generation; the indexer adds the rows after it."""
        salt = fresh_salt()
        t0 = time.monotonic()
        got = indexfile.load(self.path, name, self.dim, store.tier_counts(), index_path(store.engine, name, 1, salt))
        if got is None:
            return
        rows, size = got
        AnnState(1, salt, rows, size, 0, 0).publish(store.dir)
        self._index_saved[name] = (1, salt)
        log.info("engram: %s: space %r reuses its saved index (%d vectors) in %.2f s", self.path, name, size,
                 time.monotonic() - t0)

    def _save_indexes(self, states: dict, lsn: int) -> None:
        """After a snapshot: save each space's index as of the snapshot's consistent point
        (``states``, read with the writers held, so it covers only rows the snapshot has)
        when it changed; one superseded meanwhile waits for the next checkpoint."""
        for name, st in states.items():
            if not st.generation or self._index_saved.get(name) == (st.generation, st.salt):
                continue
            o = self.owned[name]
            try:
                indexfile.save(self.path, name, index_path(o.store.engine, name, st.generation, st.salt), st.rows,
                               st.size, self.dim, lsn, self.files)
            except FileNotFoundError:
                continue
            self._index_saved[name] = (st.generation, st.salt)

    def _space(self, name: str, index: int):
        if index in self.by_index:
            raise WALError(f"{self.path}: memory space number {index} is named twice", str(self.path), -1)
        o = self.owned[name] = self._make(name)
        o.changes.index = index
        self.by_index[index] = o
        return o

    def _replay(self, lsn: int, seq: int, space: int, rtype: int, flags: int, body) -> None:
        if rtype == RecordType.SPACE:
            try:
                name = validate.space_name(bytes(body).decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise WALError(f"log record LSN {lsn} names a memory space badly ({e})", "", -1) from None
            if name in self.owned:
                raise WALError(f"log record LSN {lsn} creates memory space {name!r} again", "", -1)
            self._space(name, space)
            return
        o = self.by_index.get(space)
        if o is None:
            raise WALError(f"log record LSN {lsn} changes memory space number {space}, which no record "
                           "created", "", -1)
        o.changes.replay(lsn, seq, rtype, flags, body)

    def added(self, name: str, owned) -> None:
        """A space the owner created now: give it a number and log its name."""
        index = max(self.by_index, default=-1) + 1
        self.owned[name] = owned
        self.by_index[index] = owned
        owned.changes.index = index
        owned.changes.log = self.log
        if self.log is not None:
            self.log.admit()
            self.log.append(index, 0, RecordType.SPACE, [name.encode()])

    # ---- checkpoints -----------------------------------------------------------------------
    def checkpoint(self) -> Path | None:
        """Write a snapshot at the current LSN and let older log go; None if nothing changed."""
        with self._checkpoint_lock:
            with self._hold():
                lsn = self.log.last_lsn
                spaces = [snapfile.SpaceImage(name, o.changes.index, o.changes.seq, o.settings(),
                                              {**image.capture(o.store), **o.labile.arrays(o.store),
                                               **o.changes.keys.arrays()})
                          for name, o in sorted(self.owned.items())]
                logged = self.log.bytes_logged
                indexes = {name: AnnState.read(o.store.dir) for name, o in self.owned.items()}
            if self._snap_lsns and lsn == self._snap_lsns[0]:
                self._save_indexes(indexes, lsn)
                return None               # nothing changed since the last one
            # rows were taken as views: every change that could have reached them is in
            # the log, and synced before the snapshot can become the base of a recovery
            try:
                out = snapfile.write(self.path, lsn, self.dim, RECORD_HASH, spaces, self.files,
                                     before_publish=self.log.sync)
            except OSError as e:         # the older snapshot and the log after it stay
                snapfile.prune(self.path, set(self._snap_lsns), self.files)    # the partial file goes
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StorageFullError(f"{self.path}: no room for a snapshot ({e.strerror}); the log "
                                           "keeps every change, free space and checkpoint again") from e
                raise
            self._snap_lsns = [lsn, *self._snap_lsns[:1]]
            snapfile.prune(self.path, set(self._snap_lsns), self.files)
            if len(self._snap_lsns) > 1:    # keep the previous snapshot and the log after it
                self.log.drop_through(self._snap_lsns[1])
            if self._legacy is not None:
                shutil.rmtree(self._legacy, ignore_errors=True)
                self._legacy = None
            self._at_checkpoint = (logged, time.monotonic())
            self._snap_bytes = out.stat().st_size
            self._save_indexes(indexes, lsn)
            return out

    def due(self) -> bool:
        """After checkpoint_mb of log, or LOG_PER_SNAPSHOT times the last snapshot's size if
        that is more (a checkpoint writes the whole engine: a fixed trigger would spend ever
        more of the disk on snapshots as the engine grows), or checkpoint_s with any log."""
        logged, at = self._at_checkpoint
        grown = self.log.bytes_logged - logged
        return grown >= max(self.checkpoint_bytes, LOG_PER_SNAPSHOT * self._snap_bytes) or \
            (grown > 0 and time.monotonic() - at >= self.checkpoint_s)

    def _background(self) -> None:
        # each tick also logs recalls' access updates that waited their time for company
        # (Mutations.state): when recalls stop, the last ones would otherwise wait for the next
        tick = min(STATE_COALESCE_S, self.checkpoint_s)
        last_check = time.monotonic()
        while not self._stop.wait(tick):
            self._flush_states(STATE_COALESCE_S)
            if time.monotonic() - last_check < min(1.0, self.checkpoint_s):
                continue
            last_check = time.monotonic()
            if self.log.failed is None and self.due():
                try:
                    self.checkpoint()
                except (OSError, SnapshotError) as e:    # the older snapshot and the log stay
                    log.error("engram: a background checkpoint of %s failed: %s", self.path, e)

    def _flush_states(self, older_than: float | None = None) -> None:
        """Each space's waiting access updates logged, under its lock. With ``older_than``
        only those waiting that long, and without waiting for the lock: now if it is free,
        else as its holder lets go (SpaceLock.defer); without, all of them, now."""
        for o in list(self.owned.values()):
            if not o.changes.state_waiting:
                continue
            if older_than is None:
                with o.lock:
                    o.changes.flush_state()
            else:
                o.lock.defer(lambda c=o.changes: c.flush_state(older_than))

    # ---- close -----------------------------------------------------------------------------
    def health(self) -> dict:
        """The log's state for Engine.health: ok, full (writes refused for now) or failed."""
        log_ = self.log
        if log_ is None:
            return {"state": "closed", "message": "the log is not open"}
        state, msg = ("failed", str(log_.failed)) if log_.failed is not None else \
            ("full", f"disk full: {log_.full}") if log_.full is not None else ("ok", f"durability {self.policy}")
        return {"state": state, "message": msg, "last_lsn": log_.last_lsn, "durable_lsn": log_.durable_lsn,
                "unsynced_records": log_.last_lsn - log_.durable_lsn}

    def close(self, checkpoint: bool) -> None:
        """Stop checkpoints, checkpoint once more (if asked and the log is healthy), flush
        and close the log, release the path."""
        self._stop.set()
        try:
            if self._checkpointer is not None:
                self._checkpointer.join()
            if self.log is not None and self.log.failed is None:
                self._flush_states()
                if checkpoint:
                    self.checkpoint()
        finally:
            if self.log is not None:
                self.log.close()
            self.lock.release()

