"""``x-request-id`` on every HTTP response, errors included, as OpenAI sends it.

The OpenAI SDK and LiveKit's OpenAI plugin read it (and log its absence); the same id names the
engine request in the server's logs, so a client's report can be found there.
"""

from __future__ import annotations

import json
import logging
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_plugin.protocol import ErrorCode

from .errors import error_body

HEADER = "x-request-id"
log = logging.getLogger("orpheus.server")


def request_id(connection: HTTPConnection) -> str | None:
    """The id the middleware gave this request (None outside it, e.g. an app built without it)."""
    return connection.scope.get("state", {}).get("request_id")


class RequestIdMiddleware:
    """Outermost middleware: ids each HTTP request and stamps the id on its response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = rid

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if started:
                raise
            # Answered here rather than by Starlette's outer handler: OpenAI's shape, and the id.
            log.exception("request %s failed", rid)
            body = json.dumps(error_body("internal server error", code=ErrorCode.INTERNAL_ERROR, kind="server_error"))
            await send_with_id({"type": "http.response.start", "status": ErrorCode.INTERNAL_ERROR.status,
                                "headers": [(b"content-type", b"application/json")]})
            await send_with_id({"type": "http.response.body", "body": body.encode()})
