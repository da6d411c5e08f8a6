"""Headless Chromium in the LiveKit room: web/livekit.html (served by the TTS server, with
livekit-client from web/node_modules) joins with a minted listener token, receives the agent's
Opus audio with energy (getStats), and a message typed in the page comes back as more speech."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest

from agent.server.livekit_token import LiveKitTokenConfig, mint_listener_token

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "browser" / "livekit_room.mjs"


@pytest.fixture(scope="module")
def browser_tools():
    if not Path("/usr/bin/chromium").exists() or not shutil.which("node"):
        pytest.fail("needs /usr/bin/chromium and node (make setup)")
    if not (ROOT / "web" / "node_modules" / "livekit-client").is_dir():
        pytest.fail("needs web/node_modules (make web-deps)")


async def run_page(page_url: str, message: str) -> dict:
    proc = await asyncio.create_subprocess_exec("node", str(SCRIPT), page_url, message, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 900)
    lines = stdout.decode().strip().splitlines()
    assert lines, f"no output from the browser script: {stderr.decode()[-2000:]}"
    return json.loads(lines[-1])


async def test_browser_hears_the_agent_and_its_message_comes_back_as_speech(
        browser_tools, livekit_server, agent_worker, tts_server):
    config = LiveKitTokenConfig(url=livekit_server.url, api_key=livekit_server.api_key,
                                api_secret=livekit_server.api_secret, agent_name=agent_worker.agent_name)
    room = f"browser-{uuid.uuid4().hex[:8]}"
    token = mint_listener_token(config, room=room, identity="browser-listener", ttl_s=300)
    page = f"{tts_server.base_url}/livekit.html?" + urlencode(
        {"url": livekit_server.url, "token": token, "room": room, "autojoin": "1"})

    result = await run_page(page, "Browser says hello.")

    assert result["ok"], result.get("error")
    greeting, after = result["greeting"], result["afterMessage"]
    assert greeting["codec"] == "audio/opus"
    # speech, not just comfort noise: random-weight speech plays at ~-17 dBFS, i.e. an energy of
    # ~0.02 per second of audio; silence packets carry ~1e-10
    assert greeting["packetsReceived"] > 0 and greeting["totalAudioEnergy"] > 1e-3
    assert result["sent"] == 1
    assert after["packetsReceived"] > greeting["packetsReceived"]
    assert after["totalAudioEnergy"] - greeting["totalAudioEnergy"] > 1e-3  # the message, spoken
    assert result["connection"] == "connected"
    assert not result["consoleErrors"], result["consoleErrors"]
