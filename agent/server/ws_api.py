"""WebSocket ``/v1/audio/speech/stream/ws``: segments of speech on one connection.

Client -> server (JSON text frames):
  {"type":"speak","segment_id":"s1","text":"...","voice":"tara","continue":false, <sampling>}
  {"input":"...","voice":"tara","continue":true,"segment_id":"s1"}   (orpheus-streaming shape)
  {"type":"cancel","segment_id":"s1"}    {"type":"ping"}
Server -> client: {"type":"start",...}, binary PCM s16le 24 kHz mono, {"type":"metrics",...},
  {"type":"end","segment_id":..,"cancelled":bool}, {"type":"pong"}, {"type":"error","code","message"},
  {"type":"no_op","reason":"empty_input"} (orpheus-streaming shape, empty input that keeps the socket).

``type: "speak"`` streams input: with ``continue: true`` the segment stays open for more text and
each sentence is spoken once it is complete. The orpheus-streaming shape (no ``type``) follows that
server's rules instead: each message is a whole segment, spoken at once; ``continue`` defaults to
true and ``continue: false`` (its input may be empty) closes the socket once what is queued is spoken.

Two tasks per connection: the reader answers control messages at once (cancel, ping) and queues
text; the speaker works through segments in order. Binary frames between start(X) and end(X)
belong to X. The connection survives every client error; a disconnect cancels the generation.

A segment is spoken only once admitted (admission.py): ``start`` comes then, or an ``error`` with
code ``busy`` (and nothing else for that segment) after the queue wait. On SIGTERM new segments get
``error`` ``draining``; segments still running when the grace ends get ``error`` ``shutting_down``
and ``end``, then the socket closes with 1012.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketState

from tts_plugin.engine.engine import SpeechMetrics
from tts_plugin.engine.generator import SamplingOptions
from tts_plugin.engine.text import SentenceSplitter, validate
from tts_plugin.protocol import (
    CHANNELS,
    PCM_FORMAT,
    SAMPLE_RATE,
    WS_PATH,
    ClientMessage,
    ErrorCode,
    ServerMessage,
    metrics_payload,
)

from .admission import Busy
from .errors import describe_validation_error
from .speech_request import SamplingFields
from .state import ServerState

log = logging.getLogger("orpheus.server.ws")

router = APIRouter()

RECENT_SEGMENTS = 64  # finished segment ids remembered so a late cancel is not an error
CLOSE = None  # queued after the last segment by continue:false (orpheus-streaming shape)


class SpeakMessage(SamplingFields):
    """``type: "speak"`` or the orpheus-streaming shape (``input`` instead of ``text``, no type)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: str = "speak"
    segment_id: str | None = Field(None, min_length=1, max_length=128)
    text: str | None = None
    input: str | None = None
    voice: str | None = Field(None, max_length=64)
    continue_: bool = Field(False, alias="continue")

    @property
    def spoken_text(self) -> str:
        return self.text if self.text is not None else (self.input or "")


class CancelMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    segment_id: str | None = None


class SlowConsumer(Exception):
    """The client stopped reading: sends have waited ``send_timeout_s``."""


