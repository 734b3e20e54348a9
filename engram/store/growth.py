"""An embedding table's next generation, filled in the background ahead of need.

A table that fills is re-created at twice its capacity and its rows copied over
(``SpaceStore.reserve``). For an embedding table that copy is gigabytes at a
million rows: done when the table is full, it would hold the space's lock (the
ingest worker, remember, recall's bookkeeping, a checkpoint) for seconds. So once
an embedding table of at least PREGROW_MIN rows is PREGROW_AT full, the owner
creates the next generation and a thread copies the rows stored so far into it
(through the file: ``Segment.write_at``, without the GIL) while the owner goes on
appending to the current one. When the table fills, ``reserve`` copies only the
rows appended since and installs it. Rows below the copied count change in place
only by forget and reconsolidation; the store counts those changes, and a copy
that one of them may have missed is dropped (the table then grows as before).
The next generation is not published until it is installed, so readers never
see it; while it fills, the table takes the memory of both, as a growth always
did, but for longer.
"""
from __future__ import annotations

import threading

from engram.store.shm.segment import Segment

PREGROW_AT = 0.8        # of capacity: when the background copy starts
PREGROW_MIN = 1 << 16   # rows: a smaller table grows in milliseconds, when it is full


class Growth:
    """A next generation ``seg`` being filled with ``copies`` ([(byte offset, source
    view)]): the first ``rows`` rows of every region, as they were when the store's count
    of in-place changes was ``changes``."""

    def __init__(self, seg: Segment, copies: list, rows: int, changes: int):
        self.seg, self.rows, self.changes = seg, rows, changes
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._copy, args=(copies,), name="engram-grow", daemon=True)
        self._thread.start()

    def _copy(self, copies: list) -> None:
        try:
            for offset, view in copies:
                self.seg.write_at(offset, view)
        except Exception as e:      # OSError (/dev/shm full): the table grows as before, and says so
            self.error = e

    def finish(self) -> bool:
        """Wait for the copy; True if it is complete."""
        self._thread.join()
        return self.error is None

    def drop(self) -> None:
        """Wait for the copy and remove the segment (never published: no reader has it)."""
        self._thread.join()
        Segment.unlink(self.seg.name)
