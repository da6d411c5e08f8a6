"""HTTP endpoints: OpenAI-compatible speech, raw PCM stream, SSE, health, voices, metrics.

Every speech response streams as audio is generated. Input is validated before the response
starts, so bad requests get a 4xx with a reason; then the stream takes an admission slot (429 busy
after the queue wait). A client that disconnects cancels the response task, which closes the engine
stream and aborts its vLLM request. A stream that fails after its 200 went out is cut (no clean
end of the chunked body), so clients see an error rather than a short file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tts_plugin.protocol import CHANNELS, SAMPLE_RATE, ErrorCode, metrics_payload

from .admission import Busy, Slot
from .audio_formats import MEDIA_TYPES, ContainerEncoder, make_encoder
from .errors import ApiError
from .lifecycle import StreamAborted, connection_of
from .request_id import request_id
from .slow_clients import ClosingStreamingResponse as StreamingResponse  # a stalled client's stream closes at once
from .speech_request import SpeechRequest
from .state import ServerState

log = logging.getLogger("orpheus.server.http")

router = APIRouter()

PCM_HEADERS = {
    "X-Sample-Rate": str(SAMPLE_RATE),
    "X-Channels": str(CHANNELS),
    "X-Sample-Format": "s16le",
}
PCM_MEDIA_TYPE = f"audio/pcm;rate={SAMPLE_RATE};channels={CHANNELS};format=s16le"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_KEEPALIVE_S = 1.0


def _state(request: Request) -> ServerState:
    return request.app.state.server


def _refuse_if_unavailable(state: ServerState) -> None:
    if (refusal := state.refusal()) is not None:
        raise ApiError(*refusal)


def open_stream(state: ServerState, body: SpeechRequest, transport: str, request_id: str | None = None):
    """Validate and create the stream, not yet admitted (503 when unavailable, 400 on bad input)."""
    _refuse_if_unavailable(state)
    try:
        return body.start(state.engine, request_id=f"{transport}-{request_id or uuid.uuid4().hex[:12]}")
    except ValueError as exc:  # TextError is a ValueError: empty/oversized input, unknown voice
        state.metrics.error(transport, ErrorCode.INVALID_REQUEST)
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc), param=_param_of(str(exc))) from None


async def admit(state: ServerState, transport: str) -> Slot:
    """An admission slot, after the bounded wait; 429 ``busy`` with Retry-After when none came."""
    try:
        return await state.admission.acquire(transport)
    except Busy as exc:
        state.metrics.error(transport, ErrorCode.BUSY)
        raise ApiError(ErrorCode.BUSY, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None


async def _start(state: ServerState, request: Request, body: SpeechRequest, transport: str):
    """Validate, then wait for an admission slot held until the request's connection is done (the one
    entry point of every HTTP speech route, core or compat)."""
    stream = open_stream(state, body, transport, request_id(request))
    slot = await admit(state, transport)
    connection = connection_of(request.scope)
    if connection is None:  # no ConnectionScopes middleware: nothing would release it
        slot.release()
        raise ApiError(ErrorCode.INTERNAL_ERROR, "server misconfigured: no connection scope")
    connection.hold(slot)  # released when the response is over, however it ends
    return stream


def _param_of(message: str) -> str | None:
    return "voice" if "voice" in message else "input"


async def encoded_chunks(state: ServerState, stream, response_format: str, transport: str) -> AsyncIterator[bytes]:
    """The stream's audio in ``response_format``, as the encoder releases it; engine faults propagate."""
    encoder = make_encoder(response_format)
    # Compressed formats encode in a thread; the encoder closes only once no call is running in it.
    offload = isinstance(encoder, ContainerEncoder)
    running: asyncio.Future | None = None

    async def encode(fn, *args) -> bytes:
        nonlocal running
        if not offload:
            return fn(*args)
        running = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        return await running

    try:
        async with aclosing(state.metrics.observe(stream, transport)) as chunks:
            async for pcm in chunks:
                out = await encode(encoder.feed, pcm)
                if out:
                    yield out
        tail = await encode(encoder.finish)
        if tail:
            yield tail
    finally:
        close = getattr(encoder, "close", lambda: None)
        if running is not None and not running.done():
            running.add_done_callback(lambda _: close())
        else:
            close()


async def _encoded(state: ServerState, stream, response_format: str, transport: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in encoded_chunks(state, stream, response_format, transport):
            yield chunk
    except Exception as exc:  # mid-stream fault: the 200 is gone, so cut the body (clients see an error)
        log.error("stream %s failed, cutting the response: %s", stream.metrics.request_id, exc)
        raise StreamAborted(str(exc)) from None


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _openai_sse(state: ServerState, stream, response_format: str) -> AsyncIterator[bytes]:
    """OpenAI's `stream_format: "sse"`: speech.audio.delta events, then speech.audio.done.

    As OpenAI does, the deltas are pieces of one stream in the requested ``response_format``
    (LiveKit's OpenAI plugin feeds them to a decoder of that format); concatenated they are the file."""
    try:
        async for chunk in encoded_chunks(state, stream, response_format, "openai_sse"):
            delta = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()}
            yield f"data: {json.dumps(delta)}\n\n".encode()
        m = stream.metrics
        done = {"type": "speech.audio.done", "usage": {"input_tokens": m.prompt_tokens, "output_tokens": m.tokens,
                                                        "total_tokens": m.prompt_tokens + m.tokens}}
        yield f"data: {json.dumps(done)}\n\n".encode()
    except Exception as exc:  # noqa: BLE001
        log.exception("stream %s failed", stream.metrics.request_id)
        yield f"data: {json.dumps({'type': 'error', 'error': {'message': str(exc)}})}\n\n".encode()


