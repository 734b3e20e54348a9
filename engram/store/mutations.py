"""Every change to one space, in one place: applied to the tables, then logged.

The owner's Space checks its input and works out what a call changes (which
memories interference weakens, what a reconsolidation writes), then hands the
result here. Each method applies it and, with a log attached, queues one
record (the payloads are in docs/durability/wal-format.md) and returns its LSN,
which the caller waits on outside the space's lock. A change guarded by an
idempotency key carries the key in its record (engram/store/keys.py). Recovery decodes the same
records with ``replay`` and applies them through the same methods, with no log
attached, so a replayed change is exactly the change that was made.
"""
from __future__ import annotations

import json
import struct
import time

import numpy as np

from engram.errors import WALError
from engram.store.keys import BLOCK, KeyStore, Result
from engram.store.rows import LOG_DTYPE
from engram.store.tables import TIER_TABLE
from engram.store.wal.format import KEYED, RecordType

REMEMBER = struct.Struct("<QqIBB2x")        # first id, created ns, n, tier, has content
COUNT = struct.Struct("<I4x")
MIGRATE = struct.Struct("<IB3x")            # n, tier
RECONSOLIDATE = struct.Struct("<QqB3xf")    # id, replaced ns, has (1 vector, 2 content, 4 confidence), confidence
NO_TEXT = 0xFFFFFFFF
#: recalls' access updates wait up to this long for company and go in one STATE record (a
#: record each cost a recall ~25 us of its ~0.5 ms at 10K: docs/operations/http.md); the
#: persistence thread's tick, as often, logs those left waiting when recalls stop
STATE_COALESCE_S = 0.05
STATE_COALESCE_IDS = 4096          # or this many ids, whichever comes first
#: what a recall or interference changes in a node record, as STATE records carry it
STATE_DTYPE = np.dtype([("activation", "<f4"), ("confidence", "<f4"), ("primed_s", "<u4"),
                        ("strength", "<f4"), ("access_count", "<u4"), ("last_access_ns", "<u8")])


def _texts(texts: list) -> list:
    enc = [None if t is None else t.encode("utf-8") for t in texts]
    lengths = np.array([NO_TEXT if b is None else len(b) for b in enc], np.uint32)
    return [lengths.tobytes(), b"".join(b for b in enc if b is not None)]


