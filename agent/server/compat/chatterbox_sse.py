"""The Chatterbox streaming server's SSE API (seed 003): ``POST /synthesize-stream``.

Form fields ``text``, ``temperature`` and Chatterbox's ``exaggeration``, ``cfg_weight``, ``chunk_size``
(accepted at their documented defaults, refused otherwise: see ``foreign``), ``audio_prompt`` (voice
cloning: refused), plus ``voice`` and Orpheus sampling. Events: ``audio_chunk`` {chunk_id, audio_chunk:
base64 WAV of the chunk, sample_rate, metrics}, then ``done`` {message, total_chunks}, or ``error`` {error}.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field
from starlette.datastructures import UploadFile

from tts_plugin.protocol import SAMPLE_RATE, ErrorCode

from ..errors import ApiError
from ..speech_request import SamplingFields, SpeechRequest
from . import foreign
from .common import pcm_chunks, start, validated, wav_file

log = logging.getLogger("orpheus.server.compat")

router = APIRouter(tags=["compat: Chatterbox SSE"])


class SynthesizeForm(SamplingFields):
    # Form fields are text by nature: "0.8" is how a temperature arrives, so parse leniently here.
    model_config = ConfigDict(extra="forbid", strict=False)

    text: str
    voice: str | None = Field(None, description="a name from GET /v1/voices; server default when unset")

    def speech(self) -> SpeechRequest:
        sampling = self.model_dump(include=set(SamplingFields.model_fields), exclude_none=True)
        return SpeechRequest(input=self.text, voice=self.voice, response_format="pcm", **sampling)


@router.post("/synthesize-stream", responses={200: {"content": {"text/event-stream": {}}}})
async def synthesize_stream(request: Request) -> StreamingResponse:
    """Form data in; SSE ``audio_chunk`` / ``done`` / ``error`` events out."""
    form = await request.form()
    if isinstance(form.get("audio_prompt"), UploadFile) or form.get("audio_prompt"):
        raise ApiError(ErrorCode.INVALID_REQUEST, foreign.describe("audio_prompt"), param="audio_prompt")
    fields = foreign.drop_neutral({k: v for k, v in form.items() if k != "audio_prompt"})
    body = validated(SynthesizeForm, fields)
    began = time.perf_counter()
    stream = await start(request, body.speech(), "synthesize_stream")

    async def events() -> AsyncIterator[bytes]:
        chunk_id = samples = 0
        try:
            async with aclosing(pcm_chunks(request, stream, "synthesize_stream")) as chunks:
                async for pcm in chunks:
                    chunk_id += 1
                    samples += len(pcm) // 2
                    m = stream.metrics
                    elapsed = time.perf_counter() - began
                    audio_s = samples / SAMPLE_RATE
                    metrics = {"first_chunk_latency": None if m.ttfb_s is None else round(m.ttfb_s, 4),
                               "total_latency": round(elapsed, 4), "rtf": round(elapsed / audio_s, 4),
                               "total_audio_duration": round(audio_s, 4), "chunks_generated": chunk_id}
                    audio = base64.b64encode(wav_file(pcm)).decode()
                    yield _event("audio_chunk", {"chunk_id": chunk_id, "audio_chunk": audio,
                                                 "sample_rate": SAMPLE_RATE, "metrics": metrics})
            yield _event("done", {"message": "Streaming complete", "total_chunks": chunk_id})
        except Exception as exc:  # noqa: BLE001 - headers are gone: report in the stream
            log.exception("stream %s failed", stream.metrics.request_id)
            yield _event("error", {"error": str(exc)})

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
