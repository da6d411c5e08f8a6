"""GET /v1/livekit/token: what a listener token allows, verified by decoding it with the secret."""

from __future__ import annotations

import httpx
import jwt
from fastapi import FastAPI
from livekit import api

from agent.server.errors import install_error_handlers
from agent.server.livekit_token import LiveKitTokenConfig, livekit_token_router

CONFIG = LiveKitTokenConfig(url="ws://127.0.0.1:7880", api_key="orpheus-dev",
                            api_secret="orpheus-local-development-secret-0123456789", agent_name="orpheus")


def client(config: LiveKitTokenConfig) -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(livekit_token_router(config))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_listener_token_joins_one_room_subscribes_and_sends_text_but_cannot_publish_media():
    async with client(CONFIG) as http:
        response = await http.get("/v1/livekit/token", params={"room": "orpheus-demo"})
    assert response.status_code == 200
    body = response.json()
    assert body["url"] == CONFIG.url and body["room"] == "orpheus-demo"
    claims = api.TokenVerifier(CONFIG.api_key, CONFIG.api_secret).verify(body["token"])
    grants = claims.video
    assert grants.room_join and grants.room == "orpheus-demo"
    assert grants.can_subscribe and grants.can_publish_data
    assert grants.can_publish is False and not grants.room_admin and not grants.room_create
    assert claims.identity == body["identity"]
    # the agent comes with the room (explicit dispatch by name)
    assert [a.agent_name for a in claims.room_config.agents] == ["orpheus"]


async def test_listener_token_is_short_lived():
    async with client(CONFIG) as http:
        default = (await http.get("/v1/livekit/token")).json()
        too_long = await http.get("/v1/livekit/token", params={"ttl": 86400})
    payload = jwt.decode(default["token"], options={"verify_signature": False})
    assert payload["exp"] - payload["nbf"] == default["expires_in"] <= 600
    assert too_long.status_code >= 400


async def test_each_listener_gets_its_own_identity_chosen_by_the_server():
    async with client(CONFIG) as http:
        first, second = [(await http.get("/v1/livekit/token")).json()["identity"] for _ in range(2)]
        chosen = await http.get("/v1/livekit/token", params={"identity": "sip_15551234567"})
    assert first != second and first.startswith("listener-")
    assert chosen.status_code == 400


async def test_tokens_only_for_rooms_of_the_pattern_never_phone_calls():
    open_pattern = LiveKitTokenConfig(url=CONFIG.url, api_key=CONFIG.api_key, api_secret=CONFIG.api_secret,
                                      room_pattern=".*")
    async with client(CONFIG) as http:
        assert (await http.get("/v1/livekit/token", params={"room": "demo"})).status_code == 403
    async with client(open_pattern) as http:
        assert (await http.get("/v1/livekit/token", params={"room": "demo"})).status_code == 200
        assert (await http.get("/v1/livekit/token", params={"room": "call-_15551234567"})).status_code == 403


async def test_tokens_are_rate_limited_per_client():
    limited = LiveKitTokenConfig(url=CONFIG.url, api_key=CONFIG.api_key, api_secret=CONFIG.api_secret, per_minute=3)
    async with client(limited) as http:
        statuses = [(await http.get("/v1/livekit/token")).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


async def test_room_names_outside_the_safe_alphabet_are_refused():
    async with client(CONFIG) as http:
        response = await http.get("/v1/livekit/token", params={"room": "../admin room"})
    assert 400 <= response.status_code < 500


async def test_without_livekit_settings_the_endpoint_says_unavailable():
    async with client(LiveKitTokenConfig(url=None, api_key=None, api_secret=None)) as http:
        response = await http.get("/v1/livekit/token")
    assert response.status_code == 503
