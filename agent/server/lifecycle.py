"""The server's life after start-up: every connection in a cancel scope, the SIGTERM drain, and the
engine watchdog.

- ``ConnectionScopes`` (ASGI middleware) runs each HTTP request and WebSocket in a cancel scope the
  drain can end, releases the admission slots it took however it ends, and turns ``StreamAborted``
  (a stream that failed after its 200 went out) into a cut connection: the chunked body never gets
  its last chunk, so clients see an error instead of a short but "complete" file.
- ``drain``: /health says 503 "draining" at once, new streams are refused, streams in flight get
  ``drain_grace_s`` to finish; the rest are ended (WebSocket ``error`` + ``end`` frames and close
  1012, HTTP bodies cut, WebRTC utterances ended), then the server exits 0.
- ``watch_engine``: when the vLLM engine core dies, /health turns 503 and the server exits 1 so a
  supervisor restarts it (the engine cannot come back inside this process).
- ``watch_vllm``: a replica generating on a remote ``vllm serve`` probes it; while it does not
  answer, /health says 503 "vllm_unreachable" (so a balancer takes the replica out) and new streams
  are refused with that code; once it answers again the replica serves again, without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from .admission import Slot

if TYPE_CHECKING:
    from tts_plugin.engine.remote_generator import RemoteTokenGenerator

    from .state import ServerState

log = logging.getLogger("orpheus.server")

SCOPE_KEY = "orpheus.connection"
END_FRAMES_S = 2.0  # after the grace: how long ending frames and closes may take before a cut
WATCH_INTERVAL_S = 0.2
FAILED_EXIT_DELAY_S = 2.0  # after engine death: answer 503 with the reason this long, then exit 1


class StreamAborted(Exception):
    """A response already under way cannot finish: cut the connection (no clean end of body)."""


@dataclass(eq=False)
class Connection:
    kind: str  # "http" or "websocket"
    cancel_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    slots: list[Slot] = field(default_factory=list)

    def hold(self, slot: Slot) -> Slot:
        self.slots.append(slot)
        return slot

    def release_all(self) -> None:
        for slot in self.slots:
            slot.release()
        self.slots.clear()


def connection_of(scope: Scope) -> Connection | None:
    return scope.get(SCOPE_KEY)


class ConnectionScopes:
    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        connection = scope[SCOPE_KEY] = Connection(scope["type"])
        self.state.connections.add(connection)
        try:
            with connection.cancel_scope:
                await self.app(scope, receive, send)
        except StreamAborted:
            pass  # returning with the response unfinished makes uvicorn close the connection
        finally:
            self.state.connections.discard(connection)
            connection.release_all()


async def drain(state: ServerState, exit_server: Callable[[int], None]) -> None:
    grace = state.settings.drain_grace_s
    state.draining = True
    loop = asyncio.get_running_loop()
    log.info("draining: %d streams in flight, %g s to finish", state.admission.in_use, grace)
    deadline = loop.time() + grace
    while _in_flight(state) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    left = state.admission.in_use + state.admission.queued
    if left:
        log.warning("drain: ending %d streams still running after %g s", left, grace)
    await _end_everything(state)
    log.info("drained")
    exit_server(0)


def _in_flight(state: ServerState) -> bool:
    return bool(state.admission.in_use or state.admission.queued or any(s.has_work for s in state.sockets))


async def _end_everything(state: ServerState) -> None:
    ending: list[Awaitable] = [socket.shut_down() for socket in list(state.sockets)]
    if state.rtc is not None:
        ending.append(state.rtc.aclose())
    if ending:
        done, pending = await asyncio.wait([asyncio.ensure_future(e) for e in ending], timeout=END_FRAMES_S)
        for task in pending:
            task.cancel()
    for connection in list(state.connections):  # HTTP streams still sending, sockets that would not close
        if connection.slots or connection.kind == "websocket":
            connection.cancel_scope.cancel()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + END_FRAMES_S
    while any(c.slots or c.kind == "websocket" for c in state.connections) and loop.time() < deadline:
        await asyncio.sleep(0.05)


async def watch_engine(state: ServerState, exit_server: Callable[[int], None]) -> None:
    """Poll the engine; on death mark the server failed (health 503, requests refused) and exit 1."""
    while True:
        engine = state.engine
        if engine is not None and engine.failed:
            state.failure = "the speech engine has stopped (its vLLM engine core died); the server is exiting"
            log.error("%s", state.failure)
            await asyncio.sleep(FAILED_EXIT_DELAY_S)  # streams get their errors, /health its reason
            exit_server(1)
            return
        await asyncio.sleep(WATCH_INTERVAL_S)


async def watch_vllm(generator: RemoteTokenGenerator, interval_s: float) -> None:
    """Probe the remote vLLM server every ``interval_s``; its ``unreachable`` drives /health and refusals."""
    while True:
        await generator.probe()
        await asyncio.sleep(interval_s)
