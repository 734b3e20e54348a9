"""uvicorn's HTTP protocol with read deadlines: a request's headers must arrive within
``header_timeout`` seconds of its first byte (or of the connection), and its body within
``body_timeout`` seconds of its headers, or the connection is closed. uvicorn alone has
only the keep-alive timeout, so a client that opens a connection and sends nothing, or
one byte a minute, holds its slot forever (slowloris).

It also sends a response's head and body in one write: uvicorn writes them apart, which
costs a second send (on loopback the kernel delivers each at once) and wakes the client
twice for one answer."""
from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 60.0


def guarded(header_timeout: float = HEADER_TIMEOUT_S, body_timeout: float = BODY_TIMEOUT_S) -> type:
    """The protocol class for uvicorn.Config(http=...)."""

    class Guarded(HttpToolsProtocol):
        _deadline = None
        cut = 0                                   # connections closed for being too slow (class-wide)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                type(self).cut += 1
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm(header_timeout)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(header_timeout)

        def on_headers_complete(self) -> None:
            self._arm(body_timeout)
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and cycle.transport is self.transport and self.scope["method"] != "HEAD":
                cycle.transport = JoinedHead(self.transport, cycle)     # HEAD: a head alone, never joined

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            self._disarm()
            super().handle_websocket_upgrade()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return Guarded


class JoinedHead:
    """One response's transport: uvicorn's head write (status line and headers) is held
    and sent with the first body part; anything before the response (a 100 Continue) and
    after that first part goes straight on."""

    __slots__ = ("_transport", "_cycle", "_head")

    def __init__(self, transport, cycle):
        self._transport, self._cycle, self._head = transport, cycle, None

    def write(self, data) -> None:
        head = self._head
        if head is None and self._cycle.response_started:     # the head: hold it
            self._head = bytes(data)
        elif head:
            self._head = b""
            self._transport.write(head + data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._head:
            self._transport.write(self._head)
            self._head = b""
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)
