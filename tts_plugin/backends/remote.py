"""The TTS server as a backend, over its WebSocket ``/v1/audio/speech/stream/ws``.

One stream = one segment with a fresh id. LLM tokens go to the server as they arrive
(``continue: true``); the server speaks each sentence as soon as it is complete, and the stream's
end sends ``continue: false``. Binary frames count only between ``start`` and ``end`` of this
stream's segment id, so audio of an interrupted turn is never played, even on a reused socket.
An interrupted stream sends ``cancel`` (the server stops generating at once) and its socket is
dropped; sockets of streams that finished cleanly go back to the pool, where a reader answers the
server's pings (aiohttp answers them only while someone reads; unanswered, the server closes an idle
socket after its ping timeout and the next turn would fail on it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
from livekit.agents import APIConnectionError, APIConnectOptions, APIError, APIStatusError, APITimeoutError, utils

from .. import hops
from ..engine.text import SentenceSplitter
from ..log import logger
from ..protocol import SAMPLE_RATE, WS_PATH, ClientMessage, ErrorCode, ServerMessage
from .base import SpeakOptions, SpeechBackend


def server_error(event: dict) -> APIError:
    """The server's ``error`` message as the LiveKit exception its code stands for (protocol.ErrorCode):
    an APIStatusError with the code's HTTP status and retry rule, or a lost connection. A code this
    client does not know (a newer server) is a retryable 500."""
    message = f"TTS server error ({event.get('code')}): {event.get('message', '')}"
    try:
        code = ErrorCode(event.get("code"))
    except ValueError:
        return APIStatusError(message, status_code=500, body=event, retryable=True)
    if code.closes_connection:
        return APIConnectionError(message, retryable=code.retryable)
    return APIStatusError(message, status_code=code.status, body=event, retryable=code.retryable)


def ws_url(base_url: str) -> str:
    """``http://host:8000`` (or ws://, https://, wss://) -> the streaming WebSocket URL."""
    base = base_url.rstrip("/")
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(http):
            base = ws + base[len(http):]
    if not base.startswith(("ws://", "wss://")):
        base = "ws://" + base
    return base + WS_PATH


