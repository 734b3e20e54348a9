"""Names of engram's shared-memory segments, and finding them again.

    /eg.<uid>.<pid>.<token>.<space>.<table>.g<generation>
    /eg.<uid>.<pid>.<token>.<space>.dir

The token is 16 random hex digits, so names cannot be guessed; uid and pid
let a new engine find and remove what a crashed one of the same user left.
Space names never contain '.', so the fields split unambiguously.
"""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass

from engram.errors import InvalidInputError, UnknownEngineError

SHM_DIR = "/dev/shm"
PREFIX = "eg"
_ENGINE_RE = re.compile(r"^eg\.(\d+)\.(\d+)\.([0-9a-f]{16})$")


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

    def directory(self, space: str) -> str:
        return f"/{self}.{space}.dir"

    def table(self, space: str, table: str, generation: int) -> str:
        return f"/{self}.{space}.{table}.g{generation}"

    def engine_object(self, what: str) -> str:
        """An engine-wide segment or semaphore (the record pool, the task board, ...)."""
        return f"/{self}.{what}"


def _entries() -> list:
    try:
        return os.listdir(SHM_DIR)
    except OSError:
        return []


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


def spaces_of(engine: EngineName) -> list:
    prefix = f"{engine}."
    return sorted(e[len(prefix):-len(".dir")] for e in _entries()
                  if e.startswith(prefix) and e.endswith(".dir"))


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
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
