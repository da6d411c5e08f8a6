"""Plugin plumbing: registration with livekit-agents, backend choice, light imports."""

from __future__ import annotations

import subprocess
import sys

from livekit.agents import Plugin


def test_importing_orpheus_tts_registers_the_plugin_once():
    from tts_plugin import OrpheusTTS, __version__  # noqa: F401

    ours = [p for p in Plugin.registered_plugins if p.package == "tts_plugin"]
    assert len(ours) == 1 and ours[0].version == __version__
    assert ours[0].logger.name == "livekit.plugins.orpheus"


def test_orpheus_server_url_selects_the_server_backend(monkeypatch):
    from tts_plugin import OrpheusTTS
    from tts_plugin.backends.local import EngineBackend
    from tts_plugin.backends.remote import ServerBackend

    monkeypatch.setenv("ORPHEUS_SERVER_URL", "http://127.0.0.1:8000/")
    remote = OrpheusTTS()
    assert isinstance(remote.backend, ServerBackend)
    assert remote.backend.url == "ws://127.0.0.1:8000/v1/audio/speech/stream/ws"
    assert OrpheusTTS(server_url="https://tts.example:8443").backend.url.startswith("wss://tts.example:8443/")
    monkeypatch.delenv("ORPHEUS_SERVER_URL")
    assert isinstance(OrpheusTTS().backend, EngineBackend)  # nothing started until first use
    assert (remote.sample_rate, remote.num_channels, remote.capabilities.streaming) == (24000, 1, True)


def test_engine_and_settings_import_without_livekit_agents():
    code = ("import sys, tts_plugin, tts_plugin.settings, tts_plugin.engine.text; "
            "assert 'livekit.agents' not in sys.modules, 'livekit.agents was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
