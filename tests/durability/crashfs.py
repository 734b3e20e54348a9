"""A power-loss simulator and a fault injector for engram's durable file layer (docs: durability.md T3, T6, T7).

``RecordingFiles`` does every ``engram.store.files.Files`` operation for real (the code under test runs as
usual) and logs it. ``crash_state(recording, cut, mode, rng)`` then builds what a power loss after the first
``cut`` logged operations could leave on disk, and ``CrashState.materialise(dest)`` writes that into a fresh
directory for the test to open with the real recovery code. A kill -9 keeps the page cache, so it cannot show
a missing fsync; this can. ``FailingFiles`` raises EIO at chosen calls and ENOSPC when a byte budget is spent.

    fs = RecordingFiles(root)                    # copies the tree under root, then logs every operation
    run_writer(fs, acks)                         # the writer appends (record, fs.position) after each ack
    for cut, state in crash_states(fs, seed=7):  # every op index: keep-all, all-synced-only, 3 random
        db = state.materialise(tmp_path / f"crash-{cut}-{state.mode}-{state.seed}")
        got = recover(db)                        # the real recovery code, on real files
        assert all(r in got for r, at in acks if at <= cut), state

The model is the weak one of SQLite's crash VFS (src/test6.c), ALICE and CrashMonkey, not any one file system:
- A file's data and size as of its last fdatasync/fsync (the two are treated alike) are kept exactly.
- Each later write is kept, dropped, dropped but with the size grown (the tail reads as zeros), or torn: each
  512-byte sector it touches independently new, old or random garbage. Pending truncates and allocates
  each happen or not, and unsynced growth may be cut anywhere above the synced size.
- ``powersafe_overwrite`` (SQLite's IOCAP of that name, default True): garbage stays inside the bytes written.
  False: a torn sector is garbage whole, so it can damage synced bytes that share the sector.
- A create, rename or unlink is durable once its directory is fsynced (a rename's: the destination's); until
  then it may be undone. Each name's changes land in order (a later change never without the earlier ones)
  and a rename is one change of both names, so a renamed file is at its old or its new name, never both or
  neither. Making a change durable makes the earlier changes of its names durable too.
Files are tracked by inode, so renaming an open file or re-creating a path is followed. Files has no mkdir:
directories are never lost. A file the layer first sees already existing (made outside it after recording
began) is taken as durable with the bytes it had then. A failed fsync makes nothing durable, but a later
successful one does (the model does not drop pages Linux marked clean after the error, fsyncgate).
"""
from __future__ import annotations

import errno
import itertools
import os
import random
import threading
from collections import Counter, defaultdict, namedtuple
from dataclasses import dataclass, field
from pathlib import Path

try:
    from engram.store.files import Files
except ImportError:  # engram's compiled parts are not built here: load files.py alone, it is pure Python
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "_engram_store_files", Path(__file__).resolve().parents[2] / "engram" / "store" / "files.py")
    _files = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_files)
    Files = _files.Files

__all__ = ["MODES", "CrashState", "FailingFiles", "RecordingFiles", "crash_state", "crash_states"]

MODES = ("keep-all", "all-synced-only", "random")


# The operation log. Paths (str) are relative to the recorded root ("" is the root); a fid (int) names one
# inode; offsets and sizes are ints, data is bytes.
Write = namedtuple("Write", "fid offset data")
Truncate = namedtuple("Truncate", "fid size")
Allocate = namedtuple("Allocate", "fid size")    # the size grew to this (posix_fallocate)
Sync = namedtuple("Sync", "fid")                 # fdatasync or fsync: the file's data and size durable
SyncDir = namedtuple("SyncDir", "path")          # directory fsync: the changes of names in it durable
Create = namedtuple("Create", "path fid")
Adopt = namedtuple("Adopt", "path fid data")     # appeared outside the layer: durable as it was
Rename = namedtuple("Rename", "src dst fid")
Unlink = namedtuple("Unlink", "path fid")
NAME_OPS = (Create, Adopt, Rename, Unlink)


def _names(op) -> tuple:
    return (op.src, op.dst) if isinstance(op, Rename) else (op.path,)


def _home(op) -> str:
    """The directory whose fsync makes this change of names durable."""
    return os.path.dirname(op.dst if isinstance(op, Rename) else op.path)


def _bytes(buffers) -> bytes:
    return b"".join(memoryview(b).tobytes() for b in buffers)


