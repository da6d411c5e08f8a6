"""``python -m agent serve [--host 127.0.0.1 --port 8000] [engine flags]``: the long-lived TTS server."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

import uvicorn
from pydantic import ValidationError

from .app import create_app
from .config import ServerSettings, add_server_arguments, server_settings_from_args
from .slow_clients import guarded_protocol


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent serve", description=__doc__)
    add_server_arguments(parser)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = server_settings_from_args(args)
    except ValidationError as exc:  # one line per problem; never the input (it may be a key)
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return 2
    if reason := refuse_open_server(settings):
        print(f"error: {reason}", file=sys.stderr)
        return 2
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level,
                http=guarded_protocol(settings.http_header_timeout_s, settings.socket_send_buffer_bytes),
                timeout_keep_alive=settings.http_keep_alive_s,  # type: ignore[arg-type]
                ws_max_size=settings.max_ws_message_bytes, ws_ping_interval=settings.ws_ping_interval_s, ws_ping_timeout=settings.ws_ping_interval_s)
    return 0
