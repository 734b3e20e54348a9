"""Shared-memory segments: naming, creation/attach with header checks, cleanup."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import posix_ipc

from engram.errors import AttachError, SegmentError
from engram.store.shm.names import (  # noqa: F401
    EngineName,
    engines,
    find,
    fresh_salt,
    objects_of,
    pid_alive,
    resolve,
    segments_of,
    semaphores_of,
    spaces_of,
)
from engram.store.shm.segment import NAME_ATTEMPTS, Segment

log = logging.getLogger("engram.shm")


@dataclass
class Leftovers:
    """What a dead engine left in /dev/shm (and, after remove_dead, what was removed)."""
    engine: EngineName
    segments: list
    semaphores: list


def dead_engines(only=None) -> list:
    """The Leftovers of this user's engines whose owner process is gone (of ``only``, a
    list of EngineNames, if given): what cleanup would remove, nothing touched."""
    found = engines() if only is None else [e for e in engines() if e in only]
    return [Leftovers(e, segments_of(e), semaphores_of(e)) for e in found if not pid_alive(e.pid)]


def remove_dead(only=None) -> list:
    """Remove the segments and semaphores of this user's engines whose owner is gone (of
    ``only``, if given); returns Leftovers listing what was removed (another process
    cleaning at the same moment may have taken some). Engines that run are never touched."""
    removed = []
    for left in dead_engines(only):
        if pid_alive(left.engine.pid):      # re-checked just before touching anything
            continue
        segs = [n for n in left.segments if Segment.unlink(n)]
        sems = [n for n in semaphores_of(left.engine) if _unlink_semaphore(n)]
        removed.append(Leftovers(left.engine, segs, sems))
    return removed


def cleanup_stale() -> list:
    """Remove the segments of this user's engines whose owner process is gone (only this
    user's files: another user's file under an engine's name is never touched).

    Returns the engines cleaned. Called by every Engine at start, so a crash
    leaves nothing behind past the next start; ``engram cleanup`` runs it by hand.
    """
    cleaned = []
    for left in remove_dead():
        log.warning("engram: removed %d shared-memory segments left by crashed engine %s",
                    len(left.segments), left.engine)
        cleaned.append(left.engine)
    return cleaned


def _unlink_semaphore(name: str) -> bool:
    try:
        posix_ipc.unlink_semaphore(name)
        return True
    except posix_ipc.ExistentialError:
        return False
    except (posix_ipc.PermissionsError, OSError) as e:
        log.warning("engram: could not remove semaphore %s: %s", name, e)
        return False


def _unlink_semaphores(engine: EngineName) -> int:
    return sum(_unlink_semaphore(name) for name in semaphores_of(engine))


def unlink_engine(engine: EngineName) -> int:
    return sum(Segment.unlink(name) for name in segments_of(engine)) + _unlink_semaphores(engine)


def create_semaphore(engine: EngineName, what: str) -> posix_ipc.Semaphore:
    """A new semaphore (value 0, mode 0600) of the engine under a fresh salted name, and
    another if that name exists (someone created it first)."""
    for _ in range(NAME_ATTEMPTS):
        name = engine.unique(what, fresh_salt())
        try:
            return posix_ipc.Semaphore(name, flags=posix_ipc.O_CREX, mode=0o600, initial_value=0)
        except posix_ipc.ExistentialError:
            log.warning("engram: semaphore %s exists already; trying another name", name)
    raise SegmentError(f"{NAME_ATTEMPTS} fresh names for semaphore {what} of engine {engine} were all taken: "
                       "another process is creating them first")


def open_semaphore(engine: EngineName, what: str, objects: dict | None = None) -> posix_ipc.Semaphore:
    """The engine's semaphore ``what`` (``objects``: an ``objects_of(engine, semaphores=True)``
    listing to find it in); AttachError if it has none."""
    name = find(engine, what, semaphore=True, objects=objects)
    try:
        return posix_ipc.Semaphore(name)
    except posix_ipc.Error as e:
        raise AttachError(f"cannot open semaphore {name}: {e}", name) from e
