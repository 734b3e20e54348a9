"""Write to a live engine from another process: ``engram.connect(name or pid)``.

    with engram.connect(name) as conn:
        mem = conn.space("default")
        ids = mem.remember(vectors, content=texts)     # returns once durable in the owner
        st = mem.stream(lane="normal")
        seqs = st.put(vectors)                          # returns at once
        st.flush()                                      # everything put so far is durable
        res = mem.recall(query)                         # reads the shared memory directly

Writes travel through a shared-memory ring to the owner, which applies and logs
them like its own streams and acknowledges each once it is durable under its
policy (engram/ingest/listener.py). Reads (recall, get, spread) map the owner's
tables as ``engram.attach`` does. Errors are the owner's engram.errors classes.
"""
from __future__ import annotations

import bisect
import os
import socket
import threading

import numpy as np

from engram import errors, validate
from engram.attached import Attached
from engram.errors import ClosedError, EngramError, InvalidInputError, OverloadError
from engram.ingest import wire
from engram.ingest.pool import LANES
from engram.ingest.ring import DEFAULT_CAPACITY, HAS_CONFIDENCE, HAS_CONTENT, Kind, Ring, encode_texts
from engram.space.view import SpaceView
from engram.threads import named_thread

KEEP_RESULTS = 4096             # acknowledgements kept for a late wait (older ones return no ids)
RING_FULL_RETRY_S = 0.002


def _error(name: str, message: str) -> EngramError:
    """The engram.errors class the owner named (EngramError if it is not one)."""
    cls = getattr(errors, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, EngramError)):
        cls = EngramError
    try:
        return cls(message)
    except TypeError:
        return EngramError(message)


