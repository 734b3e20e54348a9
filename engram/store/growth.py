"""An embedding table's next generation, filled in the background ahead of need.

A table that fills is re-created larger and its rows copied over
(``SpaceStore.reserve``): twice its capacity, or for an embedding table of
PREGROW_MIN rows or more, ``next_capacity``: at least RESERVE_BYTES of rows. Shared
memory is allocated as it is written, so untouched rows cost address space, not
memory: the step from PREGROW_MIN rows to the reservation copies a few tens of MB,
and the table then holds tens of millions of rows without another copy. (Growing
4x at a time, the step at a million 768-d rows copied 1.2 GB while ingest went on,
and held both generations in memory until it was installed: 2.4 GB per 1M
observations instead of 1.6.) Past the reservation a table grows FACTOR times.

Done when the table is full, a copy would hold the space's lock (the ingest
worker, remember, recall's bookkeeping, a checkpoint) for seconds. So once an
embedding table of at least PREGROW_MIN rows is PREGROW_AT full, the owner
creates the next generation and a thread copies the rows stored so far into it
(through the file: ``Segment.write_at``, without the GIL), and then the rows
appended meanwhile, while the owner goes on appending to the current one. When the
table fills, ``reserve`` copies only the rows appended since the last pass and
installs it. Rows below the copied count change in place
only by forget and reconsolidation; the store counts those changes, and a copy
that one of them may have missed is dropped (the table then grows as before).
The next generation is not published until it is installed, so readers never
see it; while it fills, the table takes the memory of both.
"""
from __future__ import annotations

from engram.errors import StorageFullError
from engram.store.shm.segment import Segment
from engram.threads import named_thread

PREGROW_AT = 0.8        # of capacity: when the background copy starts
PREGROW_MIN = 1 << 16   # rows: a smaller table grows in milliseconds, when it is full
FACTOR = 4              # a big table's growth past the reservation (each row copied 1/3 time on average)
RESERVE_BYTES = 64 << 30    # of rows: the address space a big table's next generation reserves
MAX_ROWS = 1 << 31      # rows are numbered in u32 (node_row, row_node)
CATCH_UP = 4096         # rows: the copy repeats for rows appended meanwhile until fewer are left


def next_capacity(cap: int, row_bytes: int) -> int:
    """The capacity a table of ``cap`` rows of ``row_bytes`` grows to from PREGROW_MIN rows on."""
    return max(min(max(cap * FACTOR, RESERVE_BYTES // row_bytes), MAX_ROWS), cap + 1)


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
        self._thread = named_thread(self._copy, "engram-grow", args=(old, views, offsets))
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


def back(seg: Segment, regions: tuple, rows: int, backed: int) -> int:
    """Allocate a file-backed table's disk blocks for its first ``rows`` rows (of each of its
    ``regions``) before they are written through the mapping (Segment.allocate), half as
    many again ahead so most batches need no call; returns the rows backed now. A full disk
    is a StorageFullError before anything is written."""
    if rows <= backed:
        return backed
    cap = seg.h("capacity")
    target = min(max(rows, backed + backed // 2, 4096), cap)
    try:
        for _, off, dt, count, _ in regions:
            seg.allocate(off, dt.itemsize * (count // cap) * target)
    except OSError as e:
        raise StorageFullError(f"{seg.name}: its disk has no room for {target:,} rows ({e.strerror}); nothing was "
                               "written: free space, or move memories out of the cold tier") from None
    return target

