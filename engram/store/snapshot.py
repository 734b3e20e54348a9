"""Ownership of an engine's directory: one live engine per path (``Engine(path=...)``).

    path/LOCK    flock'd by the engine that owns the path, holding its pid

What the directory holds is described in engram/persistence.py.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from engram.errors import SnapshotError


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
