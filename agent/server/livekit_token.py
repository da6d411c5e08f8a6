"""``GET /v1/livekit/token``: short-lived, room-scoped tokens for listeners (the web page).

A listener may join one room, subscribe, and send text (chat text streams ride the data channel);
it may not publish audio or video. When an agent name is configured, the token also dispatches
that agent to the room (explicit dispatch), so opening the page brings the agent in.

Reads the standard ``LIVEKIT_URL``, ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET`` (plus
``LIVEKIT_PUBLIC_URL`` when browsers reach LiveKit at another address, and ``ORPHEUS_AGENT_NAME``).
Include it with ``app.include_router(livekit_token_router())``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_TTL_S = 3600


@dataclass(frozen=True)
class LiveKitTokenConfig:
    url: str | None
    api_key: str | None
    api_secret: str | None
    agent_name: str = ""
    default_ttl_s: int = 300

    @classmethod
    def from_env(cls) -> "LiveKitTokenConfig":
        env = os.environ
        return cls(url=env.get("LIVEKIT_PUBLIC_URL") or env.get("LIVEKIT_URL"),
                   api_key=env.get("LIVEKIT_API_KEY"), api_secret=env.get("LIVEKIT_API_SECRET"),
                   agent_name=env.get("ORPHEUS_AGENT_NAME", ""))

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


def livekit_token_router(config: LiveKitTokenConfig | None = None) -> APIRouter:
    config = config or LiveKitTokenConfig.from_env()
    router = APIRouter(tags=["livekit"])

    @router.get("/v1/livekit/token", response_model=ListenerToken)
    async def listener_token(
        room: str = Query("orpheus", pattern=NAME_PATTERN, description="room to join"),
        identity: str | None = Query(None, pattern=NAME_PATTERN, description="participant identity"),
        ttl: int | None = Query(None, ge=10, le=MAX_TTL_S, description="token lifetime in seconds"),
    ) -> ListenerToken:
        if not config.configured:
            raise HTTPException(503, "LiveKit is not configured: set LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET")
        identity = identity or f"listener-{secrets.token_hex(4)}"
        ttl_s = ttl or config.default_ttl_s
        token = mint_listener_token(config, room=room, identity=identity, ttl_s=ttl_s)
        return ListenerToken(url=config.url, token=token, room=room, identity=identity, expires_in=ttl_s)

    return router