async def _with_keepalive(events: AsyncIterator[bytes], every_s: float = SSE_KEEPALIVE_S) -> AsyncIterator[bytes]:
    """``events``, plus an SSE comment whenever ``every_s`` passes without one: the FLAC encoder holds
    all audio to the end, and clients' read timeouts (30 s in LiveKit's OpenAI plugin) must not fire."""
    pending: asyncio.Future | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(events.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=every_s)
            if not done:
                yield b": generating\n\n"
                continue
            finished, pending = pending, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        if pending is not None:  # the client left: stop the generation where it waits
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await events.aclose()


@router.post("/v1/audio/speech", tags=["speech"],
             responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}})
async def create_speech(body: SpeechRequest, request: Request) -> StreamingResponse:
    """OpenAI-compatible speech. `response_format`: pcm (s16le 24 kHz mono), wav, opus (Ogg), mp3, flac, aac."""
    state = _state(request)
    stream = await _start(state, request, body, "openai")
    if body.stream_format == "sse":
        return StreamingResponse(_with_keepalive(_openai_sse(state, stream, body.response_format)),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    headers = PCM_HEADERS if body.response_format == "pcm" else {}
    return StreamingResponse(_encoded(state, stream, body.response_format, "openai"),
                             media_type=MEDIA_TYPES[body.response_format], headers=headers)


@router.post("/v1/audio/speech/stream", tags=["speech"],
             responses={200: {"content": {"audio/pcm": {}}, "description": "raw s16le 24 kHz mono PCM"}})
async def stream_pcm(body: SpeechRequest, request: Request) -> StreamingResponse:
    """Raw PCM s16le, 24 kHz, mono, streamed; the format is repeated in X-Sample-* headers."""
    state = _state(request)
    if "response_format" in body.model_fields_set and body.response_format != "pcm":
        raise ApiError(ErrorCode.INVALID_REQUEST, "this endpoint streams raw PCM only; use /v1/audio/speech for "
                       "other formats", param="response_format")
    stream = await _start(state, request, body, "pcm")
    return StreamingResponse(_encoded(state, stream, "pcm", "pcm"),
                             media_type=PCM_MEDIA_TYPE, headers=PCM_HEADERS)


@router.post("/v1/audio/speech/sse", tags=["speech"],
             responses={200: {"content": {"text/event-stream": {}}}})
async def stream_sse(body: SpeechRequest, request: Request) -> StreamingResponse:
    """Server-Sent Events: `audio` {seq, audio: base64 PCM s16le 24 kHz mono}, `metrics`, `done`, `error`."""
    state = _state(request)
    stream = await _start(state, request, body, "sse")

    async def events() -> AsyncIterator[bytes]:
        seq = 0
        try:
            async with aclosing(state.metrics.observe(stream, "sse")) as chunks:
                async for pcm in chunks:
                    yield _sse("audio", {"seq": seq, "audio": base64.b64encode(pcm).decode(),
                                         "samples": len(pcm) // 2})
                    seq += 1
            yield _sse("metrics", {"request_id": stream.metrics.request_id, **metrics_payload(stream.metrics)})
            yield _sse("done", {"chunks": seq, "request_id": stream.metrics.request_id})
        except Exception as exc:  # noqa: BLE001 - reported to the client as an event
            log.exception("stream %s failed", stream.metrics.request_id)
            yield _sse("error", {"code": ErrorCode.ENGINE_ERROR, "message": str(exc)})

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/health", tags=["info"])
async def health(request: Request) -> JSONResponse:
    """200 only when new streams are taken; 503 with status draining, engine_failed or
    vllm_unreachable (a replica whose remote vLLM server does not answer)."""
    state = _state(request)
    engine = None if state.engine_failed else state.engine
    body = {
        "status": state.status,
        "model_loaded": engine is not None,
        "model": state.settings.model,
        "demo": state.demo,  # random weights: noise, not speech
        "active_streams": engine.active_streams if engine else 0,
        "running_requests": engine.running_requests if engine else 0,
        "stream_limit": state.admission.limit,
        "admitted_streams": state.admission.in_use,
        "queued_streams": state.admission.queued,
        "rtc_listeners": state.rtc.listener_count if state.rtc else 0,
    }
    if state.failure:
        body["error"] = state.failure
    elif state.status == ErrorCode.VLLM_UNREACHABLE:
        body["error"] = state.refusal()[1]
    return JSONResponse(body, status_code=200 if state.ready else 503)


@router.get("/v1/voices", tags=["info"])
async def voices(request: Request) -> dict:
    state = _state(request)
    _refuse_if_unavailable(state)
    catalog = state.engine.voice_catalog
    return {"voices": list(catalog.voices), "default": catalog.default, "aliases": dict(catalog.aliases),
            "tags": list(state.engine.profile.tags)}


@router.get("/metrics", tags=["info"])
async def prometheus_metrics(request: Request) -> Response:
    state = _state(request)
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


__all__ = ["router", "PCM_HEADERS"]
