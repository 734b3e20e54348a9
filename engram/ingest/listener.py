"""The owner's end of ``engram.connect``: a listener that gives each connected
stream a shared-memory ring and feeds what arrives in it to the ingest lanes
(docs/durability/ingest.md, "Another process").

A channel is one socket and one ring, bound to one space and one lane. Its
feeder thread takes records from the ring in order after each doorbell and
puts them on a Stream (remember) or applies them (link, forget); its acker
thread acknowledges them in the same order once they are durable under the
engine's policy, with the memory ids or the error. A full lane holds the
record in the ring, so the ring fills and the producer's put is refused
(OverloadError): nothing the ring accepted is dropped. When the producer dies,
what it had written into the ring is still applied; when the owner closes,
each channel is drained up to the last record its producer wrote first.
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import secrets
import socket
import threading
import time

from engram import validate
from engram.errors import EngramError, InvalidInputError, OverloadError, SegmentError, shown
from engram.ingest import wire
from engram.ingest.pool import LANES
from engram.ingest.ring import DEFAULT_CAPACITY, Kind, Ring, RingDamaged
from engram.threads import named_thread

log = logging.getLogger("engram")
DEFAULT_MAX_CHANNELS = 32
HELLO_TIMEOUT_S = 5.0
CLOSE_GRACE_S = 2.0
TIERS = ("hot", "warm")          # a record's tier code, as the TIER_* constants number them


class Listener:
    """Accepts channels for the engine ``name``; ``open_space(name)`` gives its Space
    (created on first use, as Engine.space does)."""

    def __init__(self, name, dim: int, open_space, max_channels: int = DEFAULT_MAX_CHANNELS):
        self.name, self.dim, self.max_channels = name, dim, max_channels
        self.open_space = open_space
        self._lock = threading.Lock()
        self._channels: set = set()
        self._numbers = itertools.count()
        self._closing = False
        self.refused = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(wire.address(name))
        self._sock.listen(64)
        self._thread = named_thread(self._accept, "engram-listen")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return                      # close() shut the socket down
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                why = None
                if wire.peer_uid(conn) != os.getuid():
                    why = "the engine accepts connections from its own user only"
                elif len(self._channels) >= self.max_channels:
                    why = f"the engine has {self.max_channels} channels open, its limit: close one and retry"
                if why is None:
                    ch = Channel(self, conn, next(self._numbers))
                    self._channels.add(ch)
            if why is not None:
                self.refused += 1
                _refuse(conn, "ClosedError" if "limit" not in why else "OverloadError", why)
            else:
                ch.start()

    def forget(self, ch: "Channel") -> None:
        with self._lock:
            self._channels.discard(ch)

    def stats(self) -> dict:
        with self._lock:
            chans = list(self._channels)
        return {"channels": len(chans), "max_channels": self.max_channels, "refused": self.refused,
                "ops": sum(c.next_op for c in chans)}

    def close(self) -> None:
        """Stop accepting, drain every channel up to what its producer wrote, acknowledge it
        all, close the channels. Before the ingest workers stop: they apply what this feeds."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            chans = list(self._channels)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join()
        for ch in chans:
            ch.begin_close()
        deadline = time.monotonic() + CLOSE_GRACE_S
        for ch in chans:
            ch.feeder.join(max(deadline - time.monotonic(), 0))
            if ch.feeder.is_alive():        # its producer did not answer: take what it wrote
                ch.cut()
        for ch in chans:
            ch.feeder.join()
            if ch.acker.ident is not None:
                ch.acker.join()


def _refuse(conn: socket.socket, error: str, message: str) -> None:
    try:
        wire.send(conn, {"error": error, "message": message})
    except OSError:
        pass
    conn.close()


