"""Names of engram's shared-memory segments, and finding them again.

    /eg.<uid>.<pid>.<token>.<space>.<table>.g<generation>.<salt>   a table of a space
    /eg.<uid>.<pid>.<token>.<space>.<salt>.dir                      a space's directory
    /eg.<uid>.<pid>.<token>.<what>.<salt>                           an engine-wide segment or
                                                                   semaphore (metrics, pool, tasks,
                                                                   hops, trace.<pid>, work, done<i>, hop<j>)

The token is 16 random hex digits, so an engine's names cannot be guessed; uid and pid
let a new engine find and remove what a crashed one of the same user left. Once any of
an engine's segments is visible in /dev/shm, its token is known to every user, so every
name made after that also ends in a salt of 16 fresh random hex digits: nobody can
create a name first to make ours fail. Readers learn a table's salt from the space
directory (its TableRef) and the other names by listing /dev/shm. Space names never
contain '.', so the fields split unambiguously.

Only this user's regular files in /dev/shm are ever listed: another user can create
files there under our names (the directory is world-writable), and those are never
opened, counted or removed.
"""
from __future__ import annotations

import os
import re
import secrets
import stat
from dataclasses import dataclass

from engram.errors import AttachError, InvalidInputError, UnknownEngineError

SHM_DIR = "/dev/shm"
PREFIX = "eg"
_ENGINE_RE = re.compile(r"^eg\.(\d{1,10})\.(\d{1,10})\.([0-9a-f]{16})$")
_SALT = r"[0-9a-f]{16}"


def fresh_salt() -> int:
    """64 random bits for the end of a new name."""
    return secrets.randbits(64)


@dataclass(frozen=True)
class EngineName:
    uid: int
    pid: int
    token: str

    @classmethod
    def new(cls) -> "EngineName":
        return cls(os.getuid(), os.getpid(), secrets.token_hex(8))

    @classmethod
    def parse(cls, text: str) -> "EngineName":
        m = _ENGINE_RE.match(text.lstrip("/"))
        if not m:
            raise ValueError(f"{text!r} is not an engine name (eg.<uid>.<pid>.<token>); `engram list` shows them")
        return cls(int(m.group(1)), int(m.group(2)), m.group(3))

    def __str__(self) -> str:
        return f"{PREFIX}.{self.uid}.{self.pid}.{self.token}"

    def directory(self, space: str, salt: int) -> str:
        return f"/{self}.{space}.{salt:016x}.dir"

    def table(self, space: str, table: str, generation: int, salt: int) -> str:
        return f"/{self}.{space}.{table}.g{generation}.{salt:016x}"

    def unique(self, what: str, salt: int) -> str:
        """An engine-wide segment or semaphore (the record pool, the task board, ...) under a
        salted name; readers find it with ``find``."""
        return f"/{self}.{what}.{salt:016x}"

    def engine_object(self, what: str) -> str:
        """An engine-wide object under a fixed name (the ingest rings)."""
        return f"/{self}.{what}"


def _entries() -> list:
    """The names in /dev/shm of this user's regular files that may be engram's."""
    uid, out = os.getuid(), []
    try:
        with os.scandir(SHM_DIR) as it:
            for e in it:
                if not e.name.startswith((PREFIX + ".", "sem." + PREFIX + ".")):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:          # removed while we looked
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_uid == uid:
                    out.append(e.name)
    except OSError:
        return []
    return out


def engine_of(entry: str):
    """The EngineName a /dev/shm entry (a segment, or a semaphore's "sem." file) belongs to,
    or None if it is not ours."""
    if entry.startswith("sem."):
        entry = entry[4:]
    parts = entry.split(".")
    if len(parts) < 5 or parts[0] != PREFIX:
        return None
    try:
        return EngineName.parse(".".join(parts[:4]))
    except ValueError:
        return None


def segments_of(engine: EngineName) -> list:
    prefix = f"{engine}."
    return sorted("/" + e for e in _entries() if e.startswith(prefix))


def semaphores_of(engine: EngineName) -> list:
    """Names of the engine's posix semaphores (/dev/shm/sem.<name>)."""
    prefix = f"sem.{engine}."
    return sorted("/" + e[4:] for e in _entries() if e.startswith(prefix))


