"""The tables of one memory space in shared memory.

A space is a directory segment plus one segment per table:

    nodes     NodeHot[cap] (64-byte records) | node_row u32[cap]
    emb_hot   f32 rows[cap][row_bytes]        | row_node u32[cap] | row_live u8[cap] | row_norm f32[cap]
    emb_warm  f16 rows, same regions
    emb_cold  int8 rows, same regions | row_scale f32[cap]; a file on disk when the space
              has a cold directory (engram/store/shm/segment.py), so its pages can leave RAM
    content   bytes: records of u32 length + UTF-8, addressed by NodeHot.content_ref
    csr       CsrHeader | offsets u64[n+1] | targets u32[m] | weights f32[m]
    delta     EdgeDelta[cap], the links not yet compacted into csr

Memory ids are node slots: id i is nodes[i]. Each tier's embedding table has
its own rows; node_row maps a node to its row and row_node back.

The owner is the only writer. It writes data first and publishes it by raising a count
(a segment header's ``count``) afterwards; a reader reads the count first and never looks
past it. A table that fills is re-created larger under generation g+1 (and a fresh random
salt in its name, so nobody can create the name first), filled, published in the directory
(its TableRef: the generation and the salt), and the old name unlinked; readers see the new
generation and re-attach, while their old mapping stays valid until they drop it. An
embedding table's next generation is filled in the background ahead of need
(engram/store/growth.py). A reader checks what it attaches before it makes a view of it
(tablecheck.py); the owner trusts its own segments.
"""
from __future__ import annotations

import os

import numpy as np

from engram.errors import AttachError, ReadOnlyError, SegmentError, StorageFullError
from engram.layout import (
    CSR_HEADER_DTYPE,
    NODE_HOT_DTYPE,
    SPACE_DIRECTORY_DTYPE,
    TABLE_REF_DTYPE,
    schema,
)
from engram.store import growth, tablecheck
from engram.store import rows as codec
from engram.store.rows import TIER_COLD, TIER_DTYPE, TIER_LABEL, TIER_NAMES, TIER_TABLE  # noqa: F401 (re-exported)
from engram.store.shm.names import EngineName, directory_of
from engram.store.shm.segment import Segment, align_up, is_file
from engram.store.tablecheck import KIND, cold_dir_of, regions, row_bytes_for

C = schema.CONSTANTS
LIVE, FORGOTTEN = C["NODE_LIVE"], C["NODE_FORGOTTEN"]
TABLE_INDEX = {t: i for i, t in enumerate(schema.TABLES)}
INITIAL_CAPACITY = {"nodes": 1024, "emb_hot": 1024, "emb_warm": 1024, "emb_cold": 1024, "content": 65536, "delta": 4096}
CONTENT_FIRST = 8   # content_ref 0 means "no content", so records start at 8
MAX_COLD_DIR = SPACE_DIRECTORY_DTYPE["cold_dir"].shape[0] - 1     # bytes of path (NUL padded)


