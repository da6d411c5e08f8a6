"""OrpheusTTS on both backends: the engine in this process and the real TTS server over its WebSocket.

Decoding is greedy on both sides (the server fixture runs with ``--temperature 0``), and the tiny
random model's greedy path never says end-of-speech, so every sentence runs to ``max_tokens``
(56 = 8 frames = 8 x 2048 samples): the amount of audio a text should give is known exactly.
(Sampling can draw end-of-speech at a frame boundary, which made these lengths flaky.)
"""

from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import pytest
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.agents.metrics import TTSMetrics

from tts_plugin import OrpheusTTS
from tts_plugin.backends.base import SpeakOptions
from tts_plugin.backends.remote import ServerBackend

pytestmark = pytest.mark.server

MAX_TOKENS = 56  # the server fixture's default cap; the in-process TTS sets the same
SENTENCE_SAMPLES = MAX_TOKENS // 7 * 2048
NO_RETRY = APIConnectOptions(max_retry=0, timeout=60)


@pytest.fixture(params=["engine", "server"])
def speech_source(request):
    """(kind, the in-process engine or the server process): sync, so session fixtures start here."""
    return request.param, request.getfixturevalue("engine" if request.param == "engine" else "tts_server")


@pytest.fixture
async def orpheus_tts(speech_source):
    kind, source = speech_source
    if kind == "engine":
        tts = OrpheusTTS(engine=source, max_tokens=MAX_TOKENS, temperature=0.0)
    else:
        tts = OrpheusTTS(server_url=source.base_url)
    yield tts
    await tts.aclose()


def samples(frames) -> np.ndarray:
    return np.concatenate([np.frombuffer(f.data, "<i2") for f in frames]) if frames else np.zeros(0, "<i2")


def speech_samples(audio: np.ndarray) -> int:
    """Length without the framework's 10 ms silent end-of-segment marker."""
    return len(audio) - (240 if len(audio) % 2048 == 240 else 0)


async def wait_idle(speech_source) -> None:
    """The source of speech has no stream and no vLLM request left (condition polled, not timed)."""
    kind, source = speech_source
    if kind == "engine":
        engine = source
        for _ in range(2400):
            if engine.running_requests == 0 and engine.active_streams == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("engine still busy")
    await asyncio.to_thread(source.wait_idle)


def ws_cancellations(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    match = re.search(r'^orpheus_cancellations_total\{transport="ws"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_synthesize_speaks_every_sentence_as_24khz_mono(orpheus_tts):
    frame = await orpheus_tts.synthesize("Hello there. How are you?", conn_options=NO_RETRY).collect()
    audio = np.frombuffer(frame.data, "<i2")
    assert frame.sample_rate == 24000 and frame.num_channels == 1
    assert speech_samples(audio) == 2 * SENTENCE_SAMPLES  # both sentences, whole frames, nothing else
    assert np.abs(audio).max() > 0


async def test_stream_speaks_the_first_sentence_before_the_text_ends(orpheus_tts):
    stream = orpheus_tts.stream(conn_options=NO_RETRY)
    for token in ["Hello", " there", ".", " And"]:  # the LLM is still writing sentence two
        stream.push_text(token)
    events = aiter(stream)
    first = await anext(events)
    assert first.frame.sample_rate == 24000
    for token in [" then", " some", " more."]:
        stream.push_text(token)
    stream.end_input()
    frames = [first.frame] + [ev.frame async for ev in events]
    await stream.aclose()
    assert speech_samples(samples(frames)) == 2 * SENTENCE_SAMPLES


async def test_stream_emits_metrics_with_real_ttfb_and_audio_duration(orpheus_tts):
    collected: list[TTSMetrics] = []
    orpheus_tts.on("metrics_collected", collected.append)
    stream = orpheus_tts.stream(conn_options=NO_RETRY)
    text = "Metrics, please. Thanks."
    stream.push_text(text)
    stream.end_input()
    async for _ in stream:
        pass
    await stream.aclose()
    (metrics,) = collected
    assert metrics.streamed and not metrics.cancelled
    assert 0 < metrics.ttfb < metrics.duration  # started when the text reached the engine
    assert metrics.characters_count == len(text)
    assert metrics.audio_duration == pytest.approx(2 * SENTENCE_SAMPLES / 24000, abs=0.011)


async def test_interrupting_a_stream_stops_generation_at_the_source(orpheus_tts, speech_source):
    kind, source = speech_source
    server = source if kind == "server" else None
    cancelled_before = ws_cancellations(server.base_url) if server else 0
    stream = orpheus_tts.stream(conn_options=NO_RETRY)
    sentences = [f"This is sentence number {n}." for n in range(12)]
    stream.push_text(" ".join(sentences))
    stream.end_input()
    received = 0
    async for ev in stream:  # first audio: the user barges in
        received += ev.frame.samples_per_channel
        break
    await stream.aclose()
    await wait_idle(speech_source)
    assert received < len(sentences) * SENTENCE_SAMPLES
    if server:  # the server counted this stream as cancelled, not finished
        for _ in range(200):
            if ws_cancellations(server.base_url) > cancelled_before:
                break
            await asyncio.sleep(0.05)
        assert ws_cancellations(server.base_url) == cancelled_before + 1
    # and the next turn is served normally
    frame = await orpheus_tts.synthesize("Next turn.", conn_options=NO_RETRY).collect()
    assert speech_samples(np.frombuffer(frame.data, "<i2")) == SENTENCE_SAMPLES


async def test_audio_of_an_interrupted_turn_never_reaches_the_next_turn(orpheus_tts):
    first = orpheus_tts.stream(conn_options=NO_RETRY)
    first.push_text("A long first turn. It goes on. And on. And on.")
    first.end_input()
    async for _ in first:
        break
    await first.aclose()
    second = orpheus_tts.stream(conn_options=NO_RETRY)
    second.push_text("Second turn.")
    second.end_input()
    frames = [ev.frame async for ev in second]
    await second.aclose()
    assert speech_samples(samples(frames)) == SENTENCE_SAMPLES


class StrayFrameBackend(ServerBackend):
    """Sends ``stray`` on each new socket before its first segment, as a faulty client would."""

    def __init__(self, base_url: str, stray: str) -> None:
        super().__init__(base_url)
        self.stray = stray

    async def _connect_ws(self, timeout: float):
        ws = await super()._connect_ws(timeout)
        await ws.send_str(self.stray)
        return ws


@pytest.mark.parametrize(("stray", "code"), [("{not json", "bad_json"), ('{"type": "sing"}', "unknown_type"),
                                             ("[1, 2]", "bad_request")])
async def test_the_servers_refusal_of_a_bad_message_reaches_the_plugin_as_a_non_retryable_client_error(
        tts_server, stray, code):
    backend = StrayFrameBackend(tts_server.base_url, stray)

    async def text():
        yield "Hello there."

    try:
        with pytest.raises(APIStatusError) as caught:
            async for _ in backend.speak(text(), SpeakOptions(voice="tara"), segment_id="stray-1",
                                         conn_options=NO_RETRY, on_text_sent=lambda: None):
                pass
    finally:
        await backend.aclose()
    assert caught.value.body["code"] == code and caught.value.status_code == 400 and not caught.value.retryable
    await asyncio.to_thread(tts_server.wait_idle)  # the refused stream's segment was cancelled at the server
