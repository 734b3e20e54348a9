"""Shared-memory segments: naming, creation/attach with header checks, cleanup."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import posix_ipc

from engram.store.shm.names import EngineName, engines, pid_alive, resolve, segments_of, semaphores_of, spaces_of  # noqa: F401
from engram.store.shm.segment import Segment

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
    """Remove the segments of this user's engines whose owner process is gone.

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


def _unlink_semaphores(engine: EngineName) -> int:
    return sum(_unlink_semaphore(name) for name in semaphores_of(engine))


def unlink_engine(engine: EngineName) -> int:
    return sum(Segment.unlink(name) for name in segments_of(engine)) + _unlink_semaphores(engine)
