"""What every adapter shares: start a stream through the core request handling, read its PCM."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from tts_plugin.engine.engine import SpeechStream
from tts_plugin.protocol import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH

from .. import http_api
from ..speech_request import SpeechRequest
from ..state import ServerState

M = TypeVar("M", bound=BaseModel)


def server(request: Request) -> ServerState:
    return request.app.state.server


async def start(request: Request, speech: SpeechRequest, transport: str) -> SpeechStream:
    """The core entry point: readiness, text and voice checks (400 with the reason), admission (429
    busy), metrics label."""
    return await http_api._start(server(request), request, speech, transport)


def pcm_chunks(request: Request, stream: SpeechStream, transport: str) -> AsyncIterator[bytes]:
    return server(request).metrics.observe(stream, transport)


def validated(model: type[M], data: object) -> M:
    """Validate a body read by hand (form data, a query) with the same 400 as a JSON body."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def wav_file(pcm: bytes) -> bytes:
    """A whole WAV file (real sizes in the header) of s16le 24 kHz mono PCM."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(CHANNELS)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)
    return buf.getvalue()