def _directories(engine: EngineName) -> dict:
    pattern = re.compile(rf"^{re.escape(str(engine))}\.([a-z0-9_-]+)\.{_SALT}\.dir$")
    found: dict = {}
    for e in _entries():
        m = pattern.match(e)
        if m:
            found.setdefault(m.group(1), []).append("/" + e)
    return found


def spaces_of(engine: EngineName) -> list:
    return sorted(_directories(engine))


def directory_of(engine: EngineName, space: str):
    """The name of a space's directory segment, or None if the engine has no such space."""
    found = _directories(engine).get(space, [])
    if len(found) > 1:
        raise AttachError(f"engine {engine} has {len(found)} directories for space {space!r} ({', '.join(found)}); "
                          "an engine makes one", found[0])
    return found[0] if found else None


def objects_of(engine: EngineName, semaphores: bool = False) -> dict:
    """{what: name} of the engine's salted engine-wide segments (or semaphores)."""
    lead = "sem." if semaphores else ""
    pattern = re.compile(rf"^{re.escape(lead + str(engine))}\.(.+)\.{_SALT}$")
    out: dict = {}
    for e in _entries():
        m = pattern.match(e)
        if m:
            out.setdefault(m.group(1), []).append("/" + e[len(lead):])
    return out


def find(engine: EngineName, what: str, semaphore: bool = False, objects: dict | None = None) -> str:
    """The name of an engine-wide segment (or semaphore) ``what``; AttachError if the engine
    has none. ``objects``: an ``objects_of`` listing to look in instead of /dev/shm."""
    found = (objects_of(engine, semaphore) if objects is None else objects).get(what, [])
    kind = "semaphore" if semaphore else "segment"
    if not found:
        raise AttachError(f"engine {engine} has no {what} {kind} in shared memory (it exited, or has not made "
                          "it yet)", f"/{engine}.{what}")
    if len(found) > 1:
        raise AttachError(f"engine {engine} has {len(found)} {what} {kind}s ({', '.join(found)}); it makes one",
                          found[0])
    return found[0]


_TABLE_NAME = re.compile(rf"^([a-z0-9_-]+)\.([a-z_]+)\.g(\d+)\.{_SALT}$")
_DIR_NAME = re.compile(rf"^([a-z0-9_-]+)\.{_SALT}\.dir$")
_OBJECT_NAME = re.compile(rf"^(.+)\.{_SALT}$")


def parse_name(engine: EngineName, name: str) -> dict:
    """What one of the engine's segment names says: {"space", "table", "generation"} of a
    table, {"space", "table": "dir"} of a directory, {"object": what} of an engine-wide
    segment (salted or not); {} if it is none of these."""
    rest = name.lstrip("/").removeprefix(f"{engine}.")
    if m := _DIR_NAME.match(rest):
        return {"space": m.group(1), "table": "dir"}
    if m := _TABLE_NAME.match(rest):
        return {"space": m.group(1), "table": m.group(2), "generation": int(m.group(3))}
    m = _OBJECT_NAME.match(rest)
    return {"object": m.group(1) if m else rest}


def engines(uid: int | None = None) -> list:
    """Every engine with segments in /dev/shm (of one user, by default this one)."""
    uid = os.getuid() if uid is None else uid
    found = {engine_of(e) for e in _entries()}
    return sorted((e for e in found if e is not None and e.uid == uid), key=lambda e: (e.pid, e.token))


def resolve(engine) -> EngineName:
    """A running engine of this user by name (``eg.<uid>.<pid>.<token>``, str or EngineName)
    or by its owner's pid (an int, or digits) when one engine has that pid."""
    live = engines()
    if isinstance(engine, bool) or not isinstance(engine, (str, int, EngineName)):
        raise UnknownEngineError(f"an engine is named by its name (str) or its owner's pid (int), "
                                 f"got {type(engine).__name__}")
    text = str(engine)
    if isinstance(engine, int) or text.isdigit():
        found = [e for e in live if e.pid == int(text)]
        if len(found) == 1:
            return found[0]
        raise UnknownEngineError(f"no single running engine of pid {text} (found {len(found)}); "
                                 "`engram list` shows them")
    try:
        name = EngineName.parse(text)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not an engine name (eg.<uid>.<pid>.<token>) or pid") from None
    if name not in live:
        raise UnknownEngineError(f"engine {text} is not in shared memory (it exited?); "
                                 "`engram list` shows the running ones")
    return name


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):    # OverflowError: no pid is that large
        return False
    except PermissionError:
        return True
    return True