class Channel:
    """A socket and a ring to the owner, for one space and lane; ops are acknowledged in order."""

    def __init__(self, engine, space: str, lane: str, ring_bytes: int):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(wire.address(engine))
        except OSError as e:
            self._sock.close()
            raise ClosedError(f"engine {engine} does not accept connections ({e.strerror or e}): it was "
                              "created with channels=0, or it is closing") from None
        try:
            try:
                wire.send(self._sock, {"hello": 1, "space": space, "lane": lane, "ring_bytes": ring_bytes,
                                       "pid": os.getpid()})
            except OSError:         # refused at once (a limit): its reason is waiting to be read
                pass
            try:
                msg, _ = wire.recv(self._sock)
            except (OSError, wire.ChannelBroken) as e:
                raise ClosedError(f"engine {engine} closed the channel before answering: {e}") from None
            if "error" in msg or "ok" not in msg:
                raise _error(msg.get("error"), msg.get("message", f"the engine refused the channel: {msg}"))
            self.ring = Ring.attach(msg["ring"])
        except BaseException:
            self._sock.close()
            raise
        self.space, self.lane, self.dim = msg["space"], msg["lane"], int(msg["dim"])
        self._put_lock = threading.Lock()
        self._cond = threading.Condition()
        self._next_op = 0
        self._results: dict = {}            # op -> ids, an int, or an exception
        self._acked = -1                     # every op up to here is acknowledged
        self._down: BaseException | None = None
        self._reader = named_thread(self._read, "engram-connect")
        self._reader.start()

    # ---- writing ---------------------------------------------------------------------
    def send(self, kind: Kind, count: int, parts: list, tier: int = 0, flags: int = 0, text_bytes: int = 0) -> int:
        """Append one op to the ring and ring the owner; its op number. OverloadError (nothing
        sent) when the ring is full: the owner's lane is full and holds the ring back."""
        with self._put_lock:
            self._check_up()
            if self.ring.closed:
                raise ClosedError("the engine is closing: it takes no more writes")
            op = self._next_op
            if not self.ring.try_append(kind, op, count, parts, tier, flags, text_bytes):
                raise OverloadError(f"the channel's ring ({self.ring.capacity} bytes) is full: the owner's "
                                    f"{self.lane} lane is behind; nothing was sent", retry_after=RING_FULL_RETRY_S)
            self._next_op += 1
            try:
                wire.send(self._sock, {"bell": 1})
            except OSError as e:
                self._fail(ClosedError(f"the engine went away ({e.strerror or e})"))
            return op

    def wait(self, op: int, timeout: float | None = None):
        """The owner's answer to ``op`` once it is durable: ids (remember) or a count."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._acked >= op or self._down is not None, timeout):
                raise TimeoutError(f"op {op} was not acknowledged within {timeout} s")
            if self._acked < op:
                raise self._down
            res = self._results.get(op, np.zeros(0, np.int64))
        if isinstance(res, BaseException):
            raise res
        return res

    def _check_up(self) -> None:
        if self._down is not None:
            raise self._down

    # ---- the reader thread -------------------------------------------------------------
    def _read(self) -> None:
        try:
            while True:
                msg, body = wire.recv(self._sock)
                if "op" in msg and msg["op"] is not None:
                    op = int(msg["op"])
                    if "error" in msg:
                        res = _error(msg["error"], msg.get("message", ""))
                    elif "n" in msg:
                        res = np.frombuffer(body, "<i8").astype(np.int64)
                    else:
                        res = int(msg["value"])
                    with self._cond:
                        self._results[op] = res
                        self._results.pop(op - KEEP_RESULTS, None)
                        self._acked = op
                        self._cond.notify_all()
                elif "closing" in msg:        # tell the owner where our writes end, then no more
                    with self._put_lock:
                        self.ring.header["closed"] = 1
                        wire.send(self._sock, {"drained": self.ring.head})
                elif "fatal" in msg:
                    self._fail(ClosedError(f"the engine ended this channel: {msg['fatal']}"))
                elif "closed" in msg:
                    self._fail(ClosedError("the engine closed this channel (it is closing)"))
                    return
        except (OSError, wire.ChannelBroken) as e:
            self._fail(ClosedError(f"the engine went away ({e}): writes not acknowledged are not known to "
                                   "be durable"))

    def _fail(self, e: BaseException) -> None:
        with self._cond:
            if self._down is None:
                self._down = e
            self._cond.notify_all()

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._reader.join()
        if self.ring is not None:
            self.ring.close(unlink=False)
            self.ring = None


class ConnectedStream:
    """``Space.stream``'s put / wait / flush, from another process."""

    def __init__(self, channel: Channel, check):
        self.channel, self.lane, self._check = channel, channel.lane, check
        self._lock = threading.Lock()
        self._next = 0
        self._firsts: list = []          # first sequence number of each put
        self._ops: list = []             # the ops of each put
        self._forgot_op = -1              # the last op of the puts no longer kept

    def put(self, vectors, content=None, confidence=None, tier: str = "hot") -> np.ndarray:
        """Queue observations; their sequence numbers in this stream. OverloadError (nothing
        queued; ``retry_after``) when the owner cannot take them now."""
        v, code, texts, conf = self._check(vectors, content, confidence, tier)
        n = v.shape[0]
        per = _rows_per_record(v.shape[1], texts, self.channel.ring.max_record)
        with self._lock:
            ops = []
            for lo in range(0, n, per):
                hi = min(n, lo + per)
                try:
                    ops.append(self._send(v[lo:hi], code, texts[lo:hi], conf[lo:hi]))
                except OverloadError:
                    if ops:    # part of this put is in: wait for room for the rest, keep it whole
                        ops.append(self._send_when_room(v[lo:hi], code, texts[lo:hi], conf[lo:hi]))
                    else:
                        raise
            first = self._next
            self._next += n
            self._firsts.append(first)
            self._ops.append(ops)
            if len(self._ops) > KEEP_RESULTS:
                self._forgot_op = self._ops[0][-1]
                del self._firsts[:1], self._ops[:1]
        return np.arange(first, first + n, dtype=np.int64)

    def _send(self, v, code, texts, conf) -> int:
        parts, flags, text_bytes = [v.astype("<f4", copy=False)], 0, 0
        if np.any(conf != 1.0):
            parts.append(conf.astype("<f4", copy=False))
            flags |= HAS_CONFIDENCE
        if any(t is not None for t in texts):
            lengths, blob = encode_texts(texts)
            parts += [lengths, blob]
            flags |= HAS_CONTENT
            text_bytes = len(blob)
        return self.channel.send(Kind.REMEMBER, v.shape[0], parts, code, flags, text_bytes)

    def _send_when_room(self, *args) -> int:
        while True:
            try:
                return self._send(*args)
            except OverloadError as e:
                threading.Event().wait(e.retry_after)

    def wait(self, seq: int, timeout: float | None = None) -> np.ndarray:
        """Wait until the put holding ``seq`` is durable; its memory ids (empty if it was
        acknowledged long ago). Raises what applying it raised, in the owner."""
        seq = int(seq)
        if not 0 <= seq < self._next:
            raise InvalidInputError(f"sequence number {seq} was not put on this stream (0..{self._next - 1})")
        with self._lock:
            i = bisect.bisect_right(self._firsts, seq) - 1
            ops = self._ops[i] if i >= 0 else None
            forgot = self._forgot_op
        if ops is None:                 # acknowledged long ago, or durable with the last one forgotten
            self.channel.wait(forgot, timeout)
            return np.zeros(0, np.int64)
        out = [self.channel.wait(op, timeout) for op in ops]
        return out[0] if len(out) == 1 else np.concatenate(out)

    def flush(self, timeout: float | None = None) -> None:
        with self._lock:
            last = self._next - 1
        if last >= 0:
            self.wait(last, timeout)

    def close(self) -> None:
        self.channel.close()

    def __repr__(self):
        return f"<engram connected stream {self.channel.space!r} lane={self.lane} put={self._next}>"


