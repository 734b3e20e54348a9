"""Shared-memory segments: naming, creation/attach with header checks, cleanup."""
from __future__ import annotations

import logging

import posix_ipc

from engram.store.shm.names import EngineName, engines, pid_alive, resolve, segments_of, semaphores_of, spaces_of  # noqa: F401
from engram.store.shm.segment import Segment

log = logging.getLogger("engram.shm")


def cleanup_stale() -> list:
    """Remove the segments of this user's engines whose owner process is gone.

    Returns the engines cleaned. Called by every Engine at start, so a crash
    leaves nothing behind past the next start.
    """
    cleaned = []
    for eng in engines():
        if pid_alive(eng.pid):
            continue
        names = segments_of(eng)
        for name in names:
            Segment.unlink(name)
        _unlink_semaphores(eng)
        log.warning("engram: removed %d shared-memory segments left by crashed engine %s", len(names), eng)
        cleaned.append(eng)
    return cleaned


def _unlink_semaphores(engine: EngineName) -> int:
    n = 0
    for name in semaphores_of(engine):
        try:
            posix_ipc.unlink_semaphore(name)
            n += 1
        except posix_ipc.ExistentialError:
            pass
    return n


def unlink_engine(engine: EngineName) -> int:
    return sum(Segment.unlink(name) for name in segments_of(engine)) + _unlink_semaphores(engine)
