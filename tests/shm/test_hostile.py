"""Another user on the same machine, acting in /dev/shm (world-writable): files planted
under the names an engine will use next, under a new engine's names and under a
running engine's prefix. The engine grows, compacts, saves, starts its workers and
makes spaces regardless; cleanup and `engram list` neither touch nor count another
user's files. The other user is a forked child that drops to uid/gid 65534 (nobody)
before it creates anything, so these tests need root."""
import logging
import os
import secrets
import subprocess
import sys

import numpy as np
import pytest

import engram
from engram import errors
from engram.store import shm
from engram.store.shm import names, segment
from engram.store.shm.names import EngineName

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="planting files as another user needs root "
                                                          "(the planting child drops to uid 65534)")
NOBODY = 65534
DIM = 16


def as_nobody(paths, directories=()):
    """Create empty files (and directories) in /dev/shm as uid/gid 65534, in a forked child."""
    pid = os.fork()
    if pid == 0:                    # the child: only os calls, then _exit
        code = 0
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            for p in paths:
                os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            for p in directories:
                os.mkdir(p, 0o755)
        except OSError as e:
            code = 10 + (e.errno or 0) % 100
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the planting child failed ({status})"
    for p in [*paths, *directories]:
        assert os.lstat(p).st_uid == NOBODY


def remove(paths, directories=()):
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    for p in directories:
        try:
            os.rmdir(p)
        except FileNotFoundError:
            pass


def shm_path(name: str, semaphore: bool = False) -> str:
    return f"{names.SHM_DIR}/{'sem.' if semaphore else ''}{name.lstrip('/')}"


def engram_cli(*args):
    return subprocess.run([sys.executable, "-m", "engram.cli", *args], capture_output=True, text=True, timeout=120)


def salt() -> int:
    return secrets.randbits(64)


