"""An embedding table's next generation, filled in the background ahead of need.

A table that fills is re-created at twice its capacity and its rows copied over
(``SpaceStore.reserve``); an embedding table of PREGROW_MIN rows or more, at FACTOR
times its capacity. For an embedding table that copy is gigabytes at a
million rows: done when the table is full, it would hold the space's lock (the
ingest worker, remember, recall's bookkeeping, a checkpoint) for seconds. So once
an embedding table of at least PREGROW_MIN rows is PREGROW_AT full, the owner
creates the next generation and a thread copies the rows stored so far into it
(through the file: ``Segment.write_at``, without the GIL), and then the rows
appended meanwhile, while the owner goes on appending to the current one. When the
table fills, ``reserve`` copies only the rows appended since the last pass and
installs it. Rows below the copied count change in place
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
FACTOR = 4              # a big table's next capacity: untouched rows of a segment take no memory
                        # (shared memory is allocated as it is written), so a larger step only
                        # reserves address space, and each row is copied 1/3 time on average, not 1
CATCH_UP = 4096         # rows: the copy repeats for rows appended meanwhile until fewer are left


class Growth:
    """A next generation ``seg`` being filled from the current one, ``old`` (its regions'
    views ``views`` and their byte offsets in ``seg``, ``offsets``): the rows the owner has
    published, in passes that catch up with the ones appended during the last, until
    fewer than CATCH_UP rows are left for ``reserve``. ``changes``: the store's count of
    in-place changes to stored rows when the copy began."""

    def __init__(self, seg: Segment, old: Segment, views: dict, offsets: dict, changes: int):
        self.seg, self.changes = seg, changes
        self.rows = 0                   # copied so far: complete once the thread is done
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._copy, args=(old, views, offsets), name="engram-grow",
                                        daemon=True)
        self._thread.start()

    def _copy(self, old: Segment, views: dict, offsets: dict) -> None:
        try:
            while True:
                upto = old.h("count")       # published: every region of these rows is written
                if self.rows and upto - self.rows < CATCH_UP:
                    return
                for name, view in views.items():
                    self.seg.write_at(offsets[name] + self.rows * view.strides[0], view[self.rows:upto])
                self.rows = upto
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
