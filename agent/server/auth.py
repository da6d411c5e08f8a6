"""Who may talk to the server: API keys and browser origins, checked before any route runs.

Keys (``ORPHEUS_API_KEYS``): ``Authorization: Bearer KEY`` on every route but ``/health`` and the
page's static files. Browsers cannot set headers on a WebSocket, so there the key may also come as
a subprotocol, ``new WebSocket(url, ["orpheus", "orpheus-key.KEY"])`` (never in the URL: URLs end up
in access logs). Keys are compared in constant time and never logged or echoed.

Origins: a browser page on another site could drive a local server (its WebSocket and WebRTC offers
are not covered by CORS). Requests that carry an ``Origin`` must come from the server's own origin
or one in ``ORPHEUS_ALLOWED_ORIGINS``; clients that send no ``Origin`` (SDKs, agents) are not
browsers and pass.
"""

from __future__ import annotations

import hmac
import json
import logging
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from tts_plugin.protocol import ErrorCode

from .errors import error_body

log = logging.getLogger("orpheus.server.auth")

KEY_SUBPROTOCOL_PREFIX = "orpheus-key."
PUBLIC_PATHS = {"/health"}
ORIGIN_CHECKED_PATHS = {"/rtc/offer"}  # and every WebSocket


class ApiKeys:
    def __init__(self, keys: list[SecretStr]) -> None:
        self._keys = [k.get_secret_value().encode() for k in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def accepts(self, candidate: str | None) -> bool:
        if candidate is None:
            return False
        given = candidate.encode()
        # compare with every key, so the time taken says nothing about which one (or how much) matched
        return sum(hmac.compare_digest(given, key) for key in self._keys) > 0


def presented_key(scope: Scope) -> str | None:
    """The key a request carries: a Bearer token, or (WebSocket only) an ``orpheus-key.`` subprotocol."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
    if scope["type"] == "websocket":
        for protocol in scope.get("subprotocols", ()):
            if protocol.startswith(KEY_SUBPROTOCOL_PREFIX):
                return protocol[len(KEY_SUBPROTOCOL_PREFIX):]
    return None


def origin_allowed(scope: Scope, allowed: list[str]) -> bool:
    headers = dict(scope["headers"])
    origin = headers.get(b"origin")
    if origin is None:
        return True  # not a browser
    origin_text = origin.decode("latin-1").rstrip("/")
    if "*" in allowed or origin_text in (a.rstrip("/") for a in allowed):
        return True
    host = headers.get(b"host", b"").decode("latin-1").lower()
    return bool(host) and urlsplit(origin_text).netloc.lower() == host  # same origin as the page it served


class AccessGuard:
    """ASGI middleware: 401 without a valid key (when keys are set), 403 for a foreign Origin."""

    def __init__(self, app: ASGIApp, keys: list[SecretStr], allowed_origins: list[str]) -> None:
        self.app = app
        self.keys = ApiKeys(keys)
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if (scope["type"] == "websocket" or scope["path"] in ORIGIN_CHECKED_PATHS) and not origin_allowed(
                scope, self.allowed_origins):
            return await _refuse(scope, send, ErrorCode.ORIGIN_NOT_ALLOWED, "this page's origin may not use the "
                                 "server; add it to ORPHEUS_ALLOWED_ORIGINS")
        if self.keys and _needs_key(scope) and not self.keys.accepts(presented_key(scope)):
            log.info("refused %s %s: no valid API key", scope["type"], scope["path"])
            message = ("Incorrect API key provided." if presented_key(scope) is not None else
                       "You didn't provide an API key: send 'Authorization: Bearer KEY'.")
            return await _refuse(scope, send, ErrorCode.INVALID_API_KEY, message)
        await self.app(scope, receive, send)


def _needs_key(scope: Scope) -> bool:
    """Every API route (and the OpenAPI schema) except /health; the page's static files are public."""
    if scope["path"] in PUBLIC_PATHS:
        return False
    app = scope.get("app")
    if app is None:
        return True
    for route in app.router.routes:
        if isinstance(route, Mount):
            continue
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return True
    return False


async def _refuse(scope: Scope, send: Send, code: ErrorCode, message: str) -> None:
    status = code.status
    body = json.dumps(error_body(message, code=code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if code is ErrorCode.INVALID_API_KEY:
        headers.append((b"www-authenticate", b'Bearer realm="orpheus"'))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):  # a real HTTP answer to the handshake
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": code})
