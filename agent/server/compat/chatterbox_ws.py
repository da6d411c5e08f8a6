"""The Chatterbox true-streaming server's API (seed 004): WebSocket ``/ws/stream/audio``,
``GET /ws/stream/status`` and ``POST /audio/speech`` (OpenAI's shape, ``?stream_format=sse``).

WebSocket: ``connected`` on accept; ``{"type": "stream_request", "data": {...}}`` answers ``info``, a
binary 44-byte WAV header, binary PCM chunks (each followed by ``metrics`` unless
``include_metrics`` is false), then ``done``; ``cancel`` stops the generation (its vLLM request is
aborted) and ``done`` says ``"cancelled": true``; ``ping`` -> ``pong``; problems -> ``{"type": "error",
"error"}``. One stream at a time per connection, as in Chatterbox; the connection stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import aclosing
from typing import Literal

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import AliasChoices, ConfigDict, Field
from starlette.websockets import WebSocketState

from tts_plugin.protocol import SAMPLE_RATE, ErrorCode

from .. import http_api
from ..audio_formats import WavEncoder
from ..errors import ApiError
from ..speech_request import SamplingFields, SpeechRequest
from ..state import ServerState
from ..ws_api import ClientError, _validated, handle_messages
from . import foreign
from .common import server, validated

log = logging.getLogger("orpheus.server.compat")

router = APIRouter(tags=["compat: Chatterbox streaming"])


class StreamRequestData(SamplingFields):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(validation_alias=AliasChoices("input", "text"))
    voice: str | None = Field(None, description="a name from GET /v1/voices; server default when unset")
    max_new_tokens: int | None = Field(None, ge=7, le=65536, description="Orpheus's max_tokens (per sentence)")
    output_format: Literal["wav"] = Field("wav", description="'wav': a WAV header then binary PCM (base64: no)")
    include_metrics: bool = True
    print_metrics: bool = Field(False, description="true: the metrics are logged by the server too")

    def speech(self) -> SpeechRequest:
        sampling = self.model_dump(include=set(SamplingFields.model_fields), exclude_none=True)
        if self.max_new_tokens is not None and self.max_tokens is None:
            sampling["max_tokens"] = self.max_new_tokens
        return SpeechRequest(input=self.input, voice=self.voice, response_format="pcm", **sampling)


class ChatterboxSocket:
    def __init__(self, ws: WebSocket, state: ServerState) -> None:
        self.ws, self.state = ws, state
        self.task: asyncio.Task | None = None
        self.cancel_requested = False
        self._send_lock = asyncio.Lock()

    async def send_json(self, payload: dict) -> None:
        async with self._send_lock:
            await self.ws.send_text(json.dumps(payload))

    async def send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(data)

    async def run(self) -> None:
        await self.send_json({"type": "connected", "connection_id": uuid.uuid4().hex[:8],
                              "message": "Connected to the orpheus-rtc streaming WebSocket"})
        try:
            await handle_messages(self.ws, self.state.settings.max_ws_message_bytes, self._handle, self._refuse)
        finally:
            if self.task is not None:
                self.task.cancel()
                await asyncio.wait([self.task])  # not gather: a drain's cancellation must stay its own

    async def _refuse(self, err: ClientError) -> None:
        self.state.metrics.error("chatterbox_ws", err.code)
        await self.send_json({"type": "error", "error": err.message})

    async def _handle(self, data: dict) -> None:
        kind = data.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "cancel":
            if self.task is not None and not self.task.done():
                self.cancel_requested = True
                self.task.cancel()  # closes the engine stream -> the vLLM request is aborted
        elif kind == "stream_request":
            self._start(data.get("data"))
        else:
            raise ClientError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}; expected stream_request, cancel or ping")

    def _start(self, data: object) -> None:
        if self.task is not None and not self.task.done():
            raise ClientError(ErrorCode.BUSY, "a stream is already running on this connection; cancel it or wait for done")
        if not isinstance(data, dict):
            raise ClientError(ErrorCode.BAD_REQUEST, 'stream_request needs a "data" object with at least "input"')
        body = _validated(StreamRequestData, foreign.drop_neutral(data))
        try:
            stream = http_api.open_stream(self.state, body.speech(), "chatterbox_ws")
        except ApiError as err:
            raise ClientError(err.code, err.message) from None
        self.cancel_requested = False
        self.task = asyncio.create_task(self._stream(body, stream), name="chatterbox-ws-stream")

    async def _stream(self, body: StreamRequestData, stream) -> None:
        began = time.perf_counter()
        chunks = samples = 0
        try:
            slot = await http_api.admit(self.state, "chatterbox_ws")
        except ApiError as err:  # busy after the bounded wait
            await self.send_json({"type": "error", "error": err.message, "code": err.code})
            return
        try:
            voice = body.voice or self.state.engine.default_voice
            await self.send_json({"type": "info", "message": "Starting streaming generation...",
                                  "text_length": len(body.input), "voice": voice,
                                  "parameters": body.model_dump(exclude_none=True, exclude={"input"})})
            await self.send_bytes(WavEncoder.header())
            async with aclosing(self.state.metrics.observe(stream, "chatterbox_ws")) as pcm_chunks:
                async for pcm in pcm_chunks:
                    chunks += 1
                    samples += len(pcm) // 2
                    await self.send_bytes(pcm)
                    await self._report(body, self._metrics(stream, chunks, samples, len(pcm) // 2, began))
            await self.send_json({"type": "done", "total_chunks": chunks, "message": "Streaming complete"})
        except asyncio.CancelledError:
            if not self.cancel_requested or self.ws.client_state is not WebSocketState.CONNECTED:
                raise  # the connection is going away
            await self.send_json({"type": "done", "total_chunks": chunks, "cancelled": True,
                                  "message": "Streaming cancelled"})
        except Exception as exc:  # noqa: BLE001 - reported to the client; the connection stays usable
            if self.ws.client_state is not WebSocketState.CONNECTED:
                return
            log.exception("stream %s failed", stream.metrics.request_id)
            await self.send_json({"type": "error", "error": str(exc)})
        finally:
            slot.release()

    async def _report(self, body: StreamRequestData, metrics: dict) -> None:
        if body.print_metrics:
            log.info("chatterbox_ws metrics %s", metrics)
        if body.include_metrics:
            await self.send_json({"type": "metrics", "data": metrics})

    @staticmethod
    def _metrics(stream, chunk: int, samples: int, chunk_samples: int, began: float) -> dict:
        elapsed = time.perf_counter() - began
        audio_s = samples / SAMPLE_RATE
        ttfb = stream.metrics.ttfb_s
        return {"chunk": chunk, "latency_to_first_chunk": None if ttfb is None else round(ttfb, 4),
                "elapsed_time": round(elapsed, 4), "audio_duration": round(audio_s, 4),
                "rtf": round(elapsed / audio_s, 4) if audio_s else None,
                "chunk_size_bytes": chunk_samples * 2, "sample_rate": SAMPLE_RATE}


@router.websocket("/ws/stream/audio")
async def stream_audio(ws: WebSocket) -> None:
    await ws.accept()
    await ChatterboxSocket(ws, ws.app.state.server).run()


@router.get("/ws/stream/status")
async def stream_status(request: Request) -> dict:
    ready = server(request).ready
    return {"available": True, "ready": ready, "sample_rate": SAMPLE_RATE, "supported_formats": ["wav"],
            "description": "Orpheus streaming: one 7-token frame (85 ms of audio) at a time",
            "features": {"incremental_generation": True, "kv_cache": True, "alignment_monitoring": False,
                         "low_latency": True, "cancel": True}}


@router.post("/audio/speech", responses={200: {"content": {"text/event-stream": {}, "audio/wav": {}}}})
async def audio_speech(request: Request, stream_format: Literal["audio", "sse"] | None = None) -> StreamingResponse:
    """Chatterbox's OpenAI-shaped route: ``/v1/audio/speech`` with ``stream_format`` also as a query parameter."""
    try:
        data = await request.json()
    except ValueError:
        raise ApiError(ErrorCode.BAD_JSON, "malformed JSON: cannot parse the body") from None
    if isinstance(data, dict):
        data = foreign.drop_neutral(data)
        if stream_format is not None:
            data.setdefault("stream_format", stream_format)
    return await http_api.create_speech(validated(SpeechRequest, data), request)
