"""``GET /v1/livekit/token``: short-lived, room-scoped tokens for listeners (the web page).

A listener may join one room, subscribe, and send text (chat text streams ride the data channel);
it may not publish audio or video. When an agent name is configured, the token also dispatches
that agent to the room (explicit dispatch), so opening the page brings the agent in.

Scope: only rooms matching ``room_pattern`` (the page's rooms by default); phone calls' rooms
(``call-*``) never, whatever the pattern. The server picks the identity, so nobody can take an
existing participant's (LiveKit would disconnect that one). Lifetimes are bounded, and each client
address gets at most ``per_minute`` tokens a minute. The route sits behind the API key like every
other (see ``auth.py``).

Reads the standard ``LIVEKIT_URL``, ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET`` (plus
``LIVEKIT_PUBLIC_URL`` when browsers reach LiveKit at another address) through ``LiveKitSettings``.
Include it with ``app.include_router(livekit_token_router())``.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tts_plugin.protocol import ErrorCode

from .errors import ApiError

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_TTL_S = 3600
DEFAULT_ROOMS = r"orpheus(-[A-Za-z0-9_]{1,48})?"
PHONE_ROOM_PREFIX = "call-"  # sip/dispatch-rule.json: one room per caller


class LiveKitSettings(BaseSettings):
    """LiveKit's own variables (the names every LiveKit tool reads), not ORPHEUS_ ones."""

    model_config = SettingsConfigDict(env_prefix="LIVEKIT_", extra="ignore")

    url: str | None = None
    public_url: str | None = None  # where browsers reach LiveKit, when not at url
    api_key: str | None = None
    api_secret: SecretStr | None = None


@dataclass(frozen=True)
class LiveKitTokenConfig:
    url: str | None
    api_key: str | None
    api_secret: str | None
    agent_name: str = ""
    default_ttl_s: int = 300
    max_ttl_s: int = 600
    room_pattern: str = DEFAULT_ROOMS
    per_minute: int = 20

    @classmethod
    def from_env(cls, livekit: LiveKitSettings | None = None, **scope) -> LiveKitTokenConfig:
        """``livekit``: LiveKit's variables (read now when None); ``scope``: the server's settings."""
        livekit = livekit or LiveKitSettings()
        secret = livekit.api_secret.get_secret_value() if livekit.api_secret else None
        return cls(url=livekit.public_url or livekit.url, api_key=livekit.api_key, api_secret=secret, **scope)

    @property
    def configured(self) -> bool:
        return bool(self.url and self.api_key and self.api_secret)


class ListenerToken(BaseModel):
    url: str  # where the browser connects (LiveKit signalling)
    token: str
    room: str
    identity: str
    expires_in: int  # seconds; enough to join (a connected participant's token is refreshed by LiveKit)


def mint_listener_token(config: LiveKitTokenConfig, *, room: str, identity: str, ttl_s: int) -> str:
    from livekit import api

    grants = api.VideoGrants(
        room_join=True,
        room=room,
        can_subscribe=True,
        can_publish=False,  # no microphone, camera or screen: the server refuses such tracks
        can_publish_data=True,  # chat text streams
        can_update_own_metadata=False,
        room_create=False,  # a join still auto-creates the room (livekit.yaml room.auto_create)
    )
    token = (api.AccessToken(config.api_key, config.api_secret)
             .with_identity(identity)
             .with_name(identity)
             .with_kind("standard")
             .with_ttl(timedelta(seconds=ttl_s))
             .with_grants(grants))
    if config.agent_name:
        token = token.with_room_config(
            api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=config.agent_name)]))
    return token.to_jwt()


class RateLimit:
    """At most ``per_minute`` events per key in any 60 s window (a sliding log per client address)."""

    def __init__(self, per_minute: int, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.per_minute, self.window_s, self.max_clients = per_minute, window_s, max_clients
        self._events: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float | None:
        """None: allowed (and counted); else seconds until the next one would be."""
        now = time.monotonic()
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self.max_clients:
                self._forget_idle(now)
            events = self._events[key] = deque()
        while events and now - events[0] >= self.window_s:
            events.popleft()
        if len(events) >= self.per_minute:
            return self.window_s - (now - events[0])
        events.append(now)
        return None

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, ev in self._events.items() if not ev or now - ev[-1] >= self.window_s]:
            del self._events[key]


def livekit_token_router(config: LiveKitTokenConfig | None = None) -> APIRouter:
    config = config or LiveKitTokenConfig.from_env()
    rooms = re.compile(config.room_pattern)
    limit = RateLimit(config.per_minute)
    router = APIRouter(tags=["livekit"])

    @router.get("/v1/livekit/token", response_model=ListenerToken)
    async def listener_token(
        request: Request,
        room: str = Query("orpheus", pattern=NAME_PATTERN, description="room to join"),
        identity: str | None = Query(None, description="not accepted: the server picks the identity"),
        ttl: int | None = Query(None, ge=10, le=MAX_TTL_S, description="token lifetime in seconds"),
    ) -> ListenerToken:
        if not config.configured:
            raise HTTPException(503, "LiveKit is not configured: set LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET")
        if identity is not None:
            raise ApiError(ErrorCode.INVALID_REQUEST, "identity is chosen by the server; leave it out", param="identity")
        if room.startswith(PHONE_ROOM_PREFIX) or not rooms.fullmatch(room):
            raise ApiError(ErrorCode.ROOM_NOT_ALLOWED, f"no listener tokens for room {room!r}", param="room")
        if ttl is not None and ttl > config.max_ttl_s:
            raise ApiError(ErrorCode.INVALID_REQUEST, f"ttl: at most {config.max_ttl_s} seconds", param="ttl")
        client = request.client.host if request.client else "unknown"
        if (wait_s := limit.retry_after(client)) is not None:
            raise ApiError(ErrorCode.RATE_LIMITED, f"too many tokens from this address; retry in {math.ceil(wait_s)} s",
                           headers={"Retry-After": str(math.ceil(wait_s))})
        identity = f"listener-{secrets.token_hex(6)}"
        ttl_s = min(ttl or config.default_ttl_s, config.max_ttl_s)
        token = mint_listener_token(config, room=room, identity=identity, ttl_s=ttl_s)
        return ListenerToken(url=config.url, token=token, room=room, identity=identity, expires_in=ttl_s)

    return router