class _Reader:
    """Walks a payload; every read is checked against what is left (a bad record is
    refused before anything is allocated or applied)."""

    def __init__(self, body, lsn: int, what: str):
        self.body, self.pos, self.lsn, self.what = memoryview(body), 0, lsn, what

    def fail(self, why: str):
        raise WALError(f"log record LSN {self.lsn} ({self.what}) does not decode: {why}", "", -1)

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.body.nbytes:
            self.fail(f"it needs {n} more bytes at {self.pos}, it has {self.body.nbytes - self.pos}")
        out = self.body[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct):
        return st.unpack(self.take(st.size))

    def array(self, dtype, n: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        return np.frombuffer(self.take(dtype.itemsize * n), dtype).copy()

    def texts(self, n: int) -> list:
        lengths = self.array(np.uint32, n)
        heap = bytes(self.take(int(lengths[lengths != NO_TEXT].astype(np.int64).sum())))
        out, at = [], 0
        for m in lengths.tolist():
            if m == NO_TEXT:
                out.append(None)
                continue
            try:
                out.append(heap[at:at + m].decode("utf-8"))
            except UnicodeDecodeError as e:
                self.fail(f"content is not UTF-8 ({e})")
            at += m
        return out

    def end(self) -> None:
        if self.pos != self.body.nbytes:
            self.fail(f"{self.body.nbytes - self.pos} bytes are left over")


class Mutations:
    """One space's changes. ``index``: the space's number in log records; ``log``: an open
    engram.store.wal.Log, or None (an ephemeral engine, or during replay)."""

    def __init__(self, store, graph, labile, index: int, log=None, on_settings=None):
        self.store, self.graph, self.labile = store, graph, labile
        self.index, self.log = index, log
        self.seq = 0                       # this space's last sequence number
        self.on_settings = on_settings     # replay of SETTINGS: the owner applies them
        self.keys = KeyStore()             # idempotency keys of this space's changes
        self._waiting: list = []           # access updates not logged yet (id arrays; state(coalesce=True))
        self._waiting_ids = 0
        self._waiting_since = 0.0

    def _log(self, rtype: RecordType, parts: list, lazy: bool = False, keyed=None) -> int:
        flags = 0
        if keyed is not None:
            parts, flags = self._keyed(*keyed, parts)
        if self.log is None:
            return 0
        self.seq += 1
        return self.log.append(self.index, self.seq, rtype, parts, lazy, flags)

    def _keyed(self, key, result: Result, parts: list) -> tuple:
        """(parts, flags) of a record that also carries ``key``: kept with its result from
        now on, and durable exactly when the change is."""
        block, at = self.keys.block(key)
        self.keys.put(key.key, key.request, at, result)
        return [block, *parts], KEYED

    def admit(self) -> None:
        """Raise before anything changes if the change could not be logged."""
        if self.log is not None:
            self.log.admit()

    # ---- changes ---------------------------------------------------------------------------
    def remember(self, vectors: np.ndarray, tier: int, texts: list, confidence: np.ndarray, now_ns: int,
                 key=None):
        """(ids, lsn) of checked memories stored (``key``: an engram.store.keys.Key that guards it)."""
        stored = vectors.astype(LOG_DTYPE[tier], copy=False)
        ids = self.store.append_memories(stored, tier, texts, confidence, now_ns)
        n, has = ids.shape[0], texts.count(None) < len(texts)
        keyed = None if key is None else \
            (key, Result(RecordType.REMEMBER, int(ids[0]), n, now_ns, float(confidence[0])))
        lsn = self._log(RecordType.REMEMBER, [REMEMBER.pack(int(ids[0]), now_ns, n, tier, has),
                                              confidence.astype(np.float32, copy=False).tobytes(),
                                              np.ascontiguousarray(stored), *(_texts(texts) if has else [])],
                        keyed=keyed)
        return ids, lsn

    def link(self, src: np.ndarray, dst: np.ndarray, w: np.ndarray, key=None) -> int:
        s, d, w = src.astype(np.uint32), dst.astype(np.uint32), w.astype(np.float32)
        self.graph.append(s, d, w)
        self.store.bump()
        return self._log(RecordType.LINK, [COUNT.pack(s.shape[0]), s.tobytes(), d.tobytes(), w.tobytes()],
                         keyed=None if key is None else (key, Result(RecordType.LINK, count=s.shape[0])))

    def reweight(self, src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Set the weight of links the CSR has, in place (priming's Hebbian step); logged as
        links, so replay gets the same weights wherever the links are then."""
        found = self.graph.reweight(src, dst, w)
        if found.any():
            s, d, x = src[found].astype(np.uint32), dst[found].astype(np.uint32), w[found].astype(np.float32)
            self._log(RecordType.LINK, [COUNT.pack(s.shape[0]), s.tobytes(), d.tobytes(), x.tobytes()])
        return found

    def forget(self, ids: np.ndarray, key=None) -> int:
        self.store.forget(ids)
        a = ids.astype(np.uint32)
        return self._log(RecordType.FORGET, [COUNT.pack(a.shape[0]), a.tobytes()],
                         keyed=None if key is None else (key, Result(RecordType.FORGET, count=a.shape[0])))

    def migrate(self, ids: np.ndarray, tier: int) -> tuple:
        """(memories moved, lsn): live memories' vectors moved to ``tier`` (SpaceStore.migrate)."""
        a = ids.astype(np.uint32)
        moved = self.store.migrate(ids.astype(np.int64), tier)
        return moved, (self._log(RecordType.MIGRATE, [MIGRATE.pack(a.shape[0], tier), a.tobytes()]) if moved else 0)

    def state(self, ids: np.ndarray, coalesce: bool = False) -> int:
        """Log the cognitive fields of ``ids`` as they are now (they were just changed), and
        of any access updates waiting. ``coalesce`` (a recall's access update): it may wait
        up to STATE_COALESCE_S and go with later ones in one record (0 returned then). The
        fields are read when the record is made, under the space's lock as every change
        is, so a record carries the values its place in the log has."""
        if self.log is None or not ids.shape[0]:
            return 0
        if not self._waiting:
            self._waiting_since = time.monotonic()
        self._waiting.append(ids)
        self._waiting_ids += ids.shape[0]
        if coalesce and self._waiting_ids < STATE_COALESCE_IDS \
                and time.monotonic() - self._waiting_since < STATE_COALESCE_S:
            return 0
        return self._log_waiting()

    @property
    def state_waiting(self) -> bool:
        """Whether access updates wait to be logged (flush_state)."""
        return bool(self._waiting)

    def flush_state(self, older_than: float = 0.0) -> None:
        """Log the access updates waiting, if the first has waited ``older_than`` seconds;
        with the space's lock held."""
        if self._waiting and time.monotonic() - self._waiting_since >= older_than and self.store.segs \
                and self.log is not None and self.log.failed is None:
            self._log_waiting()

    def _log_waiting(self) -> int:
        """One STATE record of every id waiting, with its fields as they are now."""
        a = np.unique(np.concatenate(self._waiting)).astype(np.uint32)
        self._waiting.clear()
        self._waiting_ids = 0
        rec = self.store.hot()[a]
        fields = np.empty(a.shape[0], STATE_DTYPE)
        for name in STATE_DTYPE.names:
            fields[name] = rec[name]
        # lazy: never waited for, so a stream of recalls shares a write and a sync every few ms
        return self._log(RecordType.STATE, [COUNT.pack(a.shape[0]), a.tobytes(), fields.tobytes()], lazy=True)

    def reconsolidate(self, u) -> int:
        """Apply a planned engram.cognition.reconsolidation.Update."""
        self.labile.apply(self.store, u.memory_id, u.vector, u.content, u.confidence, u.replaced_ns)
        self.store.bump()
        has = (u.vector is not None) | (u.content is not None) << 1 | (u.confidence is not None) << 2
        parts = [RECONSOLIDATE.pack(u.memory_id, u.replaced_ns, has, u.confidence or 0.0)]
        if u.vector is not None:
            parts.append(np.ascontiguousarray(u.vector))
        if u.content is not None:
            parts += _texts([u.content])
        return self._log(RecordType.RECONSOLIDATE, parts)

    def settings(self, settings: dict) -> int:
        return self._log(RecordType.SETTINGS, [json.dumps(settings, sort_keys=True).encode()])

    # ---- replay ----------------------------------------------------------------------------
    def replay(self, lsn: int, seq: int, rtype: int, flags: int, body) -> None:
        """Apply one logged change (this space's; CONTINUED parts already joined)."""
        r = _Reader(body, lsn, RecordType(rtype).name)
        st = self.store
        keyed = r.unpack(BLOCK) if flags & KEYED else None
        if keyed is not None and rtype not in (RecordType.REMEMBER, RecordType.LINK, RecordType.FORGET):
            r.fail("it carries an idempotency key, which only remember, link and forget records do")
        if rtype == RecordType.REMEMBER:
            first, created, n, tier, has = r.unpack(REMEMBER)
            if tier not in TIER_TABLE or not 0 < n <= 1 << 26:
                r.fail(f"tier {tier} / count {n} is not possible")
            conf = r.array(np.float32, n)
            vecs = r.array(LOG_DTYPE[tier], n * st.dim).reshape(n, st.dim)
            texts = r.texts(n) if has else [None] * n
            r.end()
            if first != st.n_nodes:
                r.fail(f"its memories were ids {first}.., but replay is at id {st.n_nodes}: the log does not "
                       "follow this snapshot")
            st.append_memories(vecs, tier, texts, conf, created)
            result = Result(rtype, first, n, created, float(conf[0]))
        elif rtype in (RecordType.LINK, RecordType.FORGET, RecordType.STATE):
            (n,) = r.unpack(COUNT)
            ids = r.array(np.uint32, n)
            if n and int(ids.max()) >= st.n_nodes:
                r.fail(f"it names memory {int(ids.max())}, past the {st.n_nodes} there are")
            if rtype == RecordType.LINK:
                dst, w = r.array(np.uint32, n), r.array(np.float32, n)
                r.end()
                if n and int(dst.max()) >= st.n_nodes:
                    r.fail(f"it names memory {int(dst.max())}, past the {st.n_nodes} there are")
                found = self.graph.reweight(ids, dst, w)    # where the CSR has them, else the delta log
                if not found.all():
                    self.graph.append(ids[~found], dst[~found], w[~found])
                st.bump()
                result = Result(rtype, count=n)
            elif rtype == RecordType.FORGET:
                r.end()
                st.forget(ids.astype(np.int64))
                result = Result(rtype, count=n)
            else:
                fields = r.array(STATE_DTYPE, n)
                r.end()
                hot = st.hot()
                for name in STATE_DTYPE.names:
                    hot[name][ids] = fields[name]
        elif rtype == RecordType.RECONSOLIDATE:
            i, replaced, has, conf = r.unpack(RECONSOLIDATE)
            if i >= st.n_nodes:
                r.fail(f"it names memory {i}, past the {st.n_nodes} there are")
            tier = int(st.hot()["tier"][i])
            vec = r.array(LOG_DTYPE[tier], st.dim) if has & 1 else None
            text = r.texts(1)[0] if has & 2 else None
            r.end()
            self.labile.apply(st, i, vec, text, conf if has & 4 else None, replaced)
            st.bump()
        elif rtype == RecordType.MIGRATE:
            n, tier = r.unpack(MIGRATE)
            ids = r.array(np.uint32, n)
            r.end()
            if tier not in TIER_TABLE or (n and int(ids.max()) >= st.n_nodes):
                r.fail(f"tier {tier} or memory {int(ids.max()) if n else 0} is not possible here")
            st.migrate(ids.astype(np.int64), tier)
        elif rtype == RecordType.SETTINGS:
            try:
                settings = json.loads(bytes(r.take(r.body.nbytes)).decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                r.fail(f"its settings are not JSON ({e})")
            if not isinstance(settings, dict):
                r.fail("its settings are not a JSON object")
            if self.on_settings is not None:
                self.on_settings(settings)
        else:
            r.fail("it is not a change to a space")
        if keyed is not None:
            self.keys.put(keyed[0], keyed[1], keyed[2], result)
        self.seq = seq
