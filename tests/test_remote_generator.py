"""The remote token backend against a real `vllm serve`: same speech, abort on close, clear errors,
and a TTS server replica that owns no LLM at all."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import httpx
import psutil
import pytest

from tts_plugin.engine.generator import GenerationError, SamplingOptions
from tts_plugin.engine.remote_generator import RemoteTokenGenerator

from .fixtures.engine import tiny_settings
from .fixtures.processes import free_port, stop_process
from .fixtures.server import DEFAULT_MAX_TOKENS, FRAME_SAMPLES, start_tts_server

GREEDY = SamplingOptions(temperature=0.0, max_tokens=56)


@pytest.fixture(scope="module")
async def remote_engine(vllm_server):
    from tts_plugin.engine.engine import OrpheusEngine

    engine = await OrpheusEngine.start(tiny_settings(vllm_url=vllm_server.base_url))
    yield engine
    await engine.aclose()


async def speech(engine, text: str, options: SamplingOptions) -> bytes:
    stream = engine.synthesize(text, options=options)
    async with aclosing(stream):
        return b"".join([chunk async for chunk in stream])


async def test_remote_backend_speaks_exactly_what_the_in_process_engine_speaks(engine, remote_engine):
    text = "Hello there. The same words, twice."
    local, remote = await speech(engine, text, GREEDY), await speech(remote_engine, text, GREEDY)
    assert len(remote) == 2 * 8 * FRAME_SAMPLES * 2  # two sentences of 8 frames, s16le
    assert remote == local  # same greedy tokens through vLLM's HTTP API, same decoder
    assert isinstance(remote_engine.generator, RemoteTokenGenerator)


async def test_closing_a_remote_stream_aborts_its_vllm_request(remote_engine, vllm_server):
    stream = remote_engine.synthesize("Stop me early.", options=SamplingOptions(max_tokens=7 * 400))
    async with aclosing(stream):
        async for _ in stream:
            break  # first audio: generation is under way
        assert remote_engine.running_requests == 1
    assert remote_engine.running_requests == 0
    for _ in range(600):  # polled: vLLM aborts once it notices the closed connection
        if await asyncio.to_thread(vllm_server.running_requests) == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("vLLM still generates the abandoned request")


async def test_a_refused_request_is_a_clear_error_and_the_backend_keeps_serving(remote_engine):
    generator = remote_engine.generator
    too_long = [128259] + [400] * 3000 + [128009]  # past the server's --max-model-len 2048
    with pytest.raises(GenerationError, match="answered 400"):
        async with aclosing(generator.generate(too_long, GREEDY.resolved(remote_engine.settings))) as tokens:
            async for _ in tokens:
                pass
    assert generator.running_requests == 0
    assert len(await speech(remote_engine, "Still here.", GREEDY)) == 8 * FRAME_SAMPLES * 2


async def test_an_unreachable_or_wrong_server_fails_at_start_naming_it(vllm_server):
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GenerationError, match=f"{nowhere} unreachable"):
        await RemoteTokenGenerator.connect(tiny_settings(vllm_url=nowhere, vllm_wait_s=1.0))
    with pytest.raises(GenerationError, match="ORPHEUS_VLLM_MODEL"):
        await RemoteTokenGenerator.connect(tiny_settings(vllm_url=vllm_server.base_url, vllm_model="other-model"))


def test_api_key_goes_in_the_header_never_in_errors(vllm_server):
    settings = tiny_settings(vllm_url=f"http://127.0.0.1:{free_port()}", vllm_api_key="sk-secret-value",
                             vllm_wait_s=0)
    assert "sk-secret-value" not in repr(settings)
    with pytest.raises(GenerationError) as refused:
        asyncio.run(RemoteTokenGenerator.connect(settings))
    assert "sk-secret-value" not in str(refused.value)
    generator = RemoteTokenGenerator("http://x", "m", api_key="sk-secret-value")
    assert generator._headers == {"Authorization": "Bearer sk-secret-value"}


async def test_start_up_waits_for_a_vllm_server_that_comes_up_later(vllm_server):
    """A deployment may start the TTS replica before vLLM has loaded: connect polls until it answers."""
    port = free_port()
    proxy_ready = asyncio.Event()

    async def relay(reader, writer):  # a TCP relay to the real server, opened only after a delay
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", vllm_server.port)

        async def pipe(src, dst):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def open_later():
        await asyncio.sleep(1.5)
        server = await asyncio.start_server(relay, "127.0.0.1", port)
        proxy_ready.set()
        return server

    opener = asyncio.create_task(open_later())
    generator = await RemoteTokenGenerator.connect(
        tiny_settings(vllm_url=f"http://127.0.0.1:{port}", vllm_model=vllm_server.model, vllm_wait_s=60))
    try:
        assert proxy_ready.is_set()  # it connected through the relay that opened late
    finally:
        await generator.aclose()
        relay_server = await opener
        relay_server.close()


def test_a_tts_server_replica_without_its_own_llm_serves_speech(vllm_server, tmp_path):
    """Scale-out: `agent serve --vllm-url` loads only the tokenizer and SNAC."""
    server = start_tts_server(tmp_path, "--vllm-url", vllm_server.base_url)
    try:
        response = httpx.post(f"{server.base_url}/v1/audio/speech", timeout=120,
                              json={"input": "From a replica.", "voice": "tara", "response_format": "pcm"})
        assert response.status_code == 200, response.text
        assert len(response.content) == DEFAULT_MAX_TOKENS // 7 * FRAME_SAMPLES * 2
        assert server.wait_idle()["running_requests"] == 0
        # an in-process AsyncLLM always runs its EngineCore as a child process; a replica has none
        assert psutil.Process(server.process.pid).children(recursive=True) == []
    finally:
        stop_process(server.process)


async def test_remote_vllm_receives_the_orpheus_prompt_ids_unchanged(remote_engine, vllm_server):
    """The remote path sends the same ids as the in-process one; vLLM adds no second BOS to them."""
    prompt = remote_engine.prompts.build("Hello there.", "tara")
    assert prompt[:2] == [128259, 128000] and prompt[-4:] == [128009, 128260, 128261, 128257]
    body = {**remote_engine.generator.request_body(prompt, GREEDY), "stream": False, "max_tokens": 7}
    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.post(f"{vllm_server.base_url}/v1/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["prompt_token_ids"] == prompt
