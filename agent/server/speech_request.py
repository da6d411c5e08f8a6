"""The speech request body shared by the HTTP endpoints (OpenAI's shape plus Orpheus sampling).

Unknown fields are rejected (a typo must not be silently ignored). Fields OpenAI has and we cannot
honour are accepted only at their neutral value, else rejected with the reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, ConfigDict, Field, field_validator

from tts_plugin.engine.engine import OrpheusEngine, SpeechStream
from tts_plugin.sampling import SamplingOptions

from .audio_formats import RESPONSE_FORMATS


class SamplingFields(SamplingOptions):
    """Orpheus sampling options, flat in every request body (HTTP, WebSocket, data channel);
    with the OpenAI SDK send them through ``extra_body``. Names and ranges: ``SamplingOptions``."""

    # strict: `max_tokens: true` or `"0.5"` are mistakes, not 1 and 0.5; not frozen: request bodies
    model_config = ConfigDict(strict=True, frozen=False)

    def sampling(self) -> SamplingOptions:
        return SamplingOptions(**self.model_dump(include=set(SamplingOptions.model_fields)))


class SpeechRequest(SamplingFields):

    model: str = Field("orpheus", max_length=200, description="accepted for OpenAI compatibility; one model is served")
    input: str = Field(..., validation_alias=AliasChoices("input", "text"),
                       description="text to speak (emotion tags like <laugh> allowed); `text` is accepted too "
                                   "(the orpheus-streaming and Spark TTS servers' name)")
    voice: str | None = Field(None, max_length=64, description="a name from GET /v1/voices; server default when unset")
    response_format: Literal[RESPONSE_FORMATS] = Field("wav", description="pcm is s16le 24 kHz mono")  # type: ignore[valid-type]
    speed: float | None = Field(None, ge=0.25, le=4.0, description="only 1.0 is supported")
    instructions: str | None = Field(None, description="not supported: must be empty")
    stream_format: Literal["audio", "sse"] = Field("audio", description="'sse': OpenAI speech.audio.delta events")

    @field_validator("speed")
    @classmethod
    def _speed_is_neutral(cls, speed: float | None) -> float | None:
        if speed is not None and speed != 1.0:
            raise ValueError("speed is not supported by this model; omit it or send 1.0")
        return speed

    @field_validator("instructions")
    @classmethod
    def _no_instructions(cls, instructions: str | None) -> str | None:
        if instructions:
            raise ValueError("instructions are not supported; use emotion tags such as <laugh> in the input")
        return instructions

    def start(self, engine: OrpheusEngine, request_id: str | None = None) -> SpeechStream:
        """Validate against the engine (text, voice) and return the stream; raises ValueError."""
        return engine.synthesize(self.input, voice=self.voice, options=self.sampling(), request_id=request_id)