def _rows_per_record(dim: int, texts: list, max_record: int) -> int:
    """How many rows fit in one ring record (content counted at its longest, UTF-8 worst case)."""
    longest = max((len(t) * 4 for t in texts if t is not None), default=0)
    per_row = dim * 4 + 4 + 4 + longest
    rows = (max_record - 64) // per_row
    if rows < 1:
        raise InvalidInputError(f"one observation ({per_row} bytes) does not fit the channel's ring records "
                                f"({max_record} bytes): connect with a larger ring_mb")
    return rows


class ConnectedSpace(SpaceView):
    """A space of a live engine, from another process: reads from the shared memory, writes
    through the owner (remember, link, forget, stream)."""

    def __init__(self, conn: "Connected", name: str, view: SpaceView):
        super().__init__(view._reader, view._ctx)
        self._conn = conn
        self._default: ConnectedStream | None = None
        self._lock = threading.Lock()

    def _checked(self, vectors, content, confidence, tier):
        """remember's input, checked here first so a mistake is raised at the call."""
        return validate.observations(vectors, self.dim, content, confidence, tier)

    def stream(self, lane: str = "normal") -> ConnectedStream:
        """A stream of this process into the space, through a ring of its own."""
        return self._conn._stream(self.name, lane, self._checked)

    def _writer(self) -> ConnectedStream:
        with self._lock:
            if self._default is None:
                self._default = self.stream("normal")
            return self._default

    def remember(self, vectors, content=None, confidence=None, tier: str = "hot") -> np.ndarray:
        """Store memories through the owner; their ids once durable there."""
        st = self._writer()
        while True:
            try:
                seqs = st.put(vectors, content, confidence, tier)
                break
            except OverloadError as e:
                threading.Event().wait(e.retry_after)
        return st.wait(seqs[-1]) if seqs.shape[0] else np.zeros(0, np.int64)

    def link(self, src, dst, weights=1.0) -> int:
        """Associate src -> dst with weight in (0, 1] (scalars broadcast); links added."""
        s, d = validate.ids(src, "src"), validate.ids(dst, "dst")
        if s.shape[0] != d.shape[0] and 1 not in (s.shape[0], d.shape[0]):
            raise InvalidInputError(f"src has {s.shape[0]} ids and dst {d.shape[0]}: pass equal lengths or one id")
        n = max(s.shape[0], d.shape[0])
        s, d = np.broadcast_to(s, n), np.broadcast_to(d, n)
        w = validate.per_item(weights, n, "weights", 1.0, 0.0, 1.0, lo_open=True)
        return self._call(Kind.LINK, n, [s.astype("<i8"), d.astype("<i8"), w.astype("<f4")])

    def forget(self, ids) -> int:
        """Forget memories (all or none) through the owner; how many."""
        a = validate.ids(ids)
        return self._call(Kind.FORGET, a.shape[0], [a.astype("<i8")])

    def _call(self, kind: Kind, count: int, parts: list) -> int:
        ch = self._writer().channel
        while True:
            try:
                op = ch.send(kind, count, parts)
                break
            except OverloadError as e:
                threading.Event().wait(e.retry_after)
        return ch.wait(op)

    def __repr__(self):
        return f"<engram connected space {self.name!r} dim={self.dim}>"


class Connected(Attached):
    """A live engine from another process: ``attach``'s reads, and writes through the owner."""

    def __init__(self, engine, ring_mb: float = DEFAULT_CAPACITY / (1 << 20)):
        super().__init__(engine)
        self.ring_bytes = int(validate.positive_float(ring_mb, "ring_mb") * (1 << 20))
        self._streams: list = []
        self._spaces: dict = {}
        self._lock = threading.Lock()
        self._closed = False

    def _stream(self, space: str, lane: str, check) -> ConnectedStream:
        if lane not in LANES:
            raise InvalidInputError(f"lane must be one of {', '.join(LANES)}, got {lane!r}")
        with self._lock:
            if self._closed:
                raise ClosedError("this connection is closed")
            st = ConnectedStream(Channel(self._name, space, lane, self.ring_bytes), check)
            self._streams.append(st)
            return st

    def space(self, name: str = "default") -> ConnectedSpace:
        """The space ``name`` (created in the owner on first use, as Engine.space does)."""
        name = validate.space_name(name)
        with self._lock:
            if name in self._spaces:
                return self._spaces[name]
        ch = Channel(self._name, name, "normal", self.ring_bytes)     # creates the space in the owner
        sp = ConnectedSpace(self, name, super().space(name))
        sp._default = ConnectedStream(ch, sp._checked)
        with self._lock:
            self._streams.append(sp._default)
            return self._spaces.setdefault(name, sp)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            streams, self._streams = self._streams, []
            self._spaces.clear()
        for st in streams:
            st.close()
        super().close()


def connect(engine, ring_mb: float = DEFAULT_CAPACITY / (1 << 20)) -> Connected:
    """Open a running engine of this user (by name or owner pid) to read and write from this
    process: writes go through the owner and are acknowledged once durable there."""
    return Connected(engine, ring_mb)
