"""The power-loss simulator and the fault injector of tests/durability/crashfs.py, on a toy writer.

The toy writer appends CRC-framed records to a log, fdatasyncs, and only then "acks" them; it replaces a
manifest by write-tmp / fsync / rename / directory fsync. In every crash state after every operation each
ack must survive. The simulator must also really drop, tear and undo unsynced things (or it proves nothing),
and it must catch writers that ack too early: those negative controls pass only when a loss IS found.
"""
from __future__ import annotations

import errno
import os
import shutil
import struct
import zlib

import pytest

from .crashfs import MODES, FailingFiles, RecordingFiles, Write, crash_state, crash_states

W = os.O_WRONLY | os.O_CREAT


def frame(payload: bytes) -> bytes:
    body = struct.pack("<I", len(payload)) + payload
    return struct.pack("<I", zlib.crc32(body)) + body


def parse(data: bytes) -> list[bytes]:
    """The records before the first torn or garbled one (recovery cuts a bad tail)."""
    out, at = [], 0
    while at + 8 <= len(data):
        crc, n = struct.unpack_from("<II", data, at)
        if at + 8 + n > len(data) or zlib.crc32(data[at + 4:at + 8 + n]) != crc:
            break
        out.append(data[at + 8:at + 8 + n])
        at += 8 + n
    return out


