"""The Orpheus FastAPI server's API (seed 001): ``/api/tts``, ``/api/tts/wav``, ``/api/tts/stream``,
``/api/voices``.

Request ``{"text", "voice", "temperature", "max_tokens", "stream"}``. ``/api/tts`` answers JSON with a
base64 WAV and timings; ``/api/tts/wav`` the WAV with ``X-Processing-Time-Ms``, ``X-TTFA-Ms`` and
``X-Audio-Duration-Seconds`` headers (so it is sent once complete); ``/api/tts/stream`` SSE ``data:``
lines of base64 PCM chunks, then ``{"event": "complete", ...}``.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ConfigDict, Field

from tts_plugin.protocol import SAMPLE_RATE, to_ms

from ..errors import ApiError
from ..speech_request import SamplingFields, SpeechRequest
from .common import pcm_chunks, server, start, wav_file

log = logging.getLogger("orpheus.server.compat")

router = APIRouter(tags=["compat: Orpheus FastAPI"])


class OrpheusFastApiRequest(SamplingFields):
    model_config = ConfigDict(extra="forbid")

    text: str
    voice: str | None = Field(None, description="a name from GET /api/voices; server default when unset")
    stream: bool = Field(True, description="accepted; the answer is the same either way")

    def speech(self) -> SpeechRequest:
        sampling = self.model_dump(include=set(SamplingFields.model_fields), exclude_none=True)
        return SpeechRequest(input=self.text, voice=self.voice, response_format="pcm", **sampling)


async def _whole(request: Request, body: OrpheusFastApiRequest, transport: str) -> tuple[bytes, dict]:
    began = time.perf_counter()
    stream = await start(request, body.speech(), transport)
    async with aclosing(pcm_chunks(request, stream, transport)) as chunks:
        pcm = b"".join([chunk async for chunk in chunks])
    timings = {"duration_seconds": round(len(pcm) / 2 / SAMPLE_RATE, 4),
               "processing_time_ms": to_ms(time.perf_counter() - began), "ttfa_ms": to_ms(stream.metrics.ttfb_s)}
    return pcm, timings


@router.post("/api/tts")
async def tts_json(body: OrpheusFastApiRequest, request: Request) -> dict:
    """``{"audio_base64": <WAV>, "duration_seconds", "sample_rate", "processing_time_ms", "ttfa_ms"}``."""
    pcm, timings = await _whole(request, body, "api_tts")
    return {"audio_base64": base64.b64encode(wav_file(pcm)).decode(), "sample_rate": SAMPLE_RATE, **timings}


@router.post("/api/tts/wav", response_class=Response, responses={200: {"content": {"audio/wav": {}}}})
async def tts_wav(body: OrpheusFastApiRequest, request: Request) -> Response:
    pcm, timings = await _whole(request, body, "api_tts")
    headers = {"X-Processing-Time-Ms": str(timings["processing_time_ms"]),
               "X-TTFA-Ms": str(timings["ttfa_ms"]),
               "X-Audio-Duration-Seconds": str(timings["duration_seconds"])}
    return Response(wav_file(pcm), media_type="audio/wav", headers=headers)


@router.post("/api/tts/stream", responses={200: {"content": {"text/event-stream": {}}}})
async def tts_stream(body: OrpheusFastApiRequest, request: Request) -> StreamingResponse:
    """SSE ``data:`` lines: ``{"chunk", "audio_base64" (PCM s16le 24 kHz), "samples", "duration_ms"[, "ttfa_ms"]}``,
    then ``{"event": "complete", "total_chunks", "total_samples", "total_duration_s", "processing_time_ms"}``."""
    began = time.perf_counter()
    stream = await start(request, body.speech(), "api_tts_stream")

    async def events() -> AsyncIterator[bytes]:
        chunks = samples = 0
        try:
            async with aclosing(pcm_chunks(request, stream, "api_tts_stream")) as audio:
                async for pcm in audio:
                    chunks += 1
                    n = len(pcm) // 2
                    samples += n
                    event = {"chunk": chunks, "audio_base64": base64.b64encode(pcm).decode(), "samples": n,
                             "duration_ms": round(n / SAMPLE_RATE * 1000, 1)}
                    if chunks == 1:
                        event["ttfa_ms"] = to_ms(stream.metrics.ttfb_s)
                    yield _data(event)
            yield _data({"event": "complete", "total_chunks": chunks, "total_samples": samples,
                         "total_duration_s": round(samples / SAMPLE_RATE, 4),
                         "processing_time_ms": to_ms(time.perf_counter() - began)})
        except Exception as exc:  # noqa: BLE001 - headers are gone: report in the stream
            log.exception("stream %s failed", stream.metrics.request_id)
            yield _data({"event": "error", "error": str(exc)})

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _data(event: dict) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


@router.get("/api/voices")
async def voices(request: Request) -> dict:
    """``{"voices": [names], "default", "count"}``."""
    state = server(request)
    if (refusal := state.refusal()) is not None:
        raise ApiError(*refusal)
    names = list(state.engine.voices)
    return {"voices": names, "default": state.engine.default_voice, "count": len(names)}
