"""Settings by layer, sampling knobs declared once, and the command line generated from both.

The README's settings table is parsed here, so the documented names cannot drift from the code.
"""

from __future__ import annotations

import ast
import re
import typing

import pytest
from pydantic import ValidationError

from agent.__main__ import AgentCommands, parse
from agent.phone import PhoneSettings
from agent.server.config import ServerSettings
from agent.server.speech_request import SpeechRequest
from agent.synth import SynthCommand
from agent.worker import WorkerSettings
from tts_plugin.engine.profiles import ORPHEUS
from tts_plugin.models import DEFAULT_VOICE, TTSVoices
from tts_plugin.sampling import SamplingDefaults, SamplingOptions
from tts_plugin.settings import EngineSettings, ServerClientSettings

from .fixtures.models import ROOT

SERVER_ONLY = set(ServerSettings.model_fields) - set(EngineSettings.model_fields)
ORPHEUS_CLASSES = (EngineSettings, ServerSettings, ServerClientSettings, WorkerSettings)


def env_names(settings_cls) -> set[str]:
    prefix = settings_cls.model_config["env_prefix"]
    return {(prefix + name).upper() for name in settings_cls.model_fields}


def readme_table() -> list[tuple[list[str], str]]:
    """(env var names, meaning) per row of the README's settings table; `_X` after a name is ORPHEUS_X."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| setting | default | meaning |"):].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        names_cell, _default, meaning = (cell.strip() for cell in line.strip("|").split(" | ", 2))
        names = ["ORPHEUS" + n if n.startswith("_") else n for n in re.findall(r"`([A-Z_]+)`", names_cell)]
        rows.append((names, meaning))
    return rows


# --- layers -----------------------------------------------------------------------------------

def test_the_engine_settings_carry_nothing_of_the_server_or_its_clients():
    assert {"host", "port", "api_keys", "allowed_origins", "log_level", "drain_grace_s"} <= SERVER_ONLY
    assert not {"host", "port", "api_keys", "server_url", "api_key", "agent_name"} & set(EngineSettings.model_fields)
    assert set(ServerClientSettings.model_fields).isdisjoint(EngineSettings.model_fields)
    assert issubclass(ServerSettings, EngineSettings)  # the server composes engine + its own
    assert issubclass(WorkerSettings, ServerClientSettings) and not issubclass(WorkerSettings, EngineSettings)


def test_every_variable_of_the_readme_table_is_a_field_of_the_class_of_its_layer():
    rows = readme_table()
    assert len(rows) >= 25
    for names, meaning in rows:
        assert names, meaning
        if meaning.startswith("server:"):
            layer = env_names(ServerSettings) - env_names(EngineSettings)
        elif meaning.startswith("plugin and worker:"):
            layer = env_names(ServerClientSettings)
        else:
            layer = env_names(EngineSettings)
        assert set(names) <= layer, (names, meaning)


def test_every_orpheus_variable_the_readme_names_is_read_by_some_settings_class():
    known = set().union(*map(env_names, ORPHEUS_CLASSES), env_names(PhoneSettings))
    named = set(re.findall(r"ORPHEUS_[A-Z][A-Z_]*[A-Z]", (ROOT / "README.md").read_text()))
    assert len(named) > 40 and named <= known, named - known


def reads_environment(node: ast.AST) -> bool:
    """``os.getenv(..)``, ``os.environ.get/items/..``, ``os.environ[..]`` read, ``.. in os.environ``."""
    if isinstance(node, ast.Attribute):
        base = ast.unparse(node.value)
        return (base, node.attr) == ("os", "getenv") or (
            base == "os.environ" and node.attr in {"get", "items", "keys", "values", "copy"})
    if isinstance(node, ast.Subscript):
        return isinstance(node.ctx, ast.Load) and ast.unparse(node.value) == "os.environ"
    if isinstance(node, ast.Compare):
        return any(ast.unparse(c) == "os.environ" for c in node.comparators)
    return False


def test_no_module_reads_the_environment_except_through_settings():
    # Writing os.environ (flags for vLLM) is fine; reading it means a setting nobody declared.
    allowed = {"tts_plugin/engine/snake_kernel.py",  # XDG_CACHE_HOME and CC: any C build's cache and compiler
               "agent/phone.py"}  # hands the environment on to its child processes, minus LiveKit's credentials
    readers = {str(path.relative_to(ROOT))
               for path in [*ROOT.glob("agent/**/*.py"), *ROOT.glob("tts_plugin/**/*.py")]
               if any(map(reads_environment, ast.walk(ast.parse(path.read_text()))))}
    assert readers <= allowed, sorted(readers - allowed)


# --- sampling, declared once -------------------------------------------------------------------

def test_sampling_knobs_are_one_declaration_shared_by_settings_requests_and_plugin():
    from tts_plugin.backends.base import SpeakOptions

    knobs = set(SamplingDefaults.model_fields)
    assert knobs == {"temperature", "top_p", "repetition_penalty", "max_tokens", "seed"}
    assert set(SamplingOptions.model_fields) == knobs
    assert issubclass(EngineSettings, SamplingDefaults) and issubclass(SpeechRequest, SamplingOptions)
    assert SpeakOptions.__dataclass_fields__["sampling_options"].type in ("SamplingOptions", SamplingOptions)
    for name, field in SamplingOptions.model_fields.items():
        assert field.default is None and field.metadata == SamplingDefaults.model_fields[name].metadata


@pytest.mark.parametrize("bad", [{"temperature": 2.5}, {"top_p": 0.0}, {"repetition_penalty": 0.9},
                                 {"max_tokens": 6}, {"max_tokens": 65537}, {"seed": -1}])
def test_a_bad_sampling_value_is_refused_alike_as_setting_request_and_plugin_option(bad):
    from tts_plugin import OrpheusTTS

    (name, value), = bad.items()
    messages = []
    for build in (lambda: EngineSettings(**bad), lambda: SamplingOptions(**bad),
                  lambda: SpeechRequest(input="hi", **bad)):
        with pytest.raises(ValidationError) as caught:
            build()
        (error,) = caught.value.errors()
        assert error["loc"] == (name,)
        messages.append(error["msg"])
    assert len(set(messages)) == 1
    with pytest.raises(ValueError, match=name):
        OrpheusTTS(server_url="http://127.0.0.1:9", **bad)


def test_resolved_options_take_the_engine_defaults_for_unset_knobs():
    defaults = EngineSettings(temperature=0.3, max_tokens=700, seed=5)
    resolved = SamplingOptions(temperature=0.0).resolved(defaults)
    assert resolved == SamplingOptions(temperature=0.0, top_p=0.8, repetition_penalty=1.1, max_tokens=700, seed=5)


def test_plugin_options_refuse_unknown_knobs_and_none_restores_the_engine_default():
    from tts_plugin import OrpheusTTS

    with pytest.raises(ValueError, match="tempreature"):
        OrpheusTTS(server_url="http://127.0.0.1:9", tempreature=0.5)
    tts = OrpheusTTS(server_url="http://127.0.0.1:9", temperature=0.5, seed=3)
    tts.update_options(temperature=None, top_p=0.9)
    assert tts._opts.sampling() == {"top_p": 0.9, "seed": 3}
    with pytest.raises(ValueError, match="top_k"):
        tts.update_options(top_k=5)
    assert tts._opts.sampling() == {"top_p": 0.9, "seed": 3}  # a refused change leaves the options as they were


# --- voices, declared once ---------------------------------------------------------------------

def test_the_plugin_voice_names_come_from_the_profile():
    assert typing.get_args(TTSVoices) == ORPHEUS.voices and DEFAULT_VOICE == ORPHEUS.default_voice


# --- the command line --------------------------------------------------------------------------

def test_the_documented_flags_parse_into_the_server_settings(monkeypatch):
    monkeypatch.setenv("ORPHEUS_PORT", "9000")
    monkeypatch.setenv("ORPHEUS_MAX_STREAMS", "3")
    serve = parse(["serve", "--model", "/m", "--snac-model", "random", "--kv-cache-gib", "0.25", "--log-level",
                   "debug", "--host", "0.0.0.0", "--port", "8001", "--vllm-url", "http://llm:8000",
                   "--allow-no-auth", "--no-warmup", "--api-keys", "a" * 16 + "," + "b" * 16,
                   "--voice-aliases", '{"robot": "zac"}', "--temperature", "0"]).serve
    assert isinstance(serve, ServerSettings)
    assert (serve.model, serve.snac_model, serve.kv_cache_gib, serve.log_level, serve.host, serve.port) == (
        "/m", "random", 0.25, "debug", "0.0.0.0", 8001)  # the flag wins over ORPHEUS_PORT
    assert (serve.vllm_url, serve.allow_no_auth, serve.warmup, serve.temperature) == ("http://llm:8000", True, False, 0.0)
    assert [k.get_secret_value() for k in serve.api_keys] == ["a" * 16, "b" * 16]
    assert serve.voice_aliases == {"robot": "zac"} and serve.max_streams == 3  # unflagged: the environment's
    assert "port" in serve.model_fields_set and "tokenizer" not in serve.model_fields_set  # "chosen" stays exact


def test_synth_and_make_test_model_keep_their_arguments(tmp_path):
    synth = parse(["synth", "--text", "Hi.", "--out", str(tmp_path / "x.wav"), "--voice", "zoe"]).synth
    assert isinstance(synth, SynthCommand) and (synth.text, synth.out, synth.voice) == ("Hi.", tmp_path / "x.wav", "zoe")
    make = parse(["make-test-model", str(tmp_path / "m"), "--seed", "3"]).make_test_model
    assert (make.dir, make.seed) == (tmp_path / "m", 3)


@pytest.mark.parametrize("command, settings_cls", [("serve", ServerSettings), ("synth", SynthCommand),
                                                   ("phone", PhoneSettings)])
def test_help_lists_every_setting(command, settings_cls, capsys):
    with pytest.raises(SystemExit) as exited:
        parse([command, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for name, field in settings_cls.model_fields.items():
        assert f"--{name.replace('_', '-')}" in shown, name
        if field.annotation is bool:
            assert f"--no-{name.replace('_', '-')}" in shown, name


def test_every_command_of_the_top_level_help_is_a_subcommand_or_livekit_s(capsys):
    from agent.__main__ import WORKER_COMMANDS

    with pytest.raises(SystemExit):
        parse(["--help"])
    shown = capsys.readouterr().out
    assert "{serve,synth,make-test-model,phone}" in shown and set(AgentCommands.model_fields) == {
        "serve", "synth", "make_test_model", "phone"}
    assert {"dev", "start", "console", "connect"} <= WORKER_COMMANDS and "dev|start|console|connect" in shown


def test_a_bad_value_is_one_line_naming_the_setting_and_never_echoing_it(monkeypatch, capsys):
    from agent.__main__ import main

    monkeypatch.setattr("agent.server.main.serve", lambda settings: pytest.fail("a bad key was accepted"))
    monkeypatch.setenv("ORPHEUS_API_KEYS", "short-secret")  # under 16 characters
    assert main(["serve", "--port", "8001"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid settings: serve.api_keys:") and "short-secret" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_listener_token_route_reads_livekit_s_variables_through_settings(monkeypatch):
    from agent.server.livekit_token import LiveKitTokenConfig

    monkeypatch.setenv("LIVEKIT_URL", "ws://livekit:7880")
    monkeypatch.setenv("LIVEKIT_API_KEY", "orpheus-dev")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "s" * 32)
    monkeypatch.delenv("LIVEKIT_PUBLIC_URL", raising=False)
    config = LiveKitTokenConfig.from_env(agent_name="orpheus")
    assert config.configured and (config.url, config.api_secret, config.agent_name) == (
        "ws://livekit:7880", "s" * 32, "orpheus")
    monkeypatch.setenv("LIVEKIT_PUBLIC_URL", "wss://public.example")
    assert LiveKitTokenConfig.from_env().url == "wss://public.example"  # what browsers reach wins
    monkeypatch.setenv("ORPHEUS_AGENT_NAME", "from-env")
    assert parse(["serve"]).serve.agent_name == "from-env"  # the server's own setting, not an os.environ read