class SpaceStore:
    """Segments and numpy views of one space; owner (writable) or attached reader."""

    def __init__(self, engine: EngineName, space: str, dim: int = 0, *, create: bool, cold_dir: str = ""):
        """cold_dir (owner): a directory on disk for the cold tier's table ("": /dev/shm)."""
        self.engine, self.space, self.writable = engine, space, create
        self.segs: dict = {}
        self.views: dict = {}
        self.offsets: dict = {}          # table -> region name -> byte offset in its segment's data
        self._growths: dict = {}         # embedding table -> Growth (engram/store/growth.py)
        self._backed: dict = {}          # file-backed segment -> rows given disk blocks (_back)
        self._changed = dict.fromkeys(TIER_TABLE.values(), 0)    # in-place changes to stored rows
        self._snap: dict = {}
        if create:
            self.dir_seg = Segment.create_fresh(lambda salt: engine.directory(space, salt), kind=C["TABLE_DIRECTORY"],
                                                data_bytes=SPACE_DIRECTORY_DTYPE.itemsize, capacity=1, dim=dim)
        else:
            name = directory_of(engine, space)
            if name is None:
                raise AttachError(f"engine {engine} has no directory segment of space {space!r} in shared memory "
                                  "(it exited, or has no such space)", f"/{engine}.{space}")
            self.dir_seg = tablecheck.directory(Segment.attach(name, kind=C["TABLE_DIRECTORY"]), space)
        self.dir = self.dir_seg.array(0, SPACE_DIRECTORY_DTYPE, 1)
        self.refs = self.dir["tables"][0].view(TABLE_REF_DTYPE)   # TableRef[MAX_TABLES]
        if create:
            name = space.encode()
            self.dir["name"][0, :len(name)] = np.frombuffer(name, np.uint8)
            self.dir["dim"] = dim
            self.dir["n_tables"] = len(schema.TABLES)
            where = os.fsencode(cold_dir)
            if len(where) > MAX_COLD_DIR or (where and not os.path.isabs(cold_dir)):
                raise ValueError(f"cold_dir {cold_dir!r} is not an absolute path of at most {MAX_COLD_DIR} bytes")
            self.dir["cold_dir"][0, :len(where)] = np.frombuffer(where, np.uint8)
        self.dim = int(self.dir["dim"][0])
        self.cold_dir = cold_dir_of(self.dir)
        if create:
            for t in ("nodes", "emb_hot", "emb_warm", "emb_cold", "content", "delta"):
                self._install(t, self._new_table(t, INITIAL_CAPACITY[t], 0))
            self._install("csr", self._new_csr(np.zeros(1, np.uint64), np.zeros(0, np.uint32),
                                               np.zeros(0, np.float32), np.zeros((3, 0), np.float32), 0, 0))
            self.dir_seg.set("count", 1)
        else:
            self.refresh()

    # ---- reading ---------------------------------------------------------------
    def refresh(self) -> None:
        """Reader: re-attach tables whose generation changed and snapshot their counts.

        Order matters: the nodes count is read first and every other table
        after it. The owner publishes a memory's rows, content and links
        before the node count that makes it visible, and grows a table
        before writing into it, so every node below the snapshot finds its
        data in the tables attached afterwards.
        """
        for t in schema.TABLES:   # "nodes" is first
            for attempt in range(50):
                ref = self.refs[TABLE_INDEX[t]]
                gen = int(ref["generation"])      # the owner writes the salt first and the generation last
                salt = int(ref["salt"])
                bound = self.segs.get(t)
                if bound is not None and bound.salt == salt and bound.h("generation") == gen:
                    break
                try:
                    seg = Segment.attach(self._name(t, gen, salt), kind=KIND[t])
                except AttachError:
                    if attempt == 49:
                        raise
                    continue  # grew again while we looked: read the directory again
                seg.salt = salt
                self._bind(t, tablecheck.table(seg, t, gen, self.dim))
                break
            self._snap[t] = self.segs[t].h("count")

    def count(self, table: str) -> int:
        """Rows (bytes for content) in use: live for the owner, as of refresh() for readers."""
        return self.segs[table].h("count") if self.writable else self._snap[table]

    def generation(self, table: str) -> int:
        return self.segs[table].h("generation")

    @property
    def n_nodes(self) -> int:
        return self.count("nodes")

    def hot(self) -> np.ndarray:
        return self.views["nodes"]["hot"][:self.n_nodes]

    def tier_counts(self) -> tuple:
        """Rows in each tier's embedding table (TIER_TABLE's order), as count() sees them."""
        return tuple(self.count(t) for t in TIER_TABLE.values())

    def tier_rows(self, tier: int):
        """(rows, row_node, row_live, row_norm) of a tier, cut to the published count."""
        t = TIER_TABLE[tier]
        n = self.count(t)
        v = self.views[t]
        return v["rows"][:n, :self.dim], v["row_node"][:n], v["row_live"][:n], v["row_norm"][:n]

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        return codec.read(self, ids)      # f32 vectors of published memories (engram/store/rows.py)

    def content_at(self, ref: int):
        if ref == 0:
            return None
        heap = self.views["content"]["heap"][:self.count("content")]
        n = int(heap[ref:ref + 4].view(np.uint32)[0]) if ref + 4 <= heap.shape[0] else -1
        if n < 0 or ref + 4 + n > heap.shape[0]:
            raise SegmentError(f"{self.segs['content'].name}: a node's content_ref {ref:,} (length {n:,}) is past "
                               f"the {heap.shape[0]:,} bytes of content in use: the segment is damaged")
        return bytes(heap[ref + 4:ref + 4 + n]).decode("utf-8", errors="replace")

    def csr(self):
        return self.views["csr"]

    def delta(self) -> np.ndarray:
        return self.views["delta"]["log"][:self.count("delta")]

    # ---- segments --------------------------------------------------------------
    def _bind(self, table: str, seg: Segment) -> None:
        self.segs[table] = seg
        if table == "csr":
            h = seg.array(0, CSR_HEADER_DTYPE, 1, field="csr header")
            n, m = int(h["n_nodes"][0]), int(h["n_edges"][0])
            self.views[table] = {
                "header": h,
                "offsets": seg.array(int(h["offsets_at"][0]), np.uint64, n + 1, field="offsets_at / n_nodes"),
                "targets": seg.array(int(h["targets_at"][0]), np.uint32, m, field="targets_at / n_edges"),
                "weights": seg.array(int(h["weights_at"][0]), np.float32, m, field="weights_at / n_edges"),
                "fan": seg.array(int(h["fan_at"][0]), np.float32, 3 * m, shape=(3, m), field="fan_at / n_edges"),
            }
            return
        regs, _ = regions(table, seg.h("capacity"), self.dim)
        self.views[table] = {name: seg.array(off, dt, count, shape, field="capacity")
                             for name, off, dt, count, shape in regs}
        self.offsets[table] = {name: off for name, off, _, _, _ in regs}

    def _name(self, table: str, gen: int, salt: int) -> str:
        name = self.engine.table(self.space, table, gen, salt)
        return os.path.join(self.cold_dir, name[1:]) if table == "emb_cold" and self.cold_dir else name

    def _new_table(self, table: str, cap: int, gen: int) -> Segment:
        _, nbytes = regions(table, cap, self.dim)
        rb = row_bytes_for(table, self.dim) if table.startswith("emb") else 0
        return Segment.create_fresh(lambda salt: self._name(table, gen, salt), kind=KIND[table],
                                    data_bytes=nbytes, capacity=cap, row_bytes=rb, dim=self.dim, generation=gen,
                                    keep_fd=True)

    def _new_csr(self, offsets, targets, weights, fan, delta_applied: int, gen: int) -> Segment:
        n, m = offsets.shape[0] - 1, targets.shape[0]
        off_at = CSR_HEADER_DTYPE.itemsize
        tgt_at = align_up(off_at + 8 * (n + 1))
        w_at = align_up(tgt_at + 4 * m)
        fan_at = align_up(w_at + 4 * m)
        seg = Segment.create_fresh(lambda salt: self.engine.table(self.space, "csr", gen, salt), kind=KIND["csr"],
                                   data_bytes=align_up(fan_at + 12 * m), capacity=m, dim=self.dim, generation=gen)
        h = seg.array(0, CSR_HEADER_DTYPE, 1)
        h["n_nodes"], h["n_edges"], h["delta_applied"] = n, m, delta_applied
        h["offsets_at"], h["targets_at"], h["weights_at"], h["fan_at"] = off_at, tgt_at, w_at, fan_at
        seg.array(off_at, np.uint64, n + 1)[:] = offsets
        seg.array(tgt_at, np.uint32, m)[:] = targets
        seg.array(w_at, np.float32, m)[:] = weights
        seg.array(fan_at, np.float32, 3 * m, shape=(3, m))[:] = fan
        seg.set("count", m)
        return seg

    def _install(self, table: str, seg: Segment) -> None:
        """Bind a filled segment and publish its generation; unlink the one it replaces."""
        old = self.segs.get(table)
        self._bind(table, seg)
        ref = self.refs[TABLE_INDEX[table]]
        ref["salt"] = seg.salt
        ref["capacity"] = seg.h("capacity")
        ref["generation"] = seg.h("generation")     # last: a reader that sees it sees the salt
        if old is not None:
            Segment.unlink(old.name)

    # ---- writing (owner only) --------------------------------------------------
    def _require_writable(self):
        if not self.writable:
            raise ReadOnlyError(f"space {self.space!r} is attached read-only; only its owner process writes")

    def reserve(self, table: str, needed: int) -> None:
        """Make room for ``needed`` more rows (bytes, for content), growing the table if full."""
        self._require_writable()
        seg = self.segs[table]
        used, cap = seg.h("count"), seg.h("capacity")
        if used + needed <= cap:
            self._back(table, used + needed)
            return
        new, done = self._grown(table, used + needed)
        if new is None:
            new = self._new_table(table, max(cap * 2, used + needed), seg.h("generation") + 1)
        regs_old = self.views[table]
        try:
            for name, off, _, _, _ in regions(table, new.h("capacity"), self.dim)[0]:
                if used > done:     # through the file: the kernel fills the new pages (Segment.write_at)
                    view = regs_old[name]
                    new.write_at(off + done * view.strides[0], view[done:used])
        except OSError as e:        # ENOSPC: the table stays as it was
            Segment.unlink(new.name)
            raise StorageFullError(f"{new.name}: no room to grow {table} ({e.strerror}); nothing was written") from None
        new.set("count", used)
        self._install(table, new)
        self._back(table, used + needed)

    def _back(self, table: str, rows: int) -> None:
        seg = self.segs[table]
        if is_file(seg.name):      # disk blocks before the rows are written (growth.back)
            self._backed[seg.name] = growth.back(seg, regions(table, seg.h("capacity"), self.dim)[0], rows,
                                                 self._backed.get(seg.name, 0))

    def pregrow(self, table: str) -> None:
        """Start filling the next generation of an embedding table in the background once it
        is PREGROW_AT full (engram/store/growth.py)."""
        seg = self.segs[table]
        used, cap = seg.h("count"), seg.h("capacity")
        if table in self._growths or cap < growth.PREGROW_MIN or used < growth.PREGROW_AT * cap:
            return
        new_cap = growth.next_capacity(cap, seg.h("row_bytes"))
        new = self._new_table(table, new_cap, seg.h("generation") + 1)
        offsets = {name: off for name, off, _, _, _ in regions(table, new_cap, self.dim)[0]}
        self._growths[table] = growth.Growth(new, seg, dict(self.views[table]), offsets, self._changed[table])

    def _grown(self, table: str, need: int):
        """(next generation, rows already in it) from a background growth of ``table`` that
        is complete, holds ``need`` rows and missed no in-place change; else (None, 0)."""
        g = self._growths.pop(table, None)
        if g is None:
            return None, 0
        if g.finish() and g.changes == self._changed[table] and need <= g.seg.h("capacity"):
            return g.seg, g.rows
        g.drop()
        return None, 0

    def rewrite_row(self, node: int, tier: int, vector: np.ndarray) -> None:
        """Give a memory a new vector (reconsolidation) in a new row at the end of its tier's
        table (rows.move): stored rows never change, so an index built over them stays true,
        and the new row is in the exact tail until the index takes it (engram/recall/ann.py)."""
        codec.move(self, np.array([node], np.int64), tier, np.asarray(vector, np.float32).reshape(1, -1))

    def migrate(self, ids: np.ndarray, tier: int) -> int:
        """Move live memories' vectors to ``tier`` (those already there stay): each gets a new
        row there, as in rewrite_row; returns how many moved."""
        rec = self.hot()
        ids = ids[(rec["tier"][ids] != tier) & (rec["flags"][ids] & FORGOTTEN == 0)]
        if ids.shape[0]:
            codec.move(self, ids, tier, self.vectors_of(ids))
        return int(ids.shape[0])

    def changed(self, table: str) -> None:
        """Count an in-place change to a table's stored rows (a background growth's copy
        that may have missed it is dropped)."""
        self._changed[table] += 1

    def publish(self, table: str, count: int) -> None:
        self.segs[table].set("count", count)

    # change_seq is a sequence lock: even when stable, odd while a change
    # spanning several tables (a compaction) is being published.
    def bump(self) -> None:
        self.dir["change_seq"] += 2

    def begin_update(self) -> None:
        self.dir["change_seq"] += 1

    def end_update(self) -> None:
        self.dir["change_seq"] += 1

    def append_content(self, texts) -> np.ndarray:
        """Store strings in the heap; returns their refs (0 for None)."""
        if texts.count(None) == len(texts):
            return np.zeros(len(texts), np.uint64)
        encoded = [None if t is None else t.encode("utf-8") for t in texts]
        need = sum(4 + len(b) + (-(4 + len(b)) % 8) for b in encoded if b is not None)
        refs = np.zeros(len(encoded), np.uint64)
        if not need:
            return refs
        self.reserve("content", need + CONTENT_FIRST)
        heap = self.views["content"]["heap"]
        pos = max(self.count("content"), CONTENT_FIRST)
        for i, b in enumerate(encoded):
            if b is None:
                continue
            refs[i] = pos
            heap[pos:pos + 4].view(np.uint32)[0] = len(b)
            heap[pos + 4:pos + 4 + len(b)] = np.frombuffer(b, np.uint8)
            pos += 4 + len(b) + (-(4 + len(b)) % 8)
        self.publish("content", pos)
        return refs

    def append_memories(self, vectors: np.ndarray, tier: int, texts: list, confidence: np.ndarray,
                        now_ns: int) -> np.ndarray:
        """Store checked memories (rows, content, records) and publish them; returns their ids.
        The node count is raised last: it is what makes a memory visible to readers."""
        n = vectors.shape[0]
        self.reserve("nodes", n)
        self.reserve(TIER_TABLE[tier], n)       # before the content: a full disk changes nothing
        refs = self.append_content(texts)
        first = self.n_nodes
        ids = np.arange(first, first + n, dtype=np.int64)
        row0 = codec.put(self, tier, vectors, ids)
        rec = self.views["nodes"]["hot"][first:first + n]
        rec[:] = np.zeros(1, NODE_HOT_DTYPE)   # every field starts at 0, then the ones that do not
        rec["id"] = ids
        rec["confidence"] = confidence
        rec["tier"] = tier
        rec["flags"] = LIVE
        rec["strength"] = 1.0
        rec["created_ns"] = now_ns
        rec["last_access_ns"] = now_ns
        rec["content_ref"] = refs
        self.views["nodes"]["node_row"][first:first + n] = np.arange(row0, row0 + n, dtype=np.uint32)
        self.publish("nodes", first + n)
        self.dir["next_id"] = first + n
        self.dir["n_live"] += n
        self.bump()
        return ids

    def forget(self, ids: np.ndarray) -> None:
        """Hide distinct live memories from every reader: their rows leave the scan, their
        records are flagged (links that touch them are dropped at the next compaction)."""
        rec = self.hot()
        rows = self.views["nodes"]["node_row"][ids]
        tiers = rec["tier"][ids]
        for tier, table in TIER_TABLE.items():
            self.views[table]["row_live"][rows[tiers == tier]] = 0
            self.changed(table)
        rec["flags"][ids] = FORGOTTEN
        self.dir["n_live"] -= ids.shape[0]
        self.bump()

    def touch(self, ids: np.ndarray, now_ns: int) -> None:
        """Record an access (a recall returned them): last access time and count."""
        rec = self.hot()
        rec["last_access_ns"][ids] = now_ns
        rec["access_count"][ids] += 1

    @property
    def n_live(self) -> int:
        return int(self.dir["n_live"][0])

    @property
    def n_forgotten(self) -> int:
        """Memories ever forgotten (ids issued minus live: both live values of the directory)."""
        d = self.dir[0]
        return int(d["next_id"]) - int(d["n_live"])

    def replace_csr(self, offsets, targets, weights, fan, delta_applied: int) -> None:
        """A new CSR generation; ``fan``: float32[3, m], the weights discounted by the fan of
        the source, the target and both (the rule is the owner's: engram/cognition/fan.py)."""
        gen = self.generation("csr") + 1
        self._install("csr", self._new_csr(offsets, targets, weights, fan, delta_applied, gen))

    def reset_delta(self) -> None:
        seg = self.segs["delta"]
        self._install("delta", self._new_table("delta", seg.h("capacity"), seg.h("generation") + 1))

    def close(self, unlink: bool) -> None:
        while self._growths:
            self._growths.popitem()[1].drop()
        if unlink:
            for seg in list(self.segs.values()) + [self.dir_seg]:
                Segment.unlink(seg.name)
        self.segs.clear()
        self.views.clear()