class ClientError(Exception):
    def __init__(self, code: ErrorCode, message: str, segment_id: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.segment_id = code, message, segment_id


@dataclass
class Segment:
    id: str
    voice: str
    options: SamplingOptions
    pieces: asyncio.Queue = field(default_factory=asyncio.Queue)  # str pieces, None = no more text
    closed: bool = False
    cancelled: bool = False
    buffered_chars: int = 0
    task: asyncio.Task | None = None

    def push(self, text: str) -> None:
        if text:
            self.buffered_chars += len(text)
            self.pieces.put_nowait(text)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pieces.put_nowait(None)


class SpeechSocket:
    def __init__(self, ws: WebSocket, state: ServerState) -> None:
        self.ws = ws
        self.state = state
        self.engine = state.engine
        self.queue: asyncio.Queue[Segment | None] = asyncio.Queue()  # None: CLOSE
        self.open_segment: Segment | None = None  # receiving text with continue:true
        self.current: Segment | None = None  # being spoken
        self.pending: dict[str, Segment] = {}  # queued, not started
        self.finished: list[str] = []
        self._send_lock = asyncio.Lock()
        self.slow = False
        self._auto_ids = itertools.count(1)
        self.closing = False  # continue:false in the orpheus-streaming shape was received
        self.shutting_down = False

    # ---- sending
    async def send_json(self, payload: dict) -> None:
        await self._send({"type": "websocket.send", "text": json.dumps(payload)})

    async def send_audio(self, pcm: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": pcm})

    async def _send(self, message: dict) -> None:
        """A client that reads nothing for ``send_timeout_s`` (its buffers are full) is dropped."""
        if self.slow:
            raise SlowConsumer
        async with self._send_lock:
            try:
                await asyncio.wait_for(self.ws.send(message), self.state.settings.send_timeout_s)
            except TimeoutError:
                self.slow = True
                raise SlowConsumer from None

    async def send_error(self, code: ErrorCode, message: str, segment_id: str | None = None) -> None:
        self.state.metrics.error("ws", code)
        await self.send_json(_error_message(code, message, segment_id))

    async def _drop_slow_consumer(self) -> None:
        """Say why and close, if the client reads again within ``send_timeout_s`` (every send waits
        for the backlog to drain); else leave: the connection is closed without a close frame."""
        timeout_s = self.state.settings.send_timeout_s
        log.warning("WebSocket client read nothing for %.0f s; closing it", timeout_s)
        code = ErrorCode.SLOW_CONSUMER
        self.state.metrics.error("ws", code)
        reason = f"{code}: the client read nothing for {timeout_s:.0f} s"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.send_text(json.dumps(_error_message(code, reason))), timeout_s)
            await asyncio.wait_for(self.ws.close(code=1008, reason=code), timeout_s)

    # ---- lifecycle
    async def run(self) -> None:
        speaker = asyncio.create_task(self._speaker(), name="ws-speaker")
        reader = asyncio.create_task(self._reader(), name="ws-reader")
        self.state.sockets.add(self)
        try:
            await asyncio.wait([reader, speaker], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.state.sockets.discard(self)
            if self.current and self.current.task:
                self.current.task.cancel()
            for task in (reader, speaker):
                task.cancel()
            # wait, not gather: when the drain cancels this connection, a cancelled gather raises a
            # CancelledError of its own that escapes the connection's cancel scope as a traceback
            await asyncio.wait([reader, speaker])
        results = [None if t.cancelled() else t.exception() for t in (reader, speaker)]
        if any(isinstance(r, SlowConsumer) for r in results):
            await self._drop_slow_consumer()
        elif isinstance(results[0], Exception) and not isinstance(results[0], WebSocketDisconnect):
            raise results[0]  # a fault of ours: let it be logged

    @property
    def has_work(self) -> bool:
        """A segment is being spoken, waits its turn, or still receives text."""
        return self.current is not None or bool(self.pending) or self.open_segment is not None

    async def shut_down(self) -> None:
        """Server going away: end every segment (``error`` shutting_down + ``end``), close with 1012."""
        self.shutting_down = True
        for seg in [s for s in (self.current, self.open_segment) if s] + list(self.pending.values()):
            with contextlib.suppress(ClientError):
                self._cancel(seg.id)
        while self.current is not None or self.pending:  # the speaker sends the frames
            await asyncio.sleep(0.02)
        with contextlib.suppress(Exception):
            await self.ws.close(1012, "server restarting")

    async def _reader(self) -> None:
        await handle_messages(self.ws, self.state.settings.max_ws_message_bytes, self._handle,
                              lambda err: self.send_error(err.code, err.message, err.segment_id))

    async def _handle(self, data: dict) -> None:
        kind = data.get("type")
        speaks = kind == ClientMessage.SPEAK or (kind is None and ("input" in data or "text" in data))
        if speaks and self.closing:
            segment_id = data.get("segment_id") if isinstance(data.get("segment_id"), str) else None
            raise ClientError(ErrorCode.CLOSING, "continue:false was received: the connection closes once queued "
                              "speech is spoken", segment_id)
        if speaks and kind is None:  # the orpheus-streaming shape: no type
            msg = _validated(SpeakMessage, data)
            await self._speak_whole(msg, keep_open=msg.continue_ if "continue" in data else True)
        elif kind == ClientMessage.PING:
            await self.send_json({"type": ServerMessage.PONG, **({"id": data["id"]} if "id" in data else {})})
        elif kind == ClientMessage.SPEAK:
            self._speak(_validated(SpeakMessage, data))
        elif kind == ClientMessage.CANCEL:
            self._cancel(_validated(CancelMessage, data).segment_id)
        elif kind is None:
            raise ClientError(ErrorCode.BAD_REQUEST, 'message needs a "type" (speak, cancel, ping) or an "input"')
        else:
            raise ClientError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}; expected speak, cancel or ping")

    # ---- speak / cancel (reader side: never waits on the engine)
    def _speak(self, msg: SpeakMessage) -> None:
        text = msg.spoken_text
        max_chars = self.state.settings.max_input_chars
        seg = self.open_segment
        if seg is not None and msg.segment_id not in (None, seg.id):
            seg.close()  # a new segment id ends the one still open
            self.open_segment = seg = None
        if (seg.buffered_chars if seg else 0) + len(text) > max_chars:  # checked before a segment is queued
            raise ClientError(ErrorCode.TOO_LARGE, f"segment text exceeds {max_chars} characters",
                              seg.id if seg else msg.segment_id)
        if seg is None:
            seg = self._new_segment(msg, text)
        seg.push(text)
        if msg.continue_:
            self.open_segment = seg
        else:
            seg.close()
            self.open_segment = None

    async def _speak_whole(self, msg: SpeakMessage, *, keep_open: bool) -> None:
        """orpheus-streaming's rules: the message is a whole segment, queued at once; empty input is a
        no-op; ``keep_open`` false (continue:false) closes the socket after everything queued."""
        if self.open_segment is not None:  # a typed segment still taking text ends here
            self.open_segment.close()
            self.open_segment = None
        text = msg.spoken_text
        try:
            if text.strip():
                if (refusal := self.state.refusal()) is not None:
                    raise ClientError(*refusal, msg.segment_id)
                seg = self._new_segment(msg, text, whole=True)
                seg.push(text)
                seg.close()
            elif keep_open:
                await self.send_json({"type": ServerMessage.NO_OP, "reason": "empty_input", "segment_id": msg.segment_id})
        finally:
            if not keep_open:  # a refused last message still ends the connection, after its error
                self.closing = True
                self.queue.put_nowait(CLOSE)

    def _new_segment(self, msg: SpeakMessage, text: str, *, whole: bool | None = None) -> Segment:
        segment_id = msg.segment_id or f"seg-{next(self._auto_ids)}"
        if segment_id in self.pending or (self.current and self.current.id == segment_id):
            raise ClientError(ErrorCode.BAD_REQUEST, f"segment {segment_id!r} is already in progress", segment_id)
        if self.shutting_down:
            raise ClientError(ErrorCode.DRAINING, "the server is shutting down and takes no new segments", segment_id)
        if (refusal := self.state.refusal()) is not None:
            raise ClientError(*refusal, segment_id)
        limit = self.state.settings.ws_max_queued_segments
        if len(self.pending) >= limit:
            raise ClientError(ErrorCode.TOO_MANY_SEGMENTS, f"{limit} segments are already waiting on this connection; "
                              "send more when some have ended", segment_id)
        try:
            voice = self.engine.resolve_voice(msg.voice)
            if (not msg.continue_) if whole is None else whole:
                validate(text, self.state.settings.max_input_chars)  # whole text known: reject now
        except ValueError as exc:
            raise ClientError(ErrorCode.BAD_REQUEST, str(exc), segment_id) from None
        seg = Segment(segment_id, voice, msg.sampling())
        self.pending[segment_id] = seg
        self.queue.put_nowait(seg)
        return seg

    def _cancel(self, segment_id: str | None) -> None:
        current = self.current
        if current and segment_id in (None, current.id):
            target = current
        elif segment_id in self.pending:
            target = self.pending[segment_id]
        elif segment_id is None or segment_id in self.finished:
            return  # nothing playing, or a cancel that crossed the segment's end: not an error
        else:
            raise ClientError(ErrorCode.UNKNOWN_SEGMENT, f"no segment {segment_id!r} to cancel", segment_id)
        target.cancelled = True
        target.close()
        if self.open_segment is target:
            self.open_segment = None
        if target.task:
            target.task.cancel()  # closes the engine stream -> the vLLM request is aborted

    # ---- speaker side
    async def _speaker(self) -> None:
        while True:
            seg = await self.queue.get()
            if seg is CLOSE:  # everything before it is spoken: close as orpheus-streaming does
                async with self._send_lock:
                    await self.ws.close(1000)
                return
            self.pending.pop(seg.id, None)
            if seg.cancelled:
                await self._send_shutting_down(seg)
                await self.send_json({"type": ServerMessage.END, "segment_id": seg.id, "cancelled": True})
                self._remember(seg.id)
                continue
            self.current = seg
            stats = SpeechMetrics(request_id=seg.id)
            seg.task = asyncio.create_task(self._admitted_segment(seg, stats), name=f"ws-segment-{seg.id}")
            await asyncio.wait([seg.task])
            cancelled = seg.cancelled or seg.task.cancelled()
            exc = None if seg.task.cancelled() else seg.task.exception()
            if isinstance(exc, Busy):  # never started: the error is the segment's only answer
                self.current = None
                if self.open_segment is seg:
                    self.open_segment = None
                self._remember(seg.id)
                await self.send_error(ErrorCode.BUSY, str(exc), seg.id)
                continue
            if exc is not None:
                if isinstance(exc, SlowConsumer):
                    raise exc
                if isinstance(exc, WebSocketDisconnect) or self.ws.client_state is WebSocketState.DISCONNECTED:
                    return  # the client went away mid-send; the reader ends the connection
                log.error("segment %s failed", seg.id, exc_info=exc)
                await self.send_error(ErrorCode.ENGINE_ERROR, str(exc), seg.id)
            if not cancelled:
                await self.send_json(self._metrics(seg, stats))
            await self._send_shutting_down(seg)
            self.current = None
            self._remember(seg.id)
            await self.send_json({"type": ServerMessage.END, "segment_id": seg.id, "cancelled": cancelled})

    async def _send_shutting_down(self, seg: Segment) -> None:
        if self.shutting_down and seg.cancelled:
            await self.send_json(_error_message(ErrorCode.SHUTTING_DOWN, "the server is shutting down; the segment "
                                                "was ended", seg.id))

    async def _admitted_segment(self, seg: Segment, stats: SpeechMetrics) -> None:
        slot = await self.state.admission.acquire("ws")  # Busy after the queue wait
        try:
            await self._speak_segment(seg, stats)
        finally:
            slot.release()

    async def _speak_segment(self, seg: Segment, stats: SpeechMetrics) -> None:
        stats.started_at = time.perf_counter()  # the segment's TTFB and elapsed time count from here
        await self.send_json({"type": ServerMessage.START, "segment_id": seg.id, "sample_rate": SAMPLE_RATE,
                              "channels": CHANNELS, "format": PCM_FORMAT, "model": self.state.settings.model})
        splitter = SentenceSplitter()
        while True:
            piece = await seg.pieces.get()
            done = piece is None
            text = piece or ""
            while not seg.pieces.empty() and not done:  # take everything already sent
                nxt = seg.pieces.get_nowait()
                done = nxt is None
                text += nxt or ""
            # pysbd in a thread: a long or pathological piece must not hold the event loop
            ready = await asyncio.to_thread(splitter.push, text)
            if done:
                ready += await asyncio.to_thread(splitter.flush)
            if ready:
                await self._say(seg, " ".join(ready), stats)
            if done:
                if seg.buffered_chars == 0:
                    await self.send_error(ErrorCode.BAD_REQUEST, "input is empty: the segment ended with no text",
                                          seg.id)
                return

    async def _say(self, seg: Segment, text: str, stats: SpeechMetrics) -> None:
        try:
            stream = self.engine.synthesize(text, voice=seg.voice, options=seg.options,
                                            request_id=f"ws-{seg.id}-{uuid.uuid4().hex[:8]}")
        except ValueError as exc:  # e.g. a piece holding only tags: report it, keep the segment going
            await self.send_error(ErrorCode.BAD_REQUEST, str(exc), seg.id)
            return
        try:
            async with contextlib.aclosing(self.state.metrics.observe(stream, "ws")) as chunks:
                async for pcm in chunks:
                    await self.send_audio(pcm)
        finally:
            stats.add(stream.metrics)

    def _metrics(self, seg: Segment, stats: SpeechMetrics) -> dict:
        return {"type": ServerMessage.METRICS, "segment_id": seg.id, **metrics_payload(stats)}

    def _remember(self, segment_id: str) -> None:
        self.finished.append(segment_id)
        del self.finished[:-RECENT_SEGMENTS]


async def handle_messages(ws: WebSocket, limit: int, handle: Callable[[dict], Awaitable[None]],
                          refuse: Callable[[ClientError], Awaitable[None]]) -> None:
    """Each JSON message of the client to ``handle`` until it disconnects; a message this API refuses
    (``ClientError``, from reading or handling it) goes to ``refuse`` and the connection carries on."""
    while True:
        try:
            data = await receive_message(ws, limit)
            if data is None:
                return
            await handle(data)
        except ClientError as err:
            await refuse(err)


async def receive_message(ws: WebSocket, limit: int) -> dict | None:
    """The client's next JSON object (None: it disconnected); ClientError for a frame this API refuses."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is None:
        raise ClientError(ErrorCode.BAD_REQUEST, "binary frames are not accepted; send JSON text frames")
    if len(text) > limit:
        raise ClientError(ErrorCode.TOO_LARGE, f"message is larger than {limit} bytes")
    return _parse(text)


def _parse(text: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(ErrorCode.BAD_JSON, f"malformed JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise ClientError(ErrorCode.BAD_JSON, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ClientError(ErrorCode.BAD_REQUEST, "each message must be a JSON object")
    return data


def _validated(model: type[BaseModel], data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(describe_validation_error(e)[0] for e in exc.errors())
        segment_id = data.get("segment_id") if isinstance(data.get("segment_id"), str) else None
        raise ClientError(ErrorCode.BAD_REQUEST, reasons, segment_id) from None


def _error_message(code: ErrorCode, message: str, segment_id: str | None = None) -> dict:
    return {"type": ServerMessage.ERROR, "segment_id": segment_id, "code": code, "message": message}


@router.websocket(WS_PATH)
async def speech_socket(ws: WebSocket) -> None:
    # Browsers send the API key as a subprotocol next to "orpheus" (auth.py); one must be chosen back.
    await ws.accept(subprotocol="orpheus" if "orpheus" in ws.scope.get("subprotocols", ()) else None)
    await SpeechSocket(ws, ws.app.state.server).run()
