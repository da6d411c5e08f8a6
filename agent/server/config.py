"""Server settings: the engine's ``EngineSettings`` plus what only the server needs.

Same rule as the engine: every field reads ``ORPHEUS_<NAME>`` and has a ``--kebab-name`` flag
(``python -m agent serve --help`` lists them all).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from tts_plugin.settings import EngineSettings, LogLevel

from .livekit_token import DEFAULT_ROOMS

# token characters a browser accepts in Sec-WebSocket-Protocol, and no separator of a comma list
API_KEY_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
WEB_DIR = Path(__file__).resolve().parents[2] / "web"


class ServerSettings(EngineSettings):
    """
    The long-lived TTS server (HTTP/WebSocket API, WebRTC listener, web page). Every flag is also an
    environment variable: ORPHEUS_ and its name (--snac-model = ORPHEUS_SNAC_MODEL).
    """

    host: str = Field("127.0.0.1", description="address to listen on (another than loopback needs API keys)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    log_level: LogLevel = "info"
    warmup: bool = Field(True, description="one short generation at start-up, before /health says ok")
    max_request_bytes: int = Field(1 << 20, ge=1024, description="largest HTTP request body accepted")
    max_ws_message_bytes: int = Field(1 << 20, ge=1024, description="largest WebSocket message accepted")
    rtc_max_listeners: int = Field(32, ge=1, description="WebRTC listeners at once")
    rtc_prebuffer_ms: int = Field(
        0, ge=0, le=30000,
        description="audio queued before an utterance starts playing (absorbs generation slower than real time)",
    )
    rtc_loopback_candidates: bool = Field(
        True, description="offer 127.0.0.1 ICE candidates too (aioice skips loopback; needed on a loopback-only host)"
    )
    rtc_connect_timeout_s: float = Field(
        20.0, gt=0, le=600, description="a WebRTC listener that has not connected by then (ICE+DTLS) loses its slot"
    )
    stream_limit: int | None = Field(
        None, ge=1, description="speech streams at once, all transports (default: max_streams, the engine's batch)"
    )
    queue_timeout_s: float = Field(
        2.0, ge=0, le=600, description="how long a stream waits for a free slot before it is refused busy (429)"
    )
    drain_grace_s: float = Field(
        10.0, ge=0, le=3600, description="on SIGTERM, how long streams in flight may run before they are ended"
    )
    web_dir: Path = Field(WEB_DIR, description="directory of the listener page")

    # Access
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        [], description="comma-separated API keys; when set, every route but /health and the page needs one "
                        "(Authorization: Bearer KEY)"
    )
    allow_no_auth: bool = Field(False, description="serve a non-loopback host without API keys (refused otherwise)")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        [], description="comma-separated browser origins allowed on the WebSocket and /rtc/offer besides the "
                        "server's own ('*': any)"
    )
    agent_name: str = Field("", description="agent a listener token dispatches to its room (the worker's name)")
    livekit_token_rooms: str = Field(
        DEFAULT_ROOMS, description="regex a listener token's room must match (never call-*)"
    )
    livekit_token_max_ttl_s: int = Field(600, ge=10, le=3600, description="longest listener token lifetime")
    livekit_token_per_minute: int = Field(20, ge=1, description="listener tokens one client address may get a minute")

    # Slow or stalled clients
    http_header_timeout_s: float = Field(
        10.0, gt=0, le=300, description="a connection must send a request's headers within this time (slowloris)"
    )
    http_keep_alive_s: float = Field(5.0, gt=0, le=300, description="idle keep-alive connections close after this")
    send_timeout_s: float = Field(
        10.0, gt=0, le=600,
        description="a stream whose client reads nothing for this long is ended (HTTP) or closed slow_consumer (WebSocket)",
    )
    socket_send_buffer_bytes: int = Field(
        262144, ge=0, description="socket and transport send buffers per connection: bound what a non-reading "
                                  "client can leave queued (0: OS defaults, megabytes)"
    )
    ws_ping_interval_s: float = Field(
        20.0, gt=0, description="WebSocket keepalive: ping this often, close when a pong takes as long"
    )
    ws_max_queued_segments: int = Field(16, ge=1, description="segments waiting on one WebSocket connection")

    @field_validator("api_keys", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _usable_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:  # the key itself never goes into a message
            if len(key.get_secret_value()) < 16 or not API_KEY_CHARS.fullmatch(key.get_secret_value()):
                raise ValueError("each API key needs 16 or more of the characters A-Z a-z 0-9 - . _ ~ "
                                 "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return keys

    @field_validator("livekit_token_rooms")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        re.compile(pattern)
        return pattern