class Channel:
    """One connected stream: a socket, a ring, a Stream, a feeder and an acker thread."""

    def __init__(self, listener: Listener, conn: socket.socket, number: int):
        self.listener, self.conn, self.number = listener, conn, number
        self.ring: Ring | None = None
        self.space = self.stream = None
        self.next_op = 0
        self.pid = 0
        self._acks: queue.Queue = queue.Queue()
        self._send_lock = threading.Lock()
        self._broken = False              # the producer is gone: acknowledgements go nowhere
        self.feeder = named_thread(self._feed, f"engram-channel-{number}")
        self.acker = named_thread(self._ack, f"engram-channel-{number}-ack")

    def start(self) -> None:
        self.feeder.start()

    # ---- the feeder ------------------------------------------------------------------
    def _hello(self) -> None:
        self.conn.settimeout(HELLO_TIMEOUT_S)
        msg, _ = wire.recv(self.conn)
        self.conn.settimeout(None)
        if msg.get("hello") != 1:
            raise InvalidInputError(f"the first message must be a hello of version 1, got {shown(msg)}")
        lane = msg.get("lane", "normal")
        if lane not in LANES:
            raise InvalidInputError(f"lane must be one of {', '.join(LANES)}, got {shown(lane)}")
        ring_bytes = validate.positive_int(msg.get("ring_bytes", DEFAULT_CAPACITY), "ring_bytes", 1)
        self.pid = validate.positive_int(msg.get("pid", 0), "pid")
        self.space = self.listener.open_space(msg.get("space", "default"))
        self.stream = self.space.stream(lane)
        owner = self.listener
        for attempt in range(3):        # a random part: a name planted ahead by someone else is skipped
            try:
                self.ring = Ring.create(owner.name.engine_object(f"ring{self.number}x{secrets.token_hex(6)}"),
                                        ring_bytes, owner.dim)
                break
            except SegmentError:
                if attempt == 2:
                    raise
        self.ring.header["producer_pid"] = self.pid & 0xFFFFFFFF
        self._send({"ok": 1, "ring": self.ring.seg.name, "dim": owner.dim, "capacity": self.ring.capacity,
                    "max_record": self.ring.max_record, "space": self.space.name, "lane": lane})

    def _feed(self) -> None:
        try:
            try:
                self._hello()
            except (EngramError, OSError, ValueError) as e:
                self._send_error(None, e)
                return
            self.acker.start()
            while True:
                try:
                    msg, _ = wire.recv(self.conn)
                except (OSError, wire.ChannelBroken):
                    self._broken = True
                    self._drain()               # what the producer wrote before it went is applied
                    return
                if "drained" in msg:            # the answer to begin_close: nothing more comes
                    self._drain(int(msg["drained"]))
                    return
                self._drain()
        except RingDamaged as e:
            log.error("engram: channel %d (pid %s) ends: %s", self.number, self.pid, e)
            self._send({"fatal": str(e)})
        except Exception as e:              # anything else ends the channel, never the engine
            log.exception("engram: channel %d failed", self.number)
            self._send({"fatal": f"{type(e).__name__}: {e}"})
        finally:
            self._acks.put(None)
            if not self.acker.is_alive() and self.acker.ident is None:
                self._finish()

    def _drain(self, head: int | None = None) -> None:
        """Apply the ring's records up to ``head`` (default: what the producer has written)."""
        ring = self.ring
        while (rec := ring.take(self.next_op, head)) is not None:
            raw, used = rec
            self._apply(ring.decode(raw))
            ring.consumed(used)
            self.next_op += 1

    def _apply(self, op) -> None:
        try:
            if op.kind is Kind.REMEMBER:
                if op.tier >= len(TIERS):
                    raise InvalidInputError(f"record {op.op} names tier {op.tier}: 0 (hot) or 1 (warm)")
                while True:
                    try:
                        batch = self.stream.submit(op.vectors, op.texts, op.confidence, TIERS[op.tier])
                        break
                    except OverloadError as e:   # held in the ring: the producer sees it fill
                        time.sleep(min(max(e.retry_after, 0.001), 0.05))
                self._acks.put((op.op, "batch", batch))
            elif op.kind is Kind.LINK:
                self._acks.put((op.op, "value", self.space.link(op.src, op.dst, op.weights)))
            else:
                self._acks.put((op.op, "value", self.space.forget(op.ids)))
        except EngramError as e:
            self._acks.put((op.op, "error", e))

    # ---- the acker --------------------------------------------------------------------
    def _ack(self) -> None:
        try:
            while (item := self._acks.get()) is not None:
                op, what, value = item
                try:
                    if what == "batch":
                        ids = self.stream.settle(value)
                        self._send({"op": op, "n": int(ids.shape[0])}, ids.astype("<i8").tobytes())
                    elif what == "value":
                        self._send({"op": op, "value": int(value)})
                    else:
                        raise value
                except EngramError as e:
                    self._send_error(op, e)
        finally:
            self._finish()

    def _finish(self) -> None:
        self._send({"closed": 1})
        try:
            self.conn.close()
        except OSError:
            pass
        with self._send_lock:           # begin_close may be marking the ring right now
            ring, self.ring = self.ring, None
        if ring is not None:
            ring.close(unlink=True)
        self.listener.forget(self)

    # ---- closing, sending ---------------------------------------------------------------
    def begin_close(self) -> None:
        """The owner is closing: refuse new puts and ask the producer where it stopped."""
        with self._send_lock:
            if self.ring is not None:
                self.ring.header["closed"] = 1
        self._send({"closing": 1})

    def cut(self) -> None:
        """The producer did not answer begin_close in time: end the feeder's wait (it then
        applies what is in the ring)."""
        try:
            self.conn.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _send(self, header: dict, body: bytes = b"") -> None:
        if self._broken:
            return
        with self._send_lock:
            try:
                wire.send(self.conn, header, body)
            except OSError:
                self._broken = True

    def _send_error(self, op, e: BaseException) -> None:
        self._send({"op": op, "error": type(e).__name__, "message": str(e)})
