"""How the agent worker turns settings into STT/LLM/VAD components."""

import pytest

from agent.worker import WorkerSettings, load_component


def test_module_factory_specs_are_called_and_plain_ids_pass_through():
    assert load_component(None) is None and load_component("") is None
    assert load_component("openai/gpt-4.1-mini") == "openai/gpt-4.1-mini"  # LiveKit Inference id
    assert load_component("collections:OrderedDict") == {}  # module:factory, called without args
    assert load_component("pathlib:Path.cwd").is_dir()  # dotted attribute path


def test_a_wrong_spec_fails_loudly_at_job_start():
    with pytest.raises(ModuleNotFoundError):
        load_component("no_such_module_here:LLM")
    with pytest.raises(AttributeError):
        load_component("collections:NoSuchFactory")


def test_worker_settings_read_the_orpheus_prefix(monkeypatch):
    monkeypatch.setenv("ORPHEUS_AGENT_LLM", "livekit.plugins.openai:LLM")
    monkeypatch.setenv("ORPHEUS_AGENT_NAME", "orpheus")
    monkeypatch.setenv("ORPHEUS_SERVER_URL", "http://127.0.0.1:8000")
    settings = WorkerSettings()
    assert (settings.agent_llm, settings.agent_name, settings.server_url) == (
        "livekit.plugins.openai:LLM", "orpheus", "http://127.0.0.1:8000")


def test_turn_detection_is_always_explicit_so_nothing_is_looked_up():
    from agent.worker import turn_detection

    settings = WorkerSettings()
    assert turn_detection(settings, stt=None, vad=None) == "manual"  # greeting + chat + keypad only
    assert turn_detection(settings, stt="an-stt", vad=None) == "stt"
    assert turn_detection(settings, stt="an-stt", vad="a-vad") == "vad"
    assert turn_detection(WorkerSettings(agent_turn_detection="realtime_llm"), None, None) == "realtime_llm"
