"""``python -m agent serve [--host 127.0.0.1 --port 8000] [engine flags]``: the long-lived TTS server."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from tts_plugin.engine.model_source import ModelUnavailable, choose_models

from .config import add_server_arguments, server_settings_from_args

log = logging.getLogger("orpheus.server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent serve", description=__doc__)
    add_server_arguments(parser)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        choice = choose_models(server_settings_from_args(args))
    except ModelUnavailable as exc:
        if args.log_level == "debug":
            log.exception("start-up failed")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if choice.notice:
        log.warning(choice.notice)
    from .app import create_app  # imports vLLM and torch: after the models are known to load

    settings = choice.settings
    app = create_app(settings, demo=choice.demo)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level,
                ws_max_size=settings.max_ws_message_bytes, ws_ping_interval=20, ws_ping_timeout=20)
    return 0
