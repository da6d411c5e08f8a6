"""Server settings: the engine's ``OrpheusSettings`` plus what only the server needs.

Same rule as the engine: every field reads ``ORPHEUS_<NAME>`` and has a ``--kebab-name`` flag.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import Field

from tts_plugin.settings import OrpheusSettings, add_settings_arguments, settings_from_args

WEB_DIR = Path(__file__).resolve().parents[2] / "web"


class ServerSettings(OrpheusSettings):
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


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, ServerSettings)


def server_settings_from_args(args: argparse.Namespace) -> ServerSettings:
    return settings_from_args(args, ServerSettings)
