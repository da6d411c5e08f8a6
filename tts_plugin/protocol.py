"""The TTS server's wire protocol, shared by the server (``agent/server``) and the plugin's client
(``backends/remote.py``): the WebSocket path, message types, audio format, error codes, and the
metrics payload. Standard library only, so the engine, the server and the plugin can all import it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine.engine import SpeechMetrics

WS_PATH = "/v1/audio/speech/stream/ws"

# The audio every route sends: what SNAC decodes, signed 16-bit little-endian mono.
SAMPLE_RATE = 24000
CHANNELS = 1
SAMPLE_WIDTH = 2  # bytes per sample
PCM_FORMAT = "pcm_s16le"


class ClientMessage(StrEnum):
    """``type`` of the client's JSON messages (WebSocket, and the WebRTC data channel)."""

    SPEAK = "speak"
    CANCEL = "cancel"  # WebSocket: one segment
    STOP = "stop"  # data channel: the utterance playing
    PING = "ping"


class ServerMessage(StrEnum):
    """``type`` of the server's JSON messages; PCM goes in binary frames between START and END."""

    START = "start"
    FIRST_AUDIO = "first_audio"  # data channel
    METRICS = "metrics"
    END = "end"
    ERROR = "error"
    PONG = "pong"
    NO_OP = "no_op"  # orpheus-streaming shape: empty input


class ErrorCode(StrEnum):
    """Every ``code`` the server sends (HTTP ``error.code``; WebSocket and data channel ``error``),
    with its HTTP status, whether a client may retry it, and what it means. Retryable codes follow
    livekit-agents' rule: a 4xx other than 408/429 is the request's fault and never retried."""

    status: int
    retryable: bool
    meaning: str

    def __new__(cls, code: str, status: int, retryable: bool, meaning: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status, member.retryable, member.meaning = status, retryable, meaning
        return member

    # the request is at fault
    BAD_REQUEST = "bad_request", 400, False, "invalid request or message; the message says what"
    INVALID_REQUEST = "invalid_request", 400, False, "HTTP: the text, voice or a parameter is refused"
    BAD_JSON = "bad_json", 400, False, "malformed JSON"
    UNKNOWN_TYPE = "unknown_type", 400, False, "a message type this socket does not know"
    BAD_OFFER = "bad_offer", 400, False, "WebRTC: the SDP offer cannot be answered"
    INVALID_API_KEY = "invalid_api_key", 401, False, "no API key, or not one of ORPHEUS_API_KEYS"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed", 403, False, "a browser page of a foreign origin"
    ROOM_NOT_ALLOWED = "room_not_allowed", 403, False, "no listener tokens for this room"
    UNKNOWN_SEGMENT = "unknown_segment", 404, False, "cancel of a segment id this socket never had"
    CLOSING = "closing", 409, False, "speech after continue:false; the socket closes once queued speech is spoken"
    TOO_LARGE = "too_large", 413, False, "body, message or segment text over the server's limit"
    # the server cannot take it now: retry
    SLOW_CONSUMER = "slow_consumer", 408, True, "the client read nothing for ORPHEUS_SEND_TIMEOUT_S; socket closed"
    BUSY = "busy", 429, True, "every stream slot stayed taken for the queue wait"
    TOO_MANY_SEGMENTS = "too_many_segments", 429, True, "too many segments already wait on this socket"
    RATE_LIMITED = "rate_limited", 429, True, "too many listener tokens from this address"
    INTERNAL_ERROR = "internal_error", 500, True, "a fault of the server's own"
    ENGINE_ERROR = "engine_error", 500, True, "the generation of this stream failed"
    NOT_READY = "not_ready", 503, True, "the speech engine is not running (the server is starting or stopping)"
    DRAINING = "draining", 503, True, "the server is shutting down and takes no new streams"
    SHUTTING_DOWN = "shutting_down", 503, True, "the server shut down while this segment ran; it was ended"
    ENGINE_FAILED = "engine_failed", 503, True, "the engine died; the server is restarting"
    VLLM_UNREACHABLE = "vllm_unreachable", 503, True, "a replica's remote vLLM server does not answer; retry (another replica)"

    @property
    def closes_connection(self) -> bool:
        """The server closes the socket after this error: to a client, the connection is lost."""
        return self is ErrorCode.SLOW_CONSUMER


def framework_error_code(status: int) -> str:
    """``http_<status>``: an error the web framework raises itself (404 no such route, 405 ...)."""
    return f"http_{status}"


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def metrics_payload(m: SpeechMetrics) -> dict:
    """What the server reports of a finished stream (SSE, WebSocket and data channel ``metrics``)."""
    return {
        "ttfb_ms": to_ms(m.ttfb_s),
        "audio_s": round(m.audio_s, 4),
        "elapsed_s": round(m.elapsed_s, 4),
        "rtf": None if m.rtf is None else round(m.rtf, 4),
        "tokens": m.tokens,
        "prompt_tokens": m.prompt_tokens,
        "sentences": m.sentences,
        "invalid_tokens": m.invalid_tokens,
    }
