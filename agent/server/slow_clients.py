"""Clients that are too slow to be served: they send headers forever or never read the response.

* ``guarded_protocol``: uvicorn closes idle keep-alive connections, but a new connection
  (or a kept-alive one that started a request) may trickle its headers forever and hold a socket
  (slowloris). This protocol closes a connection whose request headers are not complete in time.
* ``SendTimeout``: a response whose client reads nothing for ``timeout_s`` (its socket buffers are
  full, so uvicorn's send waits) is ended abnormally; its speech stream is closed and the engine
  slot freed, instead of being held for as long as the client keeps the socket open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger("orpheus.server.slow_clients")


class ClientStalled(Exception):
    pass


class SendTimeout:
    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        stalled = False

        async def bounded_send(message: Message) -> None:
            nonlocal stalled
            if stalled:
                raise ClientStalled
            try:
                await asyncio.wait_for(send(message), self.timeout_s)
            except TimeoutError:
                stalled = True
                raise ClientStalled from None

        try:
            await self.app(scope, receive, bounded_send)
        except ClientStalled:
            # Returning with the response unfinished makes uvicorn close the connection, so the
            # client sees a cut body, not a complete one.
            log.warning("%s %s: the client read nothing for %.0f s; ending its response",
                        scope.get("method"), scope["path"], self.timeout_s)


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body iterator however streaming ends. When ``SendTimeout`` gives up on a client,
    the iterator (holding the speech stream) sits in a reference cycle of the exception's frames:
    without this it would stay open, generating, until the garbage collector runs."""

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def guarded_protocol(header_timeout_s: float, send_buffer_bytes: int) -> type[AutoHTTPProtocol]:
    """uvicorn's HTTP protocol, closing connections whose request headers take longer than
    ``header_timeout_s``. With ``send_buffer_bytes`` the kernel and the transport each queue about
    that much for a client that does not read (else kernel autotuning lets it grow to megabytes,
    minutes of audio), so a stalled client is noticed by ``SendTimeout`` / the WebSocket's send
    timeout after a bounded backlog."""

    timeout_s = header_timeout_s

    class GuardedProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if send_buffer_bytes:
                # the same transport carries the WebSocket after an upgrade: its sends wait on this too
                transport.set_write_buffer_limits(high=send_buffer_bytes)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # a new request on a kept-alive connection
            cycle = self.cycle
            super().data_received(data)
            upgraded = self.transport.get_protocol() is not self
            if upgraded or (self.cycle is not None and self.cycle is not cycle):
                self._disarm()  # headers complete (a request cycle started) or now a WebSocket

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                log.info("closing a connection that sent no complete request headers in %.0f s", timeout_s)
                self.transport.close()

    return GuardedProtocol