def read(path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


class Toy:
    """A log and a manifest; each flag turns one rule off, for the negative controls."""

    def __init__(self, fs, root, recording, *, ack_before_sync=False, log_dir_fsync=True, ack_rename_early=False):
        self.fs, self.root, self.rec = fs, root, recording
        self.ack_before_sync, self.log_dir_fsync, self.ack_rename_early = ack_before_sync, log_dir_fsync, ack_rename_early
        self.acks = []      # ((kind, value), recording position at the ack)
        self.marks = {}     # recording positions of interesting moments

    def ack(self, what):
        self.acks.append((what, self.rec.position))

    def open_log(self):
        self.fd = self.fs.open(self.root / "log", W | os.O_EXCL)
        self.marks["log created"] = self.rec.position
        if self.log_dir_fsync:      # the new log's name must be durable before anything in it is acked
            self.fs.fsync_dir(self.root)

    def append(self, payloads):
        self.fs.write(self.fd, [frame(p) for p in payloads])
        if self.ack_before_sync:
            for p in payloads:
                self.ack(("rec", p))
        self.fs.fdatasync(self.fd)
        if not self.ack_before_sync:
            for p in payloads:
                self.ack(("rec", p))

    def manifest(self, version: bytes, *, dir_fsync: bool):
        tmp = self.root / "manifest.tmp"
        fd = self.fs.open(tmp, W | os.O_TRUNC)
        self.fs.write(fd, [version])
        self.fs.fsync(fd)
        self.fs.close(fd)
        self.fs.rename(tmp, self.root / "manifest")
        self.marks[f"{version.decode()} renamed"] = self.rec.position
        if self.ack_rename_early:
            self.ack(("manifest", version))
        if dir_fsync:
            self.fs.fsync_dir(self.root)
            if not self.ack_rename_early:
                self.ack(("manifest", version))


def workload(tmp_path, **flags) -> tuple[RecordingFiles, Toy]:
    """Log records in three groups, manifest v1 made durable, an unlink and manifest v2 left without a
    directory fsync across a group, an unsynced record, then the directory fsync that settles it all."""
    root = tmp_path / "db"
    root.mkdir()
    (root / "manifest").write_bytes(b"v0")
    (root / "old").write_bytes(b"old")
    fs = RecordingFiles(root)
    toy = Toy(fs, root, fs, **flags)
    toy.open_log()
    toy.append([b"a0"])
    toy.append([b"a1", b"a2" * 300, b"a3"])         # a record over several sectors
    toy.manifest(b"v1", dir_fsync=True)
    fs.unlink(root / "old")
    toy.marks["old unlinked"] = fs.position
    toy.manifest(b"v2", dir_fsync=False)
    toy.append([b"a4" * 200, b"a5"])
    fs.write(toy.fd, [frame(b"never acked")])
    toy.marks["unsynced written"] = fs.position
    fs.fsync_dir(root)
    toy.marks["settled"] = fs.position
    if not toy.ack_rename_early:
        toy.ack(("manifest", b"v2"))
    fs.close(toy.fd)
    return fs, toy


def problems(db, cut: int, acks) -> list[str]:
    """What the crash lost of what was acked by op ``cut``."""
    acked = [what for what, at in acks if at <= cut]
    want = [p for kind, p in acked if kind == "rec"]
    got = parse(read(db / "log") or b"")
    out = [] if got[:len(want)] == want else [f"acked records lost: {len(want)} acked, {len(got)} read"]
    versions = [v for kind, v in acked if kind == "manifest"]
    manifest = read(db / "manifest")
    if versions and (manifest is None or manifest < versions[-1]):
        out.append(f"manifest {versions[-1]} acked, {manifest} found")
    return out


def crashes(tmp_path, fs, **kw):
    """Every crash state crash_states gives, materialised in turn: (cut, state, directory)."""
    for n, (cut, state) in enumerate(crash_states(fs, **kw)):
        db = state.materialise(tmp_path / "crash" / str(n))
        yield cut, state, db
        shutil.rmtree(db)


def test_every_acked_record_and_manifest_survive_every_crash(tmp_path):
    fs, toy = workload(tmp_path)
    n = 0
    for cut, state, db in crashes(tmp_path, fs, randoms=8, seed=1):
        assert not problems(db, cut, toy.acks), f"{problems(db, cut, toy.acks)} in {state}"
        assert not (read(db / "manifest") == b"v2" and read(db / "manifest.tmp") == b"v2"), state  # rename atomic
        if cut >= toy.marks["settled"]:
            assert sorted(p.name for p in db.iterdir()) == ["log", "manifest"], state
        n += 1
    assert n == (fs.position + 1) * 10


def test_keep_all_is_the_disk_as_left_and_all_synced_only_is_exactly_the_acks(tmp_path):
    fs, toy = workload(tmp_path)
    real = {p.name: p.read_bytes() for p in (tmp_path / "db").iterdir()}
    assert crash_state(fs, fs.position, "keep-all").files == real
    for cut in range(fs.position + 1):
        files = crash_state(fs, cut, "all-synced-only").files
        acked = [p for (kind, p), at in toy.acks if kind == "rec" and at <= cut]
        if cut >= toy.marks["log created"] + 1:      # its directory fsync came right after the create
            assert files["log"] == b"".join(frame(p) for p in acked), cut
        else:
            assert "log" not in files, cut


def test_the_simulator_loses_tears_and_undoes_what_was_not_synced(tmp_path):
    fs, toy = workload(tmp_path)
    m = toy.marks
    seen = set()
    for cut, state, db in crashes(tmp_path, fs, randoms=8, seed=2):
        if state.mode != "random":
            continue
        log, whole = read(db / "log") or b"", crash_state(fs, cut, "keep-all").files.get("log", b"")
        if len(parse(log)) < len(parse(whole)):
            seen.add("unsynced record lost")
        if b"never acked" in parse(log):
            seen.add("unsynced record kept")
        if any(a != b and a != 0 for a, b in zip(log, whole)):
            seen.add("unsynced bytes garbled")
        if m["log created"] <= cut < m["settled"] and not (db / "log").exists():
            seen.add("create undone")
        if m["v2 renamed"] <= cut < m["settled"]:
            if read(db / "manifest") == b"v1" and read(db / "manifest.tmp") == b"v2":
                seen.add("rename undone")
            if read(db / "manifest") == b"v2" and not (db / "manifest.tmp").exists():
                seen.add("rename kept before its directory fsync")
        if m["old unlinked"] <= cut < m["settled"] and read(db / "old") == b"old":
            seen.add("unlink undone")
    assert seen == {"unsynced record lost", "unsynced record kept", "unsynced bytes garbled", "create undone",
                    "rename undone", "rename kept before its directory fsync", "unlink undone"}


@pytest.mark.parametrize("flag", ["ack_before_sync", "ack_rename_early", "log_dir_fsync"])
def test_a_writer_that_acks_too_early_is_caught(tmp_path, flag):
    """Negative controls: acking before the fdatasync, acking a rename before its directory fsync, and
    never fsyncing the directory of a new log must each lose an ack in some crash state."""
    fs, toy = workload(tmp_path, **{flag: flag != "log_dir_fsync"})
    found = [str(state) for cut, state, db in crashes(tmp_path, fs, randoms=1) if problems(db, cut, toy.acks)]
    assert found, f"{flag}: no crash state lost an ack, so the harness cannot see this bug"


def test_torn_sectors_damage_synced_neighbours_without_powersafe_overwrite(tmp_path):
    """With powersafe_overwrite=False (a disk that may garble a whole sector it was writing; SQLite assumes
    it does not since 3.7.10) a torn append garbles acked bytes in its first sector: records would then
    need padding to whole sectors. Shows the option bites; the default model keeps them."""
    fs, toy = workload(tmp_path)
    writes = [i + 1 for i, op in enumerate(fs.ops) if isinstance(op, Write)]
    found = [str(state) for cut, state, db in crashes(tmp_path, fs, cuts=writes, randoms=20, powersafe_overwrite=False)
             if problems(db, cut, toy.acks)]
    assert found


def test_files_are_followed_by_inode_through_rename_and_recreate(tmp_path):
    root = tmp_path / "db"
    root.mkdir()
    fs = RecordingFiles(root)
    fd = fs.open(root / "a", W)
    fs.write(fd, [b"first"])
    fs.rename(root / "a", root / "b")               # still open: later writes follow the inode
    fs.write(fd, [b" second"])
    fs.fdatasync(fd)
    synced = fs.position
    fd2 = fs.open(root / "a", W)                    # a new file at the old name
    fs.write(fd2, [b"new a"])
    fs.fdatasync(fd2)
    fs.fsync_dir(root)
    fs.close(fd)
    fs.close(fd2)
    for mode in MODES:
        assert crash_state(fs, fs.position, mode, 3).files == {"a": b"new a", "b": b"first second"}
    assert crash_state(fs, synced, "all-synced-only").files == {}       # synced data, but no durable name
    for seed in range(20):
        files = crash_state(fs, synced, "random", seed).files
        assert list(files.values()) in ([], [b"first second"]), files     # one name at most, never both


def test_a_directory_fsync_covers_only_its_own_entries(tmp_path):
    root = tmp_path / "db"
    root.mkdir()
    fs = RecordingFiles(root)
    (root / "wal").mkdir()                          # Files has no mkdir: directories are never lost
    fd = fs.open(root / "wal" / "seg", W)
    fs.write(fd, [b"records"])
    fs.fdatasync(fd)
    fs.fsync_dir(root)                              # the wrong directory
    fs.close(fd)
    state = crash_state(fs, fs.position, "all-synced-only")
    assert state.files == {} and "wal" in state.dirs
    assert not any(state.materialise(tmp_path / "s").joinpath("wal").iterdir())
    fs.fsync_dir(root / "wal")
    assert crash_state(fs, fs.position, "all-synced-only").files == {"wal/seg": b"records"}


def test_a_file_made_outside_the_layer_is_taken_as_durable(tmp_path):
    root = tmp_path / "db"
    root.mkdir()
    fs = RecordingFiles(root)
    (root / "side").write_bytes(b"made with plain open()")
    fs.rename(root / "side", root / "kept")
    assert crash_state(fs, fs.position, "all-synced-only").files == {"side": b"made with plain open()"}
    assert crash_state(fs, fs.position, "keep-all").files == {"kept": b"made with plain open()"}


def test_failing_sync_write_and_short_write_raise_eio_at_their_calls(tmp_path):
    fs = FailingFiles(fail={"sync": {2}, "write": {2}}, short_writes={3})
    fd = fs.open(tmp_path / "f", W)
    fs.write(fd, [b"0123456789"])
    fs.fdatasync(fd)
    with pytest.raises(OSError) as e:
        fs.fsync(fd)                                # fdatasync and fsync count together
    assert e.value.errno == errno.EIO
    fs.fdatasync(fd)
    with pytest.raises(OSError) as e:
        fs.write(fd, [b"lost"])
    assert e.value.errno == errno.EIO and fs.size(fd) == 10
    with pytest.raises(OSError) as e:
        fs.write(fd, [b"abcd", b"efgh"])
    assert e.value.errno == errno.EIO and (tmp_path / "f").read_bytes() == b"0123456789abcd"
    fs.close(fd)
    assert fs.calls == {"open": 1, "write": 3, "sync": 3}
    with pytest.raises(ValueError):
        FailingFiles(fail={"fdatasync": {1}})


@pytest.mark.parametrize("op", ["rename", "unlink", "fsync_dir"])
def test_failing_name_operations_do_nothing(tmp_path, op):
    (tmp_path / "f").write_bytes(b"x")
    fs = FailingFiles(fail={op: {1}})
    call = {"rename": lambda: fs.rename(tmp_path / "f", tmp_path / "g"), "unlink": lambda: fs.unlink(tmp_path / "f"),
            "fsync_dir": lambda: fs.fsync_dir(tmp_path)}[op]
    with pytest.raises(OSError, match="injected"):
        call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    call()                                          # only the chosen call fails


def test_a_full_disk_raises_enospc_at_the_byte_budget(tmp_path):
    fs = FailingFiles(space=100)
    fd = fs.open(tmp_path / "f", W)
    fs.allocate(fd, 64)
    fs.write(fd, [b"x" * 64])                       # inside the preallocated space: free
    assert fs.space == 36
    with pytest.raises(OSError) as e:
        fs.allocate(fd, 200)
    assert e.value.errno == errno.ENOSPC and fs.size(fd) == 64
    with pytest.raises(OSError) as e:
        fs.write(fd, [b"y" * 50])                   # what fits is written, as a real full disk does
    assert e.value.errno == errno.ENOSPC and fs.size(fd) == 100 and fs.space == 0
    fs.truncate(fd, 80)                             # cutting the torn tail gives the space back
    assert fs.space == 20
    fs.space += 1000                                # the operator freed the disk
    fs.write(fd, [b"z" * 50])                       # at the position, 100: ftruncate does not move it
    assert fs.size(fd) == 150 and fs.space == 1020 - 70
    fs.close(fd)


def test_a_failed_fdatasync_makes_nothing_durable_and_acks_stop(tmp_path):
    """FailingFiles around RecordingFiles: the failed fdatasync is no persistence point, the writer stops
    acking (fail-stop), and every crash state still keeps the acks made before."""
    root = tmp_path / "db"
    root.mkdir()
    rec = RecordingFiles(root)
    toy = Toy(FailingFiles(rec, fail={"sync": {3}}), root, rec)
    toy.open_log()
    toy.append([b"a0"])
    toy.append([b"a1"])
    with pytest.raises(OSError):
        toy.append([b"a2"])
    assert [p for (_, p), _ in toy.acks] == [b"a0", b"a1"]
    assert parse(crash_state(rec, rec.position, "all-synced-only").files["log"]) == [b"a0", b"a1"]
    for cut, state, db in crashes(tmp_path, rec, randoms=3):
        assert not problems(db, cut, toy.acks), state
