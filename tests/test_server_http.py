"""HTTP API of the real server process: speech in every format, PCM stream, SSE, info endpoints,
the OpenAI SDK, and a disconnect that must stop the generation."""

from __future__ import annotations

import base64
import io
import json
import re

import av
import httpx
import numpy as np
import pytest

from tests.fixtures.server import DEFAULT_MAX_TOKENS, FRAME_SAMPLES

# With random weights the model never says end-of-speech: a sentence runs to its token budget.
ONE_SENTENCE_SAMPLES = DEFAULT_MAX_TOKENS // 7 * FRAME_SAMPLES


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Any container PyAV reads -> mono float samples and their rate."""
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray().astype(np.float32).reshape(f.samples, -1)[:, 0] if f.format.is_packed
                  else f.to_ndarray()[0].astype(np.float32) for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    return np.concatenate(frames), rate


def pcm_samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2")


def test_health_reports_loaded_model_and_idle_engine(tts_server):
    health = tts_server.health()
    assert health["status"] == "ok" and health["model_loaded"] is True
    assert health["active_streams"] == 0 and health["running_requests"] == 0


def test_voices_endpoint_lists_voices_default_and_the_emotion_tags_the_model_acts_on(tts_server):
    from tts_plugin.engine.profiles import ORPHEUS

    body = httpx.get(f"{tts_server.base_url}/v1/voices").json()
    assert "tara" in body["voices"] and body["default"] in body["voices"]
    assert body["tags"] == list(ORPHEUS.tags) and "<laugh>" in body["tags"]


def test_openapi_schema_documents_every_endpoint(tts_server):
    paths = httpx.get(f"{tts_server.base_url}/openapi.json").json()["paths"]
    for path in ("/v1/audio/speech", "/v1/audio/speech/stream", "/v1/audio/speech/sse", "/health",
                 "/v1/voices", "/metrics", "/rtc/offer"):
        assert path in paths, path


def test_pcm_stream_states_format_in_headers_and_streams_every_frame(tts_server):
    with httpx.stream("POST", f"{tts_server.base_url}/v1/audio/speech/stream",
                      json={"input": "Hello there.", "voice": "leo"}, timeout=300) as response:
        assert response.status_code == 200
        assert response.headers["x-sample-rate"] == "24000"
        assert response.headers["x-channels"] == "1"
        assert response.headers["x-sample-format"] == "s16le"
        assert response.headers["content-type"].startswith("audio/pcm")
        chunks = [chunk for chunk in response.iter_raw() if chunk]
    audio = pcm_samples(b"".join(chunks))
    assert len(audio) == ONE_SENTENCE_SAMPLES
    assert np.abs(audio).max() > 0


@pytest.mark.parametrize("response_format, codec", [("wav", "pcm_s16le"), ("opus", "opus"), ("mp3", "mp3"),
                                                    ("flac", "flac"), ("aac", "aac")])
def test_openai_speech_endpoint_streams_a_decodable_file(tts_server, response_format, codec):
    response = httpx.post(f"{tts_server.base_url}/v1/audio/speech", timeout=300,
                          json={"model": "orpheus", "input": "Hi there.", "voice": "tara",
                                "response_format": response_format})
    assert response.status_code == 200
    with av.open(io.BytesIO(response.content)) as container:
        assert container.streams.audio[0].codec_context.name.startswith(codec.split("_")[0])
    audio, rate = decode_audio(response.content)
    duration = len(audio) / rate
    expected = ONE_SENTENCE_SAMPLES / 24000
    # Codecs pad to whole frames (and Opus adds pre-skip): equal to within a few codec frames.
    assert expected - 0.01 <= duration <= expected + 0.15, duration
    assert np.abs(audio).max() > 0


def test_openai_sdk_streaming_speech_call_receives_pcm(tts_server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{tts_server.base_url}/v1", api_key="not-needed")
    with client.audio.speech.with_streaming_response.create(
        model="orpheus", voice="tara", input="Hello from the SDK.", response_format="pcm",
    ) as response:
        assert response.headers["x-sample-rate"] == "24000"
        audio = b"".join(response.iter_bytes(4096))
    assert len(pcm_samples(audio)) == ONE_SENTENCE_SAMPLES


def test_openai_sdk_passes_orpheus_sampling_through_extra_body(tts_server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{tts_server.base_url}/v1", api_key="not-needed")
    with client.audio.speech.with_streaming_response.create(
        model="orpheus", voice="mia", input="Short.", response_format="pcm",
        extra_body={"max_tokens": 28, "temperature": 0.0, "repetition_penalty": 1.2, "seed": 7},
    ) as response:
        audio = response.read()
    assert len(pcm_samples(audio)) == 28 // 7 * FRAME_SAMPLES
    with pytest.raises(openai.BadRequestError) as rejected:
        client.audio.speech.create(model="orpheus", voice="tara", input="Hi.", speed=1.5)
    assert "speed" in str(rejected.value)


def test_openai_stream_format_sse_sends_audio_deltas_then_done(tts_server):
    with httpx.stream("POST", f"{tts_server.base_url}/v1/audio/speech", timeout=300,
                      json={"input": "Hi.", "stream_format": "sse", "response_format": "pcm"}) as response:
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and events[-1]["type"] == "speech.audio.done"
    assert sum(len(base64.b64decode(e["audio"])) for e in deltas) == 2 * ONE_SENTENCE_SAMPLES


def read_sse(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line[5:])))
    return events


def test_sse_sends_sequenced_audio_then_metrics_then_done(tts_server):
    with httpx.stream("POST", f"{tts_server.base_url}/v1/audio/speech/sse", timeout=300,
                      json={"input": "One. Two."}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_sse(response)
    names = [name for name, _ in events]
    audio = [data for name, data in events if name == "audio"]
    assert names[-2:] == ["metrics", "done"] and set(names[:-2]) == {"audio"}
    assert [a["seq"] for a in audio] == list(range(len(audio)))
    total = sum(len(base64.b64decode(a["audio"])) for a in audio) // 2
    assert total == 2 * ONE_SENTENCE_SAMPLES  # two sentences
    metrics = events[-2][1]
    assert metrics["audio_s"] == pytest.approx(total / 24000, abs=1e-3)
    assert metrics["ttfb_ms"] > 0 and metrics["rtf"] > 0 and metrics["sentences"] == 2


def test_http_client_disconnect_stops_generation(tts_server):
    long_sentence = "This sentence goes on and on " + "and on " * 30 + "until the end."  # ~2400 tokens
    with httpx.stream("POST", f"{tts_server.base_url}/v1/audio/speech/stream", timeout=300,
                      json={"input": long_sentence, "max_tokens": 7000}) as response:
        chunks = response.iter_raw()  # keep a reference: a dropped iterator closes the response
        assert next(chunks)
        assert tts_server.health()["active_streams"] >= 1
    # Connection closed after one chunk: the server must close the stream and abort its vLLM request.
    health = tts_server.wait_idle()
    assert health["active_streams"] == 0 and health["running_requests"] == 0
    metrics = httpx.get(f"{tts_server.base_url}/metrics").text
    assert 'orpheus_cancellations_total{transport="pcm"} 1.0' in metrics


def test_prometheus_metrics_expose_ttfb_streams_tokens_audio_errors_cancellations(tts_server):
    httpx.post(f"{tts_server.base_url}/v1/audio/speech", json={"input": ""})  # one rejected request
    text = httpx.get(f"{tts_server.base_url}/metrics").text
    for series in ("orpheus_ttfb_seconds_bucket", "orpheus_active_streams", "orpheus_running_requests",
                   "orpheus_tokens_total", "orpheus_stream_tokens_per_second_bucket",
                   "orpheus_audio_seconds_total", "orpheus_errors_total", "orpheus_cancellations_total"):
        assert series in text, series
    assert 'orpheus_errors_total{code="invalid_request",transport="openai"}' in text


def _metric(text: str, name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def test_metrics_count_decoded_frames_and_decode_worker_time(tts_server):
    """What the end-to-end benchmark divides to get decode ms a frame while vLLM runs."""
    before = httpx.get(f"{tts_server.base_url}/metrics").text
    response = httpx.post(f"{tts_server.base_url}/v1/audio/speech", timeout=120,
                          json={"input": "Count my frames.", "voice": "tara", "response_format": "pcm"})
    assert len(response.content) == 8 * 2048 * 2
    tts_server.wait_idle()
    after = httpx.get(f"{tts_server.base_url}/metrics").text
    assert _metric(after, "orpheus_frames_total") - _metric(before, "orpheus_frames_total") == 8
    assert _metric(after, "orpheus_decode_busy_seconds") > _metric(before, "orpheus_decode_busy_seconds")


def test_listener_page_and_assets_are_served_without_any_cdn(tts_server):
    page = httpx.get(f"{tts_server.base_url}/")
    assert page.status_code == 200 and 'src="/app.js"' in page.text and "/livekit.html" in page.text
    for asset in ("/app.js", "/style.css"):
        body = httpx.get(f"{tts_server.base_url}{asset}")
        assert body.status_code == 200
        assert "https://" not in body.text and "http://" not in body.text
    assert "https://" not in page.text and "http://" not in page.text
    assert httpx.get(f"{tts_server.base_url}/node_modules/playwright-core/package.json").status_code == 404


def test_sse_client_disconnect_stops_generation(tts_server):
    long_sentence = "This sentence goes on and on " + "and on " * 30 + "until the end."
    with httpx.stream("POST", f"{tts_server.base_url}/v1/audio/speech/sse", timeout=300,
                      json={"input": long_sentence, "max_tokens": 7000}) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert tts_server.health()["active_streams"] >= 1
    health = tts_server.wait_idle()
    assert health["active_streams"] == 0 and health["running_requests"] == 0
