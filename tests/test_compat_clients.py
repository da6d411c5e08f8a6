"""Clients people already have, unchanged but for the URL, against the real server process:
LiveKit's own OpenAI TTS plugin (SSE deltas in each response_format), a WebSocket client that
behaves like the community livekit-orpheus plugin, every response_format decoded with its duration,
and the x-request-id header on every HTTP answer."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re

import av
import httpx
import numpy as np
import pytest
import soundfile
import websockets
from livekit.agents import APIConnectOptions

from tests.fixtures.server import DEFAULT_MAX_TOKENS, FRAME_SAMPLES

SENTENCE_SAMPLES = DEFAULT_MAX_TOKENS // 7 * FRAME_SAMPLES  # greedy tiny model: every sentence hits its cap
NO_RETRY = APIConnectOptions(max_retry=0, timeout=60)
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
CLOSE_BOUND_S = 120  # "closes, not hangs": generous on 2 shared cores


def decoded_duration(data: bytes, response_format: str) -> float:
    """Seconds of audio in a whole response: soundfile (libsndfile) where it reads the format, PyAV for AAC."""
    if response_format == "pcm":
        return len(data) / 2 / 24000
    if response_format == "aac":  # libsndfile has no AAC
        with av.open(io.BytesIO(data)) as container:
            return sum(frame.samples for frame in container.decode(audio=0)) / container.streams.audio[0].rate
    audio, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 24000
    return len(audio) / rate


def assert_one_sentence(duration: float, short_by_s: float = 0.01, samples: int = SENTENCE_SAMPLES) -> None:
    # Codecs pad to whole frames (and MP3 adds encoder delay): equal to within a few codec frames.
    assert samples / 24000 - short_by_s <= duration <= samples / 24000 + 0.15, duration


SHORT_TOKENS = 28  # 4 frames: enough for every codec, half the generation on 2 shared cores
SHORT_SAMPLES = SHORT_TOKENS // 7 * FRAME_SAMPLES


@pytest.mark.parametrize("response_format", FORMATS)
def test_every_response_format_decodes_to_the_generated_duration(tts_server, response_format):
    response = httpx.post(f"{tts_server.base_url}/v1/audio/speech", timeout=300,
                          json={"input": "Hi there.", "voice": "tara", "response_format": response_format,
                                "max_tokens": SHORT_TOKENS})
    assert response.status_code == 200
    assert_one_sentence(decoded_duration(response.content, response_format), samples=SHORT_SAMPLES)
    if response_format == "flac":  # its header states the real length (STREAMINFO total samples, not 0)
        assert soundfile.info(io.BytesIO(response.content)).frames == SHORT_SAMPLES


@pytest.mark.parametrize("response_format", FORMATS)
def test_openai_sse_deltas_concatenate_to_a_file_of_the_requested_format(tts_server, response_format):
    with httpx.stream("POST", f"{tts_server.base_url}/v1/audio/speech", timeout=300,
                      json={"input": "Hi there.", "voice": "tara", "stream_format": "sse",
                            "response_format": response_format, "max_tokens": SHORT_TOKENS}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    deltas = [e for e in events[:-1] if e["type"] == "speech.audio.delta"]
    assert len(deltas) == len(events) - 1
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert_one_sentence(decoded_duration(audio, response_format), samples=SHORT_SAMPLES)


def sse_cancellations(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    match = re.search(r'^orpheus_cancellations_total\{transport="openai_sse"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_openai_sse_sends_keepalives_while_flac_is_held_and_a_disconnect_stops_generation(tts_server):
    long_sentence = "This sentence goes on and on " + "and on " * 30 + "until the end."  # ~2400 tokens
    before = sse_cancellations(tts_server.base_url)
    with httpx.stream("POST", f"{tts_server.base_url}/v1/audio/speech", timeout=300,
                      json={"input": long_sentence, "max_tokens": 7000, "stream_format": "sse",
                            "response_format": "flac"}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith(":")  # FLAC is held to the end: a comment keeps the client reading
        assert tts_server.health()["active_streams"] >= 1
    health = tts_server.wait_idle()
    assert health["active_streams"] == 0 and health["running_requests"] == 0
    assert sse_cancellations(tts_server.base_url) == before + 1


async def speak_with_livekit_openai_plugin(base_url: str, text: str, **options) -> tuple[np.ndarray, set]:
    from livekit.plugins import openai as livekit_openai

    tts = livekit_openai.TTS(base_url=f"{base_url}/v1", api_key="not-needed", voice="tara", **options)
    try:
        frames = [event.frame async for event in tts.synthesize(text, conn_options=NO_RETRY)]
    finally:
        await tts.aclose()
    audio = np.concatenate([np.frombuffer(f.data, "<i2") for f in frames])
    return audio, {(f.sample_rate, f.num_channels) for f in frames}


# One codec frame at 24 kHz: FLAC blocks of 2304 samples, MP3 1152, AAC 1024, Opus 20 ms.
CODEC_FRAME_S = {"flac": 2304 / 24000, "mp3": 1152 / 24000, "aac": 1024 / 24000, "opus": 0.02, "wav": 0, "pcm": 0}


@pytest.mark.parametrize("options", [
    {},  # its defaults: model gpt-4o-mini-tts -> stream_format "sse", response_format mp3
    {"model": "tts-1"},  # the one model it asks for plain audio instead of SSE
    *({"model": "orpheus", "response_format": fmt} for fmt in FORMATS),
], ids=lambda o: "-".join(o.values()) or "defaults")
async def test_livekit_openai_plugin_gets_all_audio_with_only_base_url_changed(tts_server, options):
    audio, layouts = await speak_with_livekit_openai_plugin(tts_server.base_url, "Hello there.", **options)
    assert layouts == {(24000, 1)}
    # LiveKit's low-latency streaming decoder (AudioStreamDecoder) drops the last codec frame of a
    # compressed stream; the same deltas decoded whole are complete
    # (test_openai_sse_deltas_concatenate_to_a_file_of_the_requested_format).
    assert_one_sentence(len(audio) / 24000, short_by_s=0.01 + CODEC_FRAME_S[options.get("response_format", "mp3")])
    assert np.abs(audio).max() > 0


# ---- the orpheus-streaming WebSocket shape, as the community livekit-orpheus plugin uses it

async def read_until_closed(ws) -> tuple[list[dict], bytearray]:
    events, audio = [], bytearray()
    async with asyncio.timeout(CLOSE_BOUND_S):
        async for message in ws:  # ends when the server closes the socket
            if isinstance(message, bytes):
                audio.extend(message)
            else:
                events.append(json.loads(message))
    return events, audio


async def test_community_plugin_shape_gets_every_sentence_and_a_closed_socket(tts_server):
    sentences = ["Hello there.", "How are you today?", "Fine, thanks."]
    async with websockets.connect(f"{tts_server.ws_url}/v1/audio/speech/stream/ws", max_size=None) as ws:
        for i, sentence in enumerate(sentences):
            await ws.send(json.dumps({"voice": "tara", "input": sentence + " ", "continue": True,
                                      "segment_id": f"seg{i}"}))
        await ws.send(json.dumps({"voice": "tara", "input": "", "continue": False, "segment_id": "final"}))
        events, audio = await read_until_closed(ws)
        assert ws.close_code == 1000
    assert len(audio) == 3 * SENTENCE_SAMPLES * 2
    ends = [e["segment_id"] for e in events if e["type"] == "end"]
    assert ends == ["seg0", "seg1", "seg2"]
    assert not [e for e in events if e["type"] == "error"]


async def test_orpheus_streaming_shape_speaks_each_message_at_once_without_waiting_for_more(tts_server):
    async with websockets.connect(f"{tts_server.ws_url}/v1/audio/speech/stream/ws", max_size=None) as ws:
        # "And" is not a finished sentence, yet the message is a whole segment: spoken now, socket kept.
        await ws.send(json.dumps({"input": "Hi there. And", "voice": "tara", "continue": True, "segment_id": "o1"}))
        audio = bytearray()
        async with asyncio.timeout(CLOSE_BOUND_S):
            while True:
                message = await ws.recv()
                if isinstance(message, bytes):
                    audio.extend(message)
                elif json.loads(message)["type"] == "end":
                    break
        assert len(audio) == 2 * SENTENCE_SAMPLES * 2
        await ws.send(json.dumps({"input": "   ", "continue": True}))
        assert json.loads(await ws.recv())["type"] == "no_op"
        # continue:false with text: spoken, then the socket closes.
        await ws.send(json.dumps({"input": "Bye now.", "voice": "tara", "continue": False, "segment_id": "last"}))
        events, audio = await read_until_closed(ws)
    assert len(audio) == SENTENCE_SAMPLES * 2
    assert [e["type"] for e in events if e["type"] in ("start", "end")] == ["start", "end"]


async def test_refused_final_message_still_closes_the_socket_after_its_error(tts_server):
    async with websockets.connect(f"{tts_server.ws_url}/v1/audio/speech/stream/ws", max_size=None) as ws:
        await ws.send(json.dumps({"input": "Hello.", "voice": "nobody", "continue": False, "segment_id": "x"}))
        events, audio = await read_until_closed(ws)
    assert [e["type"] for e in events] == ["error"] and "unknown voice 'nobody'" in events[0]["message"]
    assert not audio


# ---- x-request-id and OpenAI's error shape

def test_every_http_response_carries_a_distinct_request_id(tts_server):
    base = tts_server.base_url
    responses = [
        httpx.get(f"{base}/health"),
        httpx.get(f"{base}/v1/voices"),
        httpx.post(f"{base}/v1/audio/speech", json={"input": "Hi.", "response_format": "pcm", "max_tokens": 7},
                   timeout=300),
        httpx.post(f"{base}/v1/audio/speech", json={"input": ""}),  # 400
        httpx.post(f"{base}/v1/audio/speech", content=b"x" * (2 << 20)),  # 413 from the body-size guard
        httpx.get(f"{base}/no/such/path"),  # 404
        httpx.get(f"{base}/v1/audio/speech"),  # 405
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 400, 413, 404, 405]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids) and len(set(ids)) == len(ids), ids
    for error in responses[3:]:
        body = error.json()["error"]
        assert set(body) == {"message", "type", "param", "code"} and body["message"]


async def test_openai_sdk_sees_the_request_id(tts_server):
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=f"{tts_server.base_url}/v1", api_key="not-needed")
    async with client.audio.speech.with_streaming_response.create(
        model="orpheus", voice="tara", input="Hi.", response_format="pcm", extra_body={"max_tokens": 7}) as response:
        assert response.request_id and response.request_id.startswith("req_")
        await response.read()
    with pytest.raises(openai.BadRequestError) as rejected:
        await client.audio.speech.create(model="orpheus", voice="tara", input="")
    assert rejected.value.request_id and "input is empty" in rejected.value.message
    await client.close()
