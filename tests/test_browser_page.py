"""Headless Chromium (Debian package, driven by npm playwright-core) loads the listener page from the
real server, speaks a sentence over the embedded WebRTC room and proves via getStats() that Opus
audio with energy arrived."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "browser" / "listener_page.mjs"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not (shutil.which("node") and CHROMIUM.exists() and (ROOT / "web" / "node_modules" / "playwright-core").is_dir()),
    reason="needs node, /usr/bin/chromium and web/node_modules (npm install in web/)",
)]


@pytest.fixture(scope="module")
def page_run(tts_server) -> dict:
    completed = subprocess.run(["node", str(SCRIPT), f"{tts_server.base_url}/", "Hello from the browser."],
                               cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["ok"], result.get("error")
    return result


def test_page_loads_voices_and_connects_offline(page_run):
    assert "tara" in page_run["voices"]
    assert page_run["consoleErrors"] == []


def test_page_shows_the_demo_banner_for_a_random_weight_model(page_run, tts_server):
    assert tts_server.health()["demo"] is True  # the session server runs random SNAC weights
    assert "random weights" in page_run["banner"] and "noise, not speech" in page_run["banner"]


def test_page_receives_opus_audio_with_energy_after_speak(page_run):
    before, after = page_run["before"], page_run["after"]
    assert after["codec"] == "audio/opus"
    assert after["packetsReceived"] > before["packetsReceived"]
    assert before["totalAudioEnergy"] == pytest.approx(0.0, abs=1e-6)  # only silence before speaking
    assert after["totalAudioEnergy"] > 0


def test_page_shows_ttfb_and_server_events_in_order(page_run):
    kinds = [event["type"] for event in page_run["events"]]
    assert kinds == ["start", "first_audio", "metrics", "end"]
    assert page_run["events"][-1]["cancelled"] is False
    assert page_run["ui"]["ttfbServer"].endswith("ms")
    assert page_run["ui"]["ttfbHeard"].endswith("ms")  # the level meter saw the audio arrive
    assert page_run["ui"]["error"] == ""
