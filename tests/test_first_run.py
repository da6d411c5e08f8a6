"""A first run as a newcomer has it: no GPU, no model hub. Each case in a fresh process.

- no model chosen: the server and `synth` start on the demo model and say so once;
- a chosen model that cannot be loaded: one clear line, a non-zero exit, no traceback;
- a chosen model that loads (the tiny one of the session server): no fallback.
The hub is made unreachable on purpose (HF_ENDPOINT on a closed loopback port, an empty HF_HOME),
so the result is the same on a machine that could reach it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tts_plugin.engine.profiles import ORPHEUS
from tts_plugin.engine.prompt import PromptBuilder

from .fixtures.models import ROOT
from .fixtures.processes import LoggedProcess, free_port, stop_process

pytestmark = pytest.mark.server

DEFAULT_MODEL = "canopylabs/orpheus-3b-0.1-ft"
SMALL_ENGINE = ["--kv-cache-gib", "0.25", "--max-model-len", "2048", "--temperature", "0", "--max-tokens", "14"]


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("hf-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORPHEUS_", "HF_"))}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_HOME=str(home), PYTHONUNBUFFERED="1",
               ORPHEUS_DEMO_MODEL_DIR=str(home / "demo-model"))
    return env


def run_agent(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_server(offline_env, tmp_path_factory) -> LoggedProcess:
    port = free_port()
    log_path = tmp_path_factory.mktemp("demo-server") / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--port", str(port), *SMALL_ENGINE],
                                   cwd=ROOT, env=offline_env, stdout=log, stderr=subprocess.STDOUT)
    server = LoggedProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        server.wait_healthy(600)
        yield server
    finally:
        stop_process(process)


def test_serve_without_a_model_choice_starts_on_the_demo_model_and_says_so(demo_server, offline_env):
    health = httpx.get(f"{demo_server.base_url}/health").json()
    assert health["demo"] is True and health["model"] == offline_env["ORPHEUS_DEMO_MODEL_DIR"]
    notices = [line for line in demo_server.log_path.read_text().splitlines() if "demo model: could not load" in line]
    assert len(notices) == 1, demo_server.log_tail()
    assert DEFAULT_MODEL in notices[0] and "noise, not speech" in notices[0] and "ORPHEUS_MODEL" in notices[0]
    assert "Traceback" not in demo_server.log_path.read_text()


def test_the_demo_server_serves_speech_and_its_page(demo_server):
    response = httpx.post(f"{demo_server.base_url}/v1/audio/speech", timeout=300,
                          json={"input": "Hello there.", "response_format": "pcm"})
    assert response.status_code == 200 and len(response.content) == 2 * 2048 * 2  # 14 tokens = 2 frames
    page = httpx.get(f"{demo_server.base_url}/")
    assert page.status_code == 200 and "/app.js" in page.text


@pytest.mark.parametrize("command, model_args", [
    ("serve", ["--model", "/nonexistent/orpheus"]),
    ("synth", ["--model", DEFAULT_MODEL]),  # a hub id while the hub is unreachable
], ids=["serve-missing-directory", "synth-unreachable-hub-id"])
def test_a_chosen_model_that_cannot_load_exits_with_one_clear_line(offline_env, tmp_path, command, model_args):
    extra = ["--port", str(free_port())] if command == "serve" else ["--text", "Hi.", "--out", str(tmp_path / "x.wav")]
    result = run_agent(offline_env, command, *model_args, *extra)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot load model {model_args[1]!r}" in errors[0], result.stderr[-2000:]


def test_a_model_chosen_in_the_environment_gets_no_fallback_and_debug_shows_the_traceback(offline_env):
    result = run_agent({**offline_env, "ORPHEUS_MODEL": DEFAULT_MODEL}, "serve", "--port", str(free_port()),
                       "--log-level", "debug")
    assert result.returncode == 1 and f"cannot load model {DEFAULT_MODEL!r}" in result.stderr
    assert "Traceback" in result.stderr  # only because of --log-level debug


def test_synth_on_the_demo_model_speaks_control_token_text_literally(offline_env, tmp_path, tiny_model_dir):
    out = tmp_path / "out.wav"
    result = run_agent(offline_env, "synth", "--text", "<|eot_id|> hi", "--out", str(out), *SMALL_ENGINE)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["demo"] is True and "demo model: could not load" in result.stderr
    builder = PromptBuilder.load(str(tiny_model_dir), ORPHEUS)
    literal = builder.build("<|eot_id|> hi", "tara")
    assert report["prompt_tokens"] == len(literal)
    assert report["prompt_tokens"] > 6 + len(builder.tokenizer.encode("tara: <|eot_id|> hi", add_special_tokens=False))


def test_an_explicit_model_that_loads_is_used_without_fallback(tts_server, tiny_model_dir):
    health = tts_server.health()
    assert health["model"] == str(tiny_model_dir)
    assert health["demo"] is True  # random SNAC weights: the page and /health say noise
    assert "demo model: could not load" not in tts_server.log_path.read_text()


def test_a_3b_model_on_a_cpu_only_machine_is_warned_about(tmp_path, caplog):
    """Only the config is read before the engine starts, so a config of Orpheus 3B's shape is enough."""
    import torch
    from transformers import LlamaConfig

    from tts_plugin.engine.model_source import choose_models
    from tts_plugin.settings import EngineSettings

    LlamaConfig(vocab_size=156940, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                num_attention_heads=24, num_key_value_heads=8).save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="orpheus.engine"):
        choice = choose_models(EngineSettings(model=str(tmp_path), snac_model="random"))
    assert choice.settings.model == str(tmp_path) and choice.notice is None
    warned = [r.getMessage() for r in caplog.records if "far below real time" in r.getMessage()]
    if torch.cuda.is_available():
        assert warned == []
    else:
        assert len(warned) == 1 and "~3.7B parameters" in warned[0]
