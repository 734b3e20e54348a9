"""Messages on a channel's socket (docs/durability/ingest.md, "Another process").

The data goes through the shared-memory ring; the socket carries the hello,
the doorbells and the owner's acknowledgements. A message is two u32 lengths,
a JSON object, and an optional binary body (an acknowledgement's memory ids).
Both lengths are checked against limits before anything is read into memory.

The socket is a Unix socket in the abstract namespace, named after the engine,
so nothing is left on disk when the owner dies; the owner accepts only peers
of its own uid (SO_PEERCRED), the same rule as the shared-memory segments.
"""
from __future__ import annotations

import json
import socket
import struct

from engram.errors import EngramError

FRAME = struct.Struct("<II")
MAX_HEADER = 64 << 10
MAX_BODY = 64 << 20


class ChannelBroken(EngramError, ConnectionError):
    """The other end went away or sent what is not a message."""


def address(engine) -> str:
    """The abstract socket name of an engine's ingest listener."""
    return f"\0{engine}.ingest"


def send(sock: socket.socket, header: dict, body: bytes = b"") -> None:
    raw = json.dumps(header, separators=(",", ":")).encode()
    sock.sendall(FRAME.pack(len(raw), len(body)) + raw + bytes(body))


def _exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise ChannelBroken("the other end closed the channel")
        got += k
    return bytes(buf)


def recv(sock: socket.socket) -> tuple:
    """(header dict, body bytes) of the next message."""
    hlen, blen = FRAME.unpack(_exactly(sock, FRAME.size))
    if hlen > MAX_HEADER or blen > MAX_BODY:
        raise ChannelBroken(f"a message of {hlen} + {blen} bytes is over the limits "
                            f"({MAX_HEADER} + {MAX_BODY})")
    try:
        header = json.loads(_exactly(sock, hlen))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ChannelBroken(f"a message header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise ChannelBroken("a message header is not a JSON object")
    return header, _exactly(sock, blen) if blen else b""


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]