class ServerBackend(SpeechBackend):
    def __init__(self, base_url: str, *, http_session: aiohttp.ClientSession | None = None,
                 max_session_duration: float = 300.0, api_key: str | None = None) -> None:
        self._url = ws_url(base_url)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = http_session
        self._owns_session = False
        self._background: set[asyncio.Task[Any]] = set()  # prewarms, closes of dropped sockets
        self._idle_readers: dict[aiohttp.ClientWebSocketResponse, asyncio.Task[None]] = {}
        self._model = "orpheus"  # the model family, until the server names its checkpoint
        self._pool = utils.ConnectionPool[aiohttp.ClientWebSocketResponse](
            connect_cb=self._connect_ws,
            close_cb=self._close_ws,
            max_session_duration=max_session_duration,
            mark_refreshed_on_get=True,
        )

    @property
    def model(self) -> str:
        return self._model

    @property
    def url(self) -> str:
        return self._url

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            try:
                self._session = utils.http_context.http_session()
            except RuntimeError:  # outside an agent job (scripts, tests): our own session
                self._session = aiohttp.ClientSession()
                self._owns_session = True
        return self._session

    async def _connect_ws(self, timeout: float) -> aiohttp.ClientWebSocketResponse:
        try:
            return await asyncio.wait_for(
                self._ensure_session().ws_connect(self._url, max_msg_size=0, heartbeat=30.0, headers=self._headers),
                timeout)
        except TimeoutError as e:
            raise APITimeoutError(f"timed out connecting to the TTS server at {self._url}") from e
        except aiohttp.WSServerHandshakeError as e:
            if e.status == 401:  # the key is never part of the message
                reason = "a valid API key is needed (ORPHEUS_API_KEY)" if not self._headers else "the API key was refused"
                raise APIStatusError(f"the TTS server refused the WebSocket: {reason}",
                                     status_code=401, retryable=False) from None
            raise APIStatusError(f"the TTS server refused the WebSocket: {e.message}",
                                 status_code=e.status) from e
        except aiohttp.ClientError as e:
            raise APIConnectionError(f"cannot connect to the TTS server at {self._url}: {e}") from e

    async def _close_ws(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.close()

    def prewarm(self) -> None:
        """Open a socket now (e.g. while an agent job connects its room), ready for the first turn."""
        async def warm() -> None:
            with suppress(APIError):  # the first turn connects (and reports) again
                async with self._connection(timeout=10.0):
                    pass

        task = asyncio.create_task(warm(), name="orpheus-ws-prewarm")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @asynccontextmanager
    async def _connection(self, *, timeout: float):
        """A pooled socket, as ``ConnectionPool.connection`` hands it out, whose idle reader is
        stopped while it is ours and started again when it goes back."""
        while True:
            ws = await self._pool.get(timeout=timeout)
            reader = self._idle_readers.pop(ws, None)
            if reader is not None:
                reader.cancel()
                await asyncio.wait([reader])
                if not reader.cancelled():
                    continue  # the socket ended while idle (its reader took it out of the pool)
            if not ws.closed:
                break
            self._pool.remove(ws)
        try:
            yield ws
        except BaseException:
            self._pool.remove(ws)
            raise
        self._pool.put(ws)
        self._idle_readers[ws] = asyncio.create_task(self._read_while_idle(ws), name="orpheus-ws-idle")

    async def _read_while_idle(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Answer pings (aiohttp does it inside ``receive``) until the socket is taken or ends."""
        ended = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                 aiohttp.WSMsgType.ERROR)
        while (await ws.receive()).type not in ended:
            pass  # a late message of an earlier segment: nobody's
        self._idle_readers.pop(ws, None)
        self._pool.remove(ws)

    async def speak(
        self,
        text: AsyncIterable[str],
        opts: SpeakOptions,
        *,
        segment_id: str,
        conn_options: APIConnectOptions,
        on_text_sent: Callable[[], None],
    ) -> AsyncIterator[bytes]:
        tokens = aiter(text)
        first = await _first_words(tokens)
        if first is None:
            return  # nothing to say: no socket, no segment

        async with self._connection(timeout=conn_options.timeout) as ws:
            audio = utils.aio.Chan[bytes]()
            input_done = asyncio.Event()
            send = asyncio.create_task(
                self._send_text(ws, first, tokens, opts, segment_id, on_text_sent, input_done),
                name="orpheus-ws-send")
            recv = asyncio.create_task(
                self._recv_audio(ws, segment_id, audio, input_done, conn_options.timeout),
                name="orpheus-ws-recv")
            # The audio channel closes when this segment ends, or when either side fails.
            def on_done(task: asyncio.Task[None]) -> None:
                if task is recv or task.cancelled() or task.exception() is not None:
                    audio.close()

            send.add_done_callback(on_done)
            recv.add_done_callback(on_done)
            finished = False
            try:
                async for pcm in audio:
                    yield pcm
                for task in (send, recv):
                    if task.done() and not task.cancelled() and (error := task.exception()):
                        raise error
                finished = True
            finally:
                if not finished:  # interrupted or failed; the pool drops this socket on the way out
                    await self._abandon(ws, segment_id)
                await utils.aio.gracefully_cancel(send, recv)
                for task in (send, recv):  # mark errors seen, raised or not
                    if not task.cancelled():
                        task.exception()

    async def _send_text(self, ws: aiohttp.ClientWebSocketResponse, first: str, tokens: AsyncIterator[str],
                         opts: SpeakOptions, segment_id: str, on_text_sent: Callable[[], None],
                         input_done: asyncio.Event) -> None:
        base = {"type": ClientMessage.SPEAK, "segment_id": segment_id, "voice": opts.voice, **opts.sampling()}
        # The server splits sentences itself; the same splitter here tells when the first
        # sentence is complete, i.e. when the engine starts on it (TTFB starts there).
        sentences = SentenceSplitter()

        async def send(piece: str, more: bool) -> None:
            await ws.send_str(json.dumps({**base, "text": piece, "continue": more}))
            if sentences.push(piece) or not more:
                on_text_sent()

        try:
            await send(first, True)
            hops.mark("first_text_sent", segment_id)
            async for token in tokens:
                if token:
                    await send(token, True)
            await send("", False)
        except (aiohttp.ClientError, ConnectionError) as e:
            raise APIConnectionError(f"lost the TTS server connection while sending: {e}") from e
        input_done.set()

    async def _recv_audio(self, ws: aiohttp.ClientWebSocketResponse, segment_id: str, audio: utils.aio.Chan[bytes],
                          input_done: asyncio.Event, timeout: float) -> None:
        ours = False  # between start(segment_id) and end(segment_id)
        got_audio = False
        refused: APIStatusError | None = None
        while True:
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                if input_done.is_set():
                    raise APITimeoutError(f"the TTS server sent nothing for {timeout:.0f} s") from None
                continue  # still waiting for the LLM's text: silence is expected
            if msg.type == aiohttp.WSMsgType.BINARY:
                if ours:
                    if not got_audio:
                        hops.mark("first_audio_received", segment_id)
                    got_audio = True
                    audio.send_nowait(msg.data)
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise APIConnectionError(f"the TTS server closed the connection ({msg.type.name})")
            event = json.loads(msg.data)
            kind, sid = event.get("type"), event.get("segment_id")
            if kind == ServerMessage.ERROR and sid in (segment_id, None):
                refused = server_error(event)
                if not ours or isinstance(refused, APIConnectionError):
                    raise refused  # the segment never started, or the socket is closing: no end will follow
                # inside the segment the server carries on (e.g. one unspeakable piece) and ends it
                logger.warning("TTS server: %s", refused.message, extra={"segment_id": segment_id})
                continue
            if sid != segment_id:
                continue  # a late message of an earlier (cancelled) segment on this socket
            if kind == ServerMessage.START:
                if event.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
                    raise APIStatusError(f"unexpected sample rate {event.get('sample_rate')}",
                                         status_code=500, retryable=False)
                self._model = event.get("model") or self._model
                ours = True
            elif kind == ServerMessage.METRICS:
                logger.debug("server metrics", extra={"segment_id": segment_id, "metrics": event})
            elif kind == ServerMessage.END:
                if refused is not None and not got_audio:
                    raise refused
                return

    async def _abandon(self, ws: aiohttp.ClientWebSocketResponse, segment_id: str) -> None:
        """Interrupted or failed: stop the server's generation now and drop the socket."""
        if not ws.closed:
            with suppress(Exception):
                await asyncio.wait_for(
                    ws.send_str(json.dumps({"type": ClientMessage.CANCEL, "segment_id": segment_id})), 1.0)
        task = asyncio.create_task(ws.close(), name="orpheus-ws-close")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        for reader in self._idle_readers.values():
            reader.cancel()
        self._idle_readers.clear()
        await self._pool.aclose()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None


async def _first_words(tokens: AsyncIterator[str]) -> str | None:
    """The first piece of text with something other than whitespace (None: the input was empty)."""
    async for token in tokens:
        if token and token.strip():
            return token
    return None
