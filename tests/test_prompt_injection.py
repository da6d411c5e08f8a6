"""Client text reaches the model as plain text through every door: the engine, HTTP and WebSocket.

The unit tests in test_prompt.py prove the builder never makes a control id from text; these prove
each transport hands the text to that builder untouched (the ids vLLM got, the prompt size each
API reports) and speaks it, and that OpenAI's voice names work over the wire.
"""

from __future__ import annotations

import json

import httpx
import pytest
import websockets

from tts_plugin.engine.generator import SamplingOptions
from tts_plugin.engine.profiles import FIRST_CONTROL_ID, ORPHEUS
from tts_plugin.engine.prompt import PromptBuilder
from tts_plugin.engine.text import split_sentences, validate

from .test_prompt import HOSTILE_TEXTS


@pytest.fixture(scope="module")
def builder(tiny_model_dir) -> PromptBuilder:
    return PromptBuilder.load(str(tiny_model_dir), ORPHEUS)


def plain_prompt_size(builder: PromptBuilder, text: str, voice: str = "tara") -> int:
    """Prompt ids the engine should send for ``text``, sentence by sentence."""
    return sum(len(builder.build(s, voice)) for s in split_sentences(validate(text, 4000)))


def parsed_prompt_size(builder: PromptBuilder, text: str, voice: str = "tara") -> int:
    """What a tokenizer that parses special tokens in the text would have sent: must differ."""
    tok = builder.tokenizer
    return sum(6 + len(tok.encode(f"{voice}: {s}", add_special_tokens=False)) for s in split_sentences(validate(text, 4000)))


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
async def test_engine_sends_vllm_no_control_token_from_text(engine, monkeypatch, text):
    prompts: list[list[int]] = []
    generate = engine.generator.generate

    def spy(prompt_ids, options, request_id=None):
        prompts.append(list(prompt_ids))
        return generate(prompt_ids, options, request_id)

    monkeypatch.setattr(engine.generator, "generate", spy)
    stream = engine.synthesize(text, voice="tara", options=SamplingOptions(temperature=0.0, max_tokens=7))
    audio = b"".join([chunk async for chunk in stream])
    assert audio and prompts
    for ids in prompts:
        assert ids[:2] == [128259, 128000] and ids[-4:] == [128009, 128260, 128261, 128257]
        assert max(ids[2:-4]) < FIRST_CONTROL_ID


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_http_speaks_hostile_text_literally(tts_server, builder, text):
    body = {"model": "orpheus", "input": text, "voice": "tara", "response_format": "pcm", "stream_format": "sse",
            "max_tokens": 7}
    with httpx.stream("POST", f"{tts_server.base_url}/v1/audio/speech", json=body, timeout=300) as response:
        assert response.status_code == 200
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert any(e["type"] == "speech.audio.delta" for e in events)
    usage = events[-1]["usage"]
    assert events[-1]["type"] == "speech.audio.done"
    assert usage["input_tokens"] == plain_prompt_size(builder, text)
    if "|" in text or "<custom_token_" in text:
        assert usage["input_tokens"] != parsed_prompt_size(builder, text)


async def test_websocket_speaks_hostile_text_literally(tts_server, builder):
    async with websockets.connect(f"{tts_server.ws_url}/v1/audio/speech/stream/ws") as ws:
        for index, text in enumerate(HOSTILE_TEXTS):
            await ws.send(json.dumps({"type": "speak", "segment_id": f"s{index}", "text": text, "max_tokens": 7}))
        metrics, audio = {}, 0
        while len(metrics) < len(HOSTILE_TEXTS):
            message = await ws.recv()
            if isinstance(message, bytes):
                audio += len(message)
                continue
            event = json.loads(message)
            assert event["type"] != "error", event
            if event["type"] == "metrics":
                metrics[event["segment_id"]] = event
    assert audio > 0
    for index, text in enumerate(HOSTILE_TEXTS):
        assert metrics[f"s{index}"]["prompt_tokens"] == plain_prompt_size(builder, text), text


def test_openai_voice_names_speak_and_are_listed_as_aliases(tts_server):
    voices = httpx.get(f"{tts_server.base_url}/v1/voices").json()
    assert voices["aliases"]["alloy"] == "tara" and voices["aliases"]["ash"] == "leo"
    for name in ("alloy", "ash"):
        response = httpx.post(f"{tts_server.base_url}/v1/audio/speech", timeout=300,
                              json={"model": "tts-1", "input": "Hi.", "voice": name, "response_format": "pcm",
                                    "max_tokens": 7})
        assert response.status_code == 200 and len(response.content) > 0, response.text
    refused = httpx.post(f"{tts_server.base_url}/v1/audio/speech", json={"input": "Hi.", "voice": "nobody"})
    assert refused.status_code == 400 and "alloy" in refused.json()["error"]["message"]