class RecordingFiles(Files):
    """Files that does everything for real and logs it (``ops``); the tree under ``root`` is copied (into
    memory: meant for small test trees) when it is made, and every path used must lie under it.

    ``position`` is the number of operations logged so far: a test notes it at each ack, and the ack
    counts for a crash after ``cut`` operations when its position is <= cut. Safe to share between threads
    (the log order is the order the calls ran in)."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.ops: list = []
        self.initial: dict[str, tuple[int, bytes]] = {}    # path -> (fid, bytes) when recording began
        self.dirs: set[str] = {""}
        self._live: dict[str, int] = {}                    # path -> fid now
        self._inodes: dict[tuple, int] = {}                # (st_dev, st_ino) -> fid
        self._fds: dict[int, tuple[int, bool]] = {}        # fd -> (fid, opened with O_APPEND)
        self._fids = itertools.count()
        self._lock = threading.Lock()
        for top, dirs, files in os.walk(self.root):
            rel_top = os.path.relpath(top, self.root)
            for d in dirs:
                self.dirs.add(os.path.normpath(os.path.join(rel_top, d)))
            for f in files:
                path = os.path.join(top, f)
                if os.path.isfile(path) and not os.path.islink(path):
                    rel = os.path.normpath(os.path.join(rel_top, f))
                    fid = self._track(rel, os.stat(path))
                    self.initial[rel] = (fid, Path(path).read_bytes())

    @property
    def position(self) -> int:
        return len(self.ops)

    def persistence_cuts(self) -> list[int]:
        """The cuts right after each fdatasync, fsync and directory fsync."""
        return [i + 1 for i, op in enumerate(self.ops) if isinstance(op, (Sync, SyncDir))]

    def _rel(self, path) -> str:
        p = os.path.abspath(os.fspath(path))
        p = os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))
        rel = os.path.relpath(p, self.root)
        if rel == ".." or rel.startswith("../"):
            raise ValueError(f"{path} is outside the recorded directory {self.root}")
        parent = os.path.dirname(rel)
        while parent:                       # a file's directories exist in every crash state
            self.dirs.add(parent)
            parent = os.path.dirname(parent)
        return rel

    def _track(self, rel: str, st) -> int:
        fid = next(self._fids)
        self._inodes[(st.st_dev, st.st_ino)] = fid
        self._live[rel] = fid
        return fid

    def _known(self, rel: str) -> int:
        """The fid at path ``rel``, adopting a file the layer did not see made."""
        st = os.stat(os.path.join(self.root, rel))
        fid = self._inodes.get((st.st_dev, st.st_ino))
        if fid is None or self._live.get(rel) != fid:
            fid = self._track(rel, st)
            self.ops.append(Adopt(rel, fid, Path(self.root, rel).read_bytes()))
        return fid

    def open(self, path, flags: int, mode: int = 0o600) -> int:
        rel = self._rel(path)
        with self._lock:
            existed = os.path.lexists(path)
            fd = super().open(path, flags, mode)
            if existed:
                fid = self._known(rel)
                if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
                    self.ops.append(Truncate(fid, 0))
            else:
                fid = self._track(rel, os.fstat(fd))
                self.ops.append(Create(rel, fid))
            self._fds[fd] = (fid, bool(flags & os.O_APPEND))
            return fd

    def close(self, fd: int) -> None:
        with self._lock:
            self._fds.pop(fd, None)
            super().close(fd)

    def _where(self, fd: int, append: bool) -> int:
        return os.fstat(fd).st_size if append else os.lseek(fd, 0, os.SEEK_CUR)

    def write(self, fd: int, buffers: list) -> int:
        with self._lock:
            fid, append = self._fds[fd]
            start = self._where(fd, append)
            data = _bytes(buffers)
            try:
                return super().write(fd, buffers)
            finally:                        # log what reached the file, also when the write failed midway
                done = self._where(fd, append) - start
                if done > 0:
                    self.ops.append(Write(fid, start, data[:done]))

    def fdatasync(self, fd: int) -> None:
        with self._lock:
            super().fdatasync(fd)
            self.ops.append(Sync(self._fds[fd][0]))

    def fsync(self, fd: int) -> None:
        with self._lock:
            super().fsync(fd)
            self.ops.append(Sync(self._fds[fd][0]))

    def fsync_dir(self, path) -> None:
        rel = self._rel(path)
        with self._lock:
            super().fsync_dir(path)
            rel = "" if rel == "." else rel
            self.dirs.add(rel)
            self.ops.append(SyncDir(rel))

    def allocate(self, fd: int, size: int) -> None:
        with self._lock:
            before = os.fstat(fd).st_size
            try:
                super().allocate(fd, size)
            finally:
                after = os.fstat(fd).st_size
                if after > before:
                    self.ops.append(Allocate(self._fds[fd][0], after))

    def truncate(self, fd: int, size: int) -> None:
        with self._lock:
            super().truncate(fd, size)
            self.ops.append(Truncate(self._fds[fd][0], size))

    def rename(self, src, dst) -> None:
        s, d = self._rel(src), self._rel(dst)
        with self._lock:
            fid = self._known(s)
            super().rename(src, dst)
            self._live.pop(s)
            self._live[d] = fid
            self.ops.append(Rename(s, d, fid))

    def unlink(self, path) -> None:
        rel = self._rel(path)
        with self._lock:
            fid = self._known(rel)
            super().unlink(path)
            self._live.pop(rel)
            self.ops.append(Unlink(rel, fid))


@dataclass
class CrashState:
    """What a power loss after the first ``cut`` operations left: ``files`` (path -> bytes) and ``dirs``;
    ``events`` says, one line each, what the loss did (for failure messages)."""
    cut: int
    mode: str
    seed: object
    files: dict[str, bytes]
    dirs: set[str]
    events: list[str] = field(default_factory=list)

    def materialise(self, dest) -> Path:
        """Write this disk into ``dest``, which must not exist yet; returns it as a Path."""
        dest = Path(dest)
        dest.mkdir(parents=True)
        for d in sorted(self.dirs):
            (dest / d).mkdir(parents=True, exist_ok=True)
        for path, data in self.files.items():
            (dest / path).write_bytes(data)
        return dest

    def __str__(self) -> str:
        what = "; ".join(self.events) or "nothing lost"
        return f"crash after op {self.cut} ({self.mode}, seed {self.seed!r}): {what}"


def _put(img: bytearray, offset: int, data) -> None:
    if offset > len(img):
        img.extend(bytes(offset - len(img)))
    img[offset:offset + len(data)] = data


def _resize(img: bytearray, size: int) -> None:
    if size < len(img):
        del img[size:]
    else:
        img.extend(bytes(size - len(img)))


def _apply(img: bytearray, op) -> None:
    if isinstance(op, Write):
        _put(img, op.offset, op.data)
    elif isinstance(op, Truncate):
        _resize(img, op.size)
    elif isinstance(op, Allocate):
        _resize(img, max(len(img), op.size))


def _lose(img: bytearray, op, rng: random.Random, sector: int, powersafe: bool) -> str | None:
    """Apply an unsynced op as a power loss may; returns what went wrong, or None if it landed whole."""
    if not isinstance(op, Write):
        if rng.random() < 0.5:
            _apply(img, op)
            return None
        return f"{type(op).__name__.lower()} to {op.size} undone"
    end = op.offset + len(op.data)
    fate = rng.randrange(4)
    if fate == 0:
        _apply(img, op)
        return None
    if fate == 1:
        return f"write @{op.offset}+{len(op.data)} dropped"
    if fate == 2:
        _resize(img, max(len(img), end))
        return f"write @{op.offset}+{len(op.data)} dropped, size kept (zeros)"
    _resize(img, max(len(img), end))
    shown = []
    for s in range(op.offset // sector, (end - 1) // sector + 1):
        lo, hi = max(op.offset, s * sector), min(end, (s + 1) * sector)
        pick = rng.randrange(3)
        if pick == 0:
            img[lo:hi] = op.data[lo - op.offset:hi - op.offset]
        elif pick == 2:
            if not powersafe:   # the whole sector, clipped to the file
                lo, hi = s * sector, min((s + 1) * sector, len(img))
            img[lo:hi] = rng.randbytes(hi - lo)
        shown.append("nog"[pick])
    return f"write @{op.offset}+{len(op.data)} torn, sectors {''.join(shown)} (new/old/garbage)"


def crash_state(recording: RecordingFiles, cut: int, mode: str = "random", rng=None, *,
                sector: int = 512, powersafe_overwrite: bool = True) -> CrashState:
    """The disk after a power loss once the first ``cut`` logged ops had run (0 <= cut <= position).

    mode "keep-all": everything that ran (as a kill -9 leaves it); "all-synced-only": only what was made
    durable; "random": each unsynced thing kept, lost or torn by ``rng`` (a random.Random or an int seed,
    None = 0). ``sector`` and ``powersafe_overwrite``: how a torn write tears (see the module's docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if not 0 <= cut <= recording.position:
        raise ValueError(f"cut {cut} outside 0..{recording.position}")
    seed = 0 if rng is None else rng if isinstance(rng, int) else "rng"
    rng = rng if isinstance(rng, random.Random) else random.Random(seed)
    ops = recording.ops[:cut]
    state = CrashState(cut, mode, seed if mode == "random" else None, {}, set(recording.dirs))

    # Names: which changes were made durable by a directory fsync (with the earlier changes of their names).
    history: dict[str, list[int]] = defaultdict(list)
    changes: list[int] = []
    durable: set[int] = set()

    def commit(i: int) -> None:
        todo = [i]
        while todo:
            k = todo.pop()
            if k not in durable:
                durable.add(k)
                todo.extend(j for name in _names(ops[k]) for j in history[name] if j < k)

    for i, op in enumerate(ops):
        if isinstance(op, NAME_OPS):
            changes.append(i)
            for name in _names(op):
                history[name].append(i)
            if isinstance(op, Adopt):
                commit(i)
        elif isinstance(op, SyncDir):
            for j in changes:
                if j not in durable and _home(ops[j]) == op.path:
                    commit(j)

    live = {path: fid for path, (fid, _) in recording.initial.items()}
    base = dict(recording.initial.values())
    blocked: set[str] = set()
    for i, op in enumerate(ops):
        if not isinstance(op, NAME_OPS):
            continue
        base.setdefault(op.fid, op.data if isinstance(op, Adopt) else b"")
        names = set(_names(op))
        keep = (i in durable or mode == "keep-all"
                or (mode == "random" and not names & blocked and rng.random() < 0.5))
        if not keep:
            blocked |= names
            state.events.append(f"{type(op).__name__.lower()} {' -> '.join(_names(op))} undone")
        elif isinstance(op, Rename):
            live[op.dst] = live.pop(op.src)
        elif isinstance(op, Unlink):
            live.pop(op.path)
        else:
            live[op.path] = op.fid

    # Data: each file's synced image exactly, then its unsynced ops as the mode says.
    per_file: dict[int, list] = defaultdict(list)
    for op in ops:
        if isinstance(op, (Write, Truncate, Allocate, Sync)):
            per_file[op.fid].append(op)
    for path, fid in live.items():
        fops = per_file[fid]
        synced = max((k + 1 for k, op in enumerate(fops) if isinstance(op, Sync)), default=0)
        img = bytearray(base[fid])
        for op in fops[:synced]:
            _apply(img, op)
        floor = len(img)
        for op in fops[synced:]:
            if isinstance(op, Sync):
                continue
            if mode == "keep-all":
                _apply(img, op)
            elif mode == "all-synced-only":
                state.events.append(f"{path}: unsynced {type(op).__name__.lower()} dropped")
            elif (lost := _lose(img, op, rng, sector, powersafe_overwrite)) is not None:
                state.events.append(f"{path}: {lost}")
        if mode == "random" and len(img) > floor and rng.random() < 0.25:
            size = rng.randint(floor, len(img))
            state.events.append(f"{path}: unsynced growth cut from {len(img)} to {size}")
            del img[size:]
        state.files[path] = bytes(img)
    return state


def crash_states(recording: RecordingFiles, cuts=None, *, randoms: int = 3, seed: int = 0, **model):
    """(cut, state) for every cut (default: every op index 0..position), in each mode: keep-all,
    all-synced-only, then ``randoms`` random states seeded from (seed, cut, k) so a failure replays
    with crash_state(recording, cut, "random", state.seed)."""
    for cut in range(recording.position + 1) if cuts is None else cuts:
        yield cut, crash_state(recording, cut, "keep-all", **model)
        yield cut, crash_state(recording, cut, "all-synced-only", **model)
        for k in range(randoms):
            yield cut, crash_state(recording, cut, "random", (seed * 1_000_003 + cut) * 101 + k + 1, **model)


FAULTS = ("open", "write", "sync", "fsync_dir", "allocate", "truncate", "rename", "unlink")


class FailingFiles(Files):
    """Files that fails on purpose, around ``inner`` (default plain Files; a RecordingFiles to crash too).

    ``fail`` maps an operation in FAULTS to the 1-based call numbers that raise OSError(EIO) without doing
    anything ("sync" counts fdatasync and fsync together; any container works, e.g. range(3, 10**9) for
    "from the 3rd call on"). ``short_writes``: write call numbers that write the first half of their bytes
    and then raise EIO. ``space``: bytes the files may still grow by, or None for no limit; writes past a
    file's end and allocate spend it (overwrites inside a file are free, as preallocation intends), a
    shrinking truncate gives it back, and a write that does not fit writes what fits and raises ENOSPC, an
    allocate that does not fit raises ENOSPC and allocates nothing. The attribute may be raised to free
    the disk. ``calls`` counts the calls per operation, failed ones included.

        fs = FailingFiles(fail={"sync": {2}}, space=1 << 20)   # or FailingFiles(RecordingFiles(root), ...)
        log = open_the_log_under_test(root, files=fs)        # its 2nd fdatasync raises OSError(EIO)
        log.append(a); log.append(b)                          # b's group fails: assert b is never acked,
        ...                                                   # the log stops acking, reopen finds a
    Call counts are thread-safe; the space budget assumes one thread writes (as the log's writer does).
    """

    def __init__(self, inner: Files | None = None, *, fail=None, short_writes=(), space: int | None = None):
        unknown = set(fail or {}) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; known: {FAULTS}")
        self.inner = inner if inner is not None else Files()
        self.fail = dict(fail or {})
        self.short_writes = short_writes
        self.space = space
        self.calls: Counter = Counter()
        self._append: dict[int, bool] = {}
        self._lock = threading.Lock()

    def _call(self, op: str) -> int:
        with self._lock:
            self.calls[op] += 1
            n = self.calls[op]
        if n in self.fail.get(op, ()):
            raise OSError(errno.EIO, f"injected I/O error: {op} call {n}")
        return n

    def open(self, path, flags: int, mode: int = 0o600) -> int:
        self._call("open")
        fd = self.inner.open(path, flags, mode)
        self._append[fd] = bool(flags & os.O_APPEND)
        return fd

    def close(self, fd: int) -> None:
        self._append.pop(fd, None)
        self.inner.close(fd)

    def write(self, fd: int, buffers: list) -> int:
        n = self._call("write")
        data = _bytes(buffers)
        if n in self.short_writes:
            if len(data) >= 2:
                self.inner.write(fd, [data[:len(data) // 2]])
            raise OSError(errno.EIO, f"injected I/O error after a short write: write call {n}")
        if self.space is not None:
            size = self.inner.size(fd)
            start = size if self._append.get(fd) else os.lseek(fd, 0, os.SEEK_CUR)
            fits = size + self.space - start        # bytes from start on that the disk still holds
            if len(data) > fits:
                if fits > 0:
                    self.inner.write(fd, [data[:fits]])
                    self.space -= self.inner.size(fd) - size
                raise OSError(errno.ENOSPC, f"injected full disk: write call {n}")
            self.space -= max(0, start + len(data) - size)
        return self.inner.write(fd, buffers)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        return self.inner.pread(fd, n, offset)

    def fdatasync(self, fd: int) -> None:
        self._call("sync")
        self.inner.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._call("sync")
        self.inner.fsync(fd)

    def fsync_dir(self, path) -> None:
        self._call("fsync_dir")
        self.inner.fsync_dir(path)

    def allocate(self, fd: int, size: int) -> None:
        n = self._call("allocate")
        if self.space is not None:
            grow = max(0, size - self.inner.size(fd))
            if grow > self.space:
                raise OSError(errno.ENOSPC, f"injected full disk: allocate call {n}")
            self.space -= grow
        self.inner.allocate(fd, size)

    def truncate(self, fd: int, size: int) -> None:
        self._call("truncate")
        before = self.inner.size(fd)
        self.inner.truncate(fd, size)
        if self.space is not None and size < before:
            self.space += before - size

    def rename(self, src, dst) -> None:
        self._call("rename")
        self.inner.rename(src, dst)

    def unlink(self, path) -> None:
        self._call("unlink")
        self.inner.unlink(path)

    def size(self, fd: int) -> int:
        return self.inner.size(fd)
