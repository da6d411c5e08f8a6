"""``python -m agent serve [--host 127.0.0.1 --port 8000] [engine flags]``: the long-lived TTS server.

Exit status: 0 after a SIGTERM/SIGINT drain; 1 when the speech engine died (a supervisor restarts it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from tts_plugin.engine.model_source import ModelUnavailable, choose_models

from .config import ServerSettings
from .lifecycle import drain
from .slow_clients import guarded_protocol

if TYPE_CHECKING:  # the state imports the engine (vLLM, torch): not before the models are known to load
    from .state import ServerState

UVICORN_GRACE_S = 3  # after our own drain: bound on sockets whose peers never read the last bytes


class OrpheusServer(uvicorn.Server):
    """uvicorn, with a drain on the first SIGTERM/SIGINT instead of closing connections at once."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state
        self.exit_code = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        state.exit_server = self.exit

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def exit(self, code: int) -> None:
        self.exit_code = max(self.exit_code, code)
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's handler: it re-raises the signal after shutdown, and a re-raised SIGTERM
        # would end the process with -15 instead of 0.
        if self._draining or self.state.engine is None or self._loop is None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            return
        self._draining = True
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(drain(self.state, self.exit), name="drain"))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def refuse_open_server(settings: ServerSettings) -> str | None:
    """Why this configuration must not start (None: it may): no keys on a non-loopback address."""
    if settings.api_keys or settings.allow_no_auth or is_loopback(settings.host):
        return None
    return (f"refusing to serve {settings.host} without API keys: anyone who reaches the port could use it. "
            "Set ORPHEUS_API_KEYS (--api-keys), or pass --allow-no-auth if something in front authenticates.")


log = logging.getLogger("orpheus.server")


def serve(settings: ServerSettings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if reason := refuse_open_server(settings):
        print(f"error: {reason}", file=sys.stderr)
        return 2
    try:
        choice = choose_models(settings)
    except ModelUnavailable as exc:
        if settings.log_level == "debug":
            log.exception("start-up failed")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if choice.notice:
        log.warning(choice.notice)
    from .app import create_app  # imports vLLM and torch: after the models are known to load

    settings = choice.settings
    app = create_app(settings, demo=choice.demo)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            http=guarded_protocol(settings.http_header_timeout_s, settings.socket_send_buffer_bytes),
                            timeout_keep_alive=settings.http_keep_alive_s, ws_max_size=settings.max_ws_message_bytes,
                            ws_ping_interval=settings.ws_ping_interval_s, ws_ping_timeout=settings.ws_ping_interval_s,
                            timeout_graceful_shutdown=UVICORN_GRACE_S)
    server = OrpheusServer(config, app.state.server)
    server.run()
    return server.exit_code