def test_planted_next_names_block_nothing(tmp_path):
    """Every name an attacker can predict from a running engine's names (the next
    generations of its tables, old and new style, a space it may make, its engine-wide
    segments and semaphores) is taken first; the engine grows, compacts, saves, makes
    the space and starts its workers all the same, and a reader sees what it wrote."""
    with engram.Engine(path=tmp_path / "db", dim=DIM, workers=1) as eng:
        me = EngineName.parse(eng.name)
        m = eng.space("victim")
        rng = np.random.default_rng(1)
        m.remember(rng.standard_normal((10, DIM)).astype(np.float32))
        planted = []
        for t in ("nodes", "emb_hot", "emb_warm", "content", "csr", "delta"):
            for g in range(0, 6):
                planted.append(shm_path(f"/{me}.victim.{t}.g{g}"))                  # the old names
                planted.append(shm_path(me.table("victim", t, g, salt())))         # guessed salts
        for what in ("metrics", "pool", "tasks", "hops", f"trace.{os.getpid()}"):
            planted += [shm_path(me.engine_object(what)), shm_path(me.unique(what, salt()))]
        for what in ("work", "done0", "done1", "hop0", "hop1"):
            planted += [shm_path(me.engine_object(what), True), shm_path(me.unique(what, salt()), True)]
        planted += [shm_path(f"/{me}.later.dir"), shm_path(me.directory("later", salt()))]
        as_nobody(planted)
        try:
            n = 5000                         # in batches of 1000, nodes grow 1024 -> 8192: three generations
            ids = np.concatenate([m.remember(rng.standard_normal((1000, DIM)).astype(np.float32),
                                             content=[f"m{i}" for i in range(b, b + 1000)]) for b in range(0, n, 1000)])
            m.link(ids[:-1], ids[1:], 0.5)
            got = m.recall(rng.standard_normal(DIM).astype(np.float32), k=5, spread=True)    # compacts the links
            assert len(got.ids) == 5
            gens = m.stats()["generations"]
            assert gens["nodes"] >= 3 and gens["csr"] >= 1, gens
            assert eng.checkpoint() is not None                                   # save
            eng.space("later").remember(np.ones(DIM, np.float32))
            assert eng.start_workers(), "the workers did not start"
            assert eng.worker_stats()["workers"] == 1
            assert sorted(eng.spaces) == ["later", "victim"]
            out = subprocess.run([sys.executable, "-c", "import sys, engram\n"
                                  "a = engram.attach(sys.argv[1])\n"
                                  "print(a.spaces, len(a.space('victim')), a.space('victim').get(17).content)",
                                  eng.name], capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "['later', 'victim'] 5010 ['m7']"
            listed = engram_cli("inspect", eng.name)
            assert listed.returncode == 0, listed.stdout + listed.stderr
            assert "REFUSED" not in listed.stdout
            assert all(os.path.exists(p) for p in planted), "the engine removed another user's files"
        finally:
            remove(planted)


def test_a_taken_fresh_name_is_retried_and_all_taken_is_an_error(monkeypatch, caplog):
    """The salt of a new table generation is 64 random bits, so a clash needs a planted
    name and a known salt: the test makes the next salt known (it injects the salts) and
    plants the name it gives."""
    with engram.Engine(dim=DIM, workers=0) as eng:
        me = EngineName.parse(eng.name)
        m = eng.space("retried")
        known = salt()
        taken = shm_path(me.table("retried", "nodes", 1, known))
        as_nobody([taken])
        try:
            salts = iter([known, known])
            monkeypatch.setattr(segment, "fresh_salt", lambda: next(salts, None) or secrets.randbits(64))
            with caplog.at_level(logging.WARNING, logger="engram.shm"):
                m.remember(np.ones((2000, DIM), np.float32))        # nodes grow to generation 1
            assert m.stats()["generations"]["nodes"] == 1 and len(m) == 2000
            assert "already exists" in caplog.text and "trying another name" in caplog.text
            assert os.lstat(taken).st_uid == NOBODY
            monkeypatch.setattr(segment, "fresh_salt", lambda: known)  # every try: the planted name
            taken2 = shm_path(me.table("retried", "emb_hot", 2, known))
            remove([taken])
            as_nobody([taken2, shm_path(me.table("retried", "emb_hot", 1, known))])
            with pytest.raises(errors.SegmentError, match="fresh names .* were all taken"):
                m.remember(np.ones((3000, DIM), np.float32))
            remove([taken2, shm_path(me.table("retried", "emb_hot", 1, known))])
        finally:
            remove([taken])


def test_cleanup_and_list_skip_another_users_files(monkeypatch):
    """Files (and a directory) under a dead engine's name and under a running engine's
    prefix, made by another user: no Engine start, cleanup, list or inspect opens, counts
    or removes them, and nothing raises. Without the owner check, cleanup as root would
    remove the files and fail on the directory (IsADirectoryError)."""
    uid = os.getuid()
    dead = EngineName(uid, 2**22 + 11, secrets.token_hex(8))           # no pid is that large
    files = [shm_path(dead.directory("default", salt())), shm_path(dead.unique("metrics", salt())),
             shm_path(f"/{dead}.default.dir"), shm_path(dead.unique("work", salt()), True)]
    with engram.Engine(dim=DIM, workers=0) as eng:
        live = EngineName.parse(eng.name)
        eng.space("mine").remember(np.ones(DIM, np.float32))
        files += [shm_path(live.directory("planted", salt())), shm_path(live.unique("tasks", salt())),
                  shm_path(live.unique("trace.1", salt()))]
        dirs = [shm_path(live.directory("plantdir", salt())), shm_path(f"/{live}.plantdir2.dir")]
        unlinked = []
        real_unlink = segment.posix_ipc.unlink_shared_memory
        monkeypatch.setattr(segment.posix_ipc, "unlink_shared_memory",
                            lambda n: (unlinked.append(n), real_unlink(n))[1])
        as_nobody(files, dirs)
        try:
            assert dead not in shm.engines() and live in shm.engines()
            assert shm.dead_engines([dead]) == [] and shm.remove_dead([dead]) == []
            assert dead not in shm.cleanup_stale()
            with engram.Engine(dim=DIM, workers=0) as other:                # runs cleanup_stale at start
                assert dead not in other.cleaned
            assert shm.spaces_of(live) == ["mine"]
            objects = shm.objects_of(live)
            assert "tasks" not in objects and "trace.1" not in objects and len(objects["metrics"]) == 1
            assert engram.attach(eng.name).spaces == ["mine"]
            assert not [n for n in unlinked if str(dead) in n or ".planted" in n or "plantdir" in n]
            out = engram_cli("list")
            assert out.returncode == 0 and str(dead) not in out.stdout and eng.name in out.stdout, out.stderr
            assert "planted" not in out.stdout and "plantdir" not in out.stdout
            out = engram_cli("inspect", eng.name)
            assert out.returncode == 0 and "planted" not in out.stdout and "REFUSED" not in out.stdout, out
            out = engram_cli("cleanup", "--dry-run")
            assert out.returncode == 0 and str(dead) not in out.stdout, out.stderr
            for p in [*files, *dirs]:         # another root process's cleanup may take a planted file
                assert not os.path.exists(p) or os.lstat(p).st_uid == NOBODY
            assert all(os.path.isdir(p) for p in dirs)
        finally:
            remove(files, dirs)


def test_unlink_of_what_is_not_ours_is_reported_not_raised():
    """Segment.unlink and the semaphore unlink say False for a name they cannot remove (a
    directory in /dev/shm, which made the old cleanup raise IsADirectoryError out of
    Engine()) instead of raising out of cleanup or close. The directories carry this
    live process's pid, so no other engine's cleanup on this machine looks at them."""
    name = f"/eg.{os.getuid()}.{os.getpid()}.{secrets.token_hex(8)}.x.{salt():016x}"
    dirs = [shm_path(name), shm_path(name, True)]
    as_nobody([], dirs)
    try:
        assert segment.Segment.unlink(name) is False
        assert shm._unlink_semaphore(name) is False
        assert all(os.path.isdir(d) for d in dirs)
    finally:
        remove([], dirs)
