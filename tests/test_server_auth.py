"""Who may use the server: API keys (Bearer, the WebSocket subprotocol form), browser origins, the
LiveKit token endpoint's scope, and a non-loopback server without keys refusing to start."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import jwt
import openai
import pytest
import websockets
from livekit import api, rtc
from livekit.agents import APIStatusError

from tests.fixtures.models import ROOT
from tests.fixtures.processes import free_port
from tests.fixtures.secured_server import ALLOWED_ORIGIN, API_KEYS, TOKENS_PER_MINUTE
from tts_plugin import OrpheusTTS

pytestmark = pytest.mark.server

WS_PATH = "/v1/audio/speech/stream/ws"


def assert_openai_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error" and error["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


# ---- HTTP: OpenAI SDK and plain requests

def test_openai_sdk_with_a_key_gets_speech(secured_server):
    client = openai.OpenAI(base_url=f"{secured_server.base_url}/v1", api_key=API_KEYS[0])
    speech = client.audio.speech.create(model="orpheus", voice="tara", input="Hello.", response_format="pcm")
    assert len(speech.content) > 0 and len(speech.content) % 2 == 0


@pytest.mark.parametrize("key", ["wrong-key-0123456789abcdef", API_KEYS[0][:-1], API_KEYS[0] + "x"])
def test_openai_sdk_with_a_wrong_key_is_refused_with_401(secured_server, key):
    client = openai.OpenAI(base_url=f"{secured_server.base_url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.audio.speech.create(model="orpheus", voice="tara", input="Hello.")
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    assert key not in str(refused.value)


@pytest.mark.parametrize("path", ["/v1/voices", "/metrics", "/openapi.json", "/v1/livekit/token"])
@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic dGVzdDp0ZXN0", "Bearer not-a-key-0123456789"])
def test_every_api_route_needs_a_key(secured_server, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    assert_openai_401(httpx.get(f"{secured_server.base_url}{path}", headers=headers, timeout=30))


def test_speech_and_rtc_offer_need_a_key(secured_server):
    for path, body in [("/v1/audio/speech", {"input": "hi"}), ("/v1/audio/speech/stream", {"input": "hi"}),
                       ("/v1/audio/speech/sse", {"input": "hi"}), ("/rtc/offer", {"sdp": "v=0", "type": "offer"})]:
        assert_openai_401(httpx.post(f"{secured_server.base_url}{path}", json=body, timeout=30))


def test_health_and_the_page_are_public(secured_server):
    assert httpx.get(f"{secured_server.base_url}/health", timeout=30).json()["status"] == "ok"
    for page in ["/", "/app.js", "/livekit.html", "/livekit.js"]:
        assert httpx.get(f"{secured_server.base_url}{page}", timeout=30).status_code == 200, page


def test_both_configured_keys_work(secured_server):
    for key in API_KEYS:
        response = httpx.get(f"{secured_server.base_url}/v1/voices", headers={"Authorization": f"Bearer {key}"},
                             timeout=30)
        assert response.status_code == 200 and "tara" in response.json()["voices"]


def test_keys_never_reach_the_log(secured_server):
    httpx.get(f"{secured_server.base_url}/v1/voices", headers={"Authorization": "Bearer guess-0123456789abcdef"})
    log = secured_server.server.log_path.read_text(errors="replace")
    assert "refused" in log  # refusals are logged, without the key
    assert not any(key in log for key in (*API_KEYS, "guess-0123456789abcdef"))


# ---- WebSocket

async def ping(ws) -> dict:
    await ws.send(json.dumps({"type": "ping"}))
    return json.loads(await asyncio.wait_for(ws.recv(), 30))


async def test_websocket_without_a_key_is_refused_with_401(secured_server):
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{secured_server.ws_url}{WS_PATH}"):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_api_key"


async def test_websocket_with_a_bearer_key_works(secured_server):
    async with websockets.connect(f"{secured_server.ws_url}{WS_PATH}", additional_headers=secured_server.auth) as ws:
        assert await ping(ws) == {"type": "pong"}


async def test_websocket_browser_form_key_as_subprotocol_works(secured_server):
    """What a page can do: ``new WebSocket(url, ["orpheus", "orpheus-key." + key])``."""
    async with websockets.connect(f"{secured_server.ws_url}{WS_PATH}",
                                  subprotocols=["orpheus", f"orpheus-key.{API_KEYS[0]}"],
                                  origin=secured_server.base_url) as ws:
        assert ws.subprotocol == "orpheus"  # browsers fail a handshake that picks none of theirs
        assert await ping(ws) == {"type": "pong"}
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{secured_server.ws_url}{WS_PATH}",
                                      subprotocols=["orpheus", "orpheus-key.wrong-0123456789abcdef"]):
            pass
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "null"])
async def test_websocket_from_a_foreign_origin_is_refused_even_with_a_key(secured_server, origin):
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{secured_server.ws_url}{WS_PATH}", additional_headers=secured_server.auth,
                                      origin=origin):
            pass
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["error"]["code"] == "origin_not_allowed"


@pytest.mark.parametrize("origin", ["own", ALLOWED_ORIGIN, None])
async def test_websocket_from_own_or_allowed_origin_or_none_is_accepted(secured_server, origin):
    origin = secured_server.base_url if origin == "own" else origin
    async with websockets.connect(f"{secured_server.ws_url}{WS_PATH}", additional_headers=secured_server.auth,
                                  origin=origin) as ws:
        assert await ping(ws) == {"type": "pong"}


def test_rtc_offer_from_a_foreign_origin_is_refused(secured_server):
    response = httpx.post(f"{secured_server.base_url}/rtc/offer", json={"sdp": "v=0", "type": "offer"},
                          headers={**secured_server.auth, "Origin": "http://evil.example"}, timeout=30)
    assert response.status_code == 403 and response.json()["error"]["code"] == "origin_not_allowed"
    same = httpx.post(f"{secured_server.base_url}/rtc/offer", json={"sdp": "v=0", "type": "offer"},
                      headers={**secured_server.auth, "Origin": secured_server.base_url}, timeout=30)
    assert same.status_code == 400 and same.json()["error"]["code"] == "bad_offer"  # past the guard


# ---- the plugin

async def test_plugin_with_the_key_speaks(secured_server):
    tts = OrpheusTTS(server_url=secured_server.base_url, api_key=API_KEYS[0])
    try:
        frames = [event.frame async for event in tts.synthesize("Hello with a key.")]
    finally:
        await tts.aclose()
    assert sum(f.samples_per_channel for f in frames) > 0


async def test_plugin_reads_the_key_from_orpheus_api_key(secured_server, monkeypatch):
    monkeypatch.setenv("ORPHEUS_SERVER_URL", secured_server.base_url)
    monkeypatch.setenv("ORPHEUS_API_KEY", API_KEYS[1])
    tts = OrpheusTTS()
    try:
        frames = [event.frame async for event in tts.synthesize("Hello from the environment.")]
    finally:
        await tts.aclose()
    assert sum(f.samples_per_channel for f in frames) > 0


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdef"])
async def test_plugin_without_a_valid_key_fails_with_401_and_no_key_in_the_message(secured_server, monkeypatch, key):
    monkeypatch.delenv("ORPHEUS_API_KEY", raising=False)
    tts = OrpheusTTS(server_url=secured_server.base_url, api_key=key)
    try:
        with pytest.raises(APIStatusError) as refused:
            async for _ in tts.synthesize("Hello."):
                pass
    finally:
        await tts.aclose()
    assert refused.value.status_code == 401 and refused.value.retryable is False
    assert "wrong-key" not in str(refused.value)


def test_worker_passes_orpheus_api_key_to_the_plugin(monkeypatch):
    from agent.worker import WorkerSettings, build_tts

    monkeypatch.setenv("ORPHEUS_SERVER_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ORPHEUS_API_KEY", API_KEYS[0])
    settings = WorkerSettings()
    assert API_KEYS[0] not in repr(settings)
    tts = build_tts(settings)
    assert tts.backend._headers == {"Authorization": f"Bearer {API_KEYS[0]}"}


# ---- LiveKit listener tokens

def token(secured_server, **params) -> httpx.Response:
    return httpx.get(f"{secured_server.base_url}/v1/livekit/token", params=params, headers=secured_server.auth,
                     timeout=30)


async def test_listener_token_joins_its_room_with_a_server_chosen_identity_and_cannot_publish(
        secured_server, livekit_server):
    response = token(secured_server, room="orpheus-tokentest")
    assert response.status_code == 200, response.text
    body = response.json()
    claims = api.TokenVerifier(livekit_server.api_key, livekit_server.api_secret).verify(body["token"])
    assert claims.video.room == "orpheus-tokentest" and claims.identity == body["identity"]
    assert body["identity"].startswith("listener-")
    room = rtc.Room()
    try:
        await room.connect(livekit_server.url, body["token"])
        assert room.local_participant.identity == body["identity"]
        assert room.name == "orpheus-tokentest"
        permissions = room.local_participant.permissions
        assert permissions.can_subscribe and permissions.can_publish_data and not permissions.can_publish
        source = rtc.AudioSource(24000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        with pytest.raises(Exception) as refused:  # noqa: B017 - livekit's refusal has no type of its own
            await asyncio.wait_for(room.local_participant.publish_track(track), 20)
        assert not isinstance(refused.value, asyncio.TimeoutError), "publish hung instead of being refused"
    finally:
        await room.disconnect()


@pytest.mark.parametrize("room", ["call-_15551234567", "call-", "demo", "orpheusx", "admin"])
def test_token_endpoint_refuses_rooms_outside_its_pattern_and_phone_calls(secured_server, room):
    response = token(secured_server, room=room)
    assert response.status_code == 403 and response.json()["error"]["code"] == "room_not_allowed", response.text


def test_token_endpoint_refuses_a_client_chosen_identity_and_long_ttl(secured_server):
    taken = token(secured_server, room="orpheus", identity="sip_15551234567")
    assert taken.status_code == 400 and taken.json()["error"]["param"] == "identity"
    too_long = token(secured_server, room="orpheus", ttl=3600)
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "ttl"
    ok = token(secured_server, room="orpheus", ttl=120).json()
    payload = jwt.decode(ok["token"], options={"verify_signature": False})
    assert payload["exp"] - payload["nbf"] == ok["expires_in"] == 120


def test_token_endpoint_is_rate_limited(secured_server):
    statuses = [token(secured_server, room="orpheus").status_code for _ in range(TOKENS_PER_MINUTE + 2)]
    assert 429 in statuses and statuses.count(200) <= TOKENS_PER_MINUTE, statuses
    refused = token(secured_server, room="orpheus")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["code"] == "rate_limited"


# ---- start-up without keys

def serve(*args: str, env_keys: str | None = None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORPHEUS_")}
    if env_keys:
        env["ORPHEUS_API_KEYS"] = env_keys
    return subprocess.run([sys.executable, "-m", "agent", "serve", "--port", str(free_port()), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_non_loopback_host_without_keys_refuses_to_start():
    result = serve("--host", "0.0.0.0")
    assert result.returncode == 2 and "without API keys" in result.stderr and "--allow-no-auth" in result.stderr


def test_weak_api_keys_are_refused_without_echoing_them():
    result = serve("--host", "0.0.0.0", env_keys="short")
    assert result.returncode != 0 and "16 or more" in result.stderr
    assert "'short'" not in result.stderr and "input_value='short'" not in result.stderr


# ---- the page

def test_page_asks_for_the_key_once_on_401_and_connects(secured_server):
    import shutil
    from pathlib import Path

    if not (shutil.which("node") and Path("/usr/bin/chromium").exists()
            and (ROOT / "web" / "node_modules" / "playwright-core").is_dir()):
        pytest.skip("needs node, /usr/bin/chromium and web/node_modules")
    completed = subprocess.run(["node", str(ROOT / "tests" / "browser" / "page_api_key.mjs"),
                                f"{secured_server.base_url}/", API_KEYS[0]],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["ok"], result.get("error")
    assert len(result["prompts"]) == 1 and "API key" in result["prompts"][0]
    assert result["promptsAfterReload"] == 1  # the tab kept the key
    assert "tara" in result["voices"] and result["stored"]
    assert result["consoleErrors"] in ([], [c for c in result["consoleErrors"] if "401" in c])
