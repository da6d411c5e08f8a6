"""Bad input corpus: every case gets a 4xx (HTTP) or an error message (WebSocket, data channel)
with a reason naming the problem, and the server stays healthy and usable afterwards."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

SPEECH = "/v1/audio/speech"
JSON = {"content-type": "application/json"}

# (case id, method, path, raw body or JSON, expected status, words the reason must contain)
HTTP_CASES = [
    ("malformed-json", "POST", SPEECH, b'{"input": "hi"', 400, "malformed JSON"),
    ("body-is-array", "POST", SPEECH, b"[1, 2]", 400, "JSON object"),
    ("body-is-string", "POST", SPEECH, b'"hello"', 400, "JSON object"),
    ("empty-body", "POST", SPEECH, b"", 400, "input"),
    ("missing-input", "POST", SPEECH, {"voice": "tara"}, 400, "input: field required"),
    ("empty-input", "POST", SPEECH, {"input": ""}, 400, "input is empty"),
    ("whitespace-input", "POST", SPEECH, {"input": "  \n\t "}, 400, "input is empty"),
    ("control-chars-only", "POST", SPEECH, {"input": "\x00\x01\x02"}, 400, "input is empty"),
    ("only-tags", "POST", SPEECH, {"input": "<laugh> <sigh>"}, 400, "only tags"),
    ("lone-surrogate", "POST", SPEECH, b'{"input": "Hi \\ud800 there."}', 400, "surrogate"),
    ("lone-surrogate-pcm", "POST", f"{SPEECH}/stream", b'{"input": "\\udfff"}', 400, "surrogate"),
    ("zero-width-only", "POST", SPEECH, {"input": "\u200b\u200c\u200d\ufeff\u2060"}, 400, "input is empty"),
    ("oversized-input", "POST", SPEECH, {"input": "a" * 5000}, 400, "limit is 4000"),
    ("oversized-body", "POST", SPEECH, {"input": "a" * (2 << 20)}, 413, "larger than"),
    ("input-not-string", "POST", SPEECH, {"input": 42}, 400, "input"),
    ("input-null", "POST", SPEECH, {"input": None}, 400, "input"),
    ("unknown-voice", "POST", SPEECH, {"input": "hi", "voice": "darth"}, 400, "unknown voice 'darth'"),
    ("voice-not-string", "POST", SPEECH, {"input": "hi", "voice": 3}, 400, "voice"),
    ("unknown-format", "POST", SPEECH, {"input": "hi", "response_format": "ogg"}, 400, "response_format"),
    ("speed-not-supported", "POST", SPEECH, {"input": "hi", "speed": 1.5}, 400, "speed is not supported"),
    ("speed-out-of-range", "POST", SPEECH, {"input": "hi", "speed": 9}, 400, "speed"),
    ("instructions", "POST", SPEECH, {"input": "hi", "instructions": "whisper"}, 400, "instructions"),
    ("temperature-negative", "POST", SPEECH, {"input": "hi", "temperature": -1}, 400, "temperature"),
    ("temperature-too-high", "POST", SPEECH, {"input": "hi", "temperature": 3}, 400, "temperature"),
    ("top-p-zero", "POST", SPEECH, {"input": "hi", "top_p": 0}, 400, "top_p"),
    ("top-p-too-high", "POST", SPEECH, {"input": "hi", "top_p": 1.5}, 400, "top_p"),
    ("repetition-penalty-low", "POST", SPEECH, {"input": "hi", "repetition_penalty": 0.5}, 400, "repetition_penalty"),
    ("max-tokens-too-small", "POST", SPEECH, {"input": "hi", "max_tokens": 3}, 400, "max_tokens"),
    ("max-tokens-too-large", "POST", SPEECH, {"input": "hi", "max_tokens": 10**9}, 400, "max_tokens"),
    ("seed-negative", "POST", SPEECH, {"input": "hi", "seed": -5}, 400, "seed"),
    ("temperature-string", "POST", SPEECH, {"input": "hi", "temperature": "hot"}, 400, "temperature"),
    ("unknown-field", "POST", SPEECH, {"input": "hi", "volume": 11}, 400, "volume: unknown field"),
    ("deeply-nested-json", "POST", SPEECH, b"[" * 100_000, 400, "nested too deeply"),
    ("temperature-nan", "POST", SPEECH, b'{"input": "hi", "temperature": NaN}', 400, "temperature: Input should be a finite number"),
    ("temperature-infinity", "POST", SPEECH, b'{"input": "hi", "top_p": Infinity}', 400, "top_p: Input should be a finite number"),
    ("max-tokens-bool", "POST", SPEECH, {"input": "hi", "max_tokens": True}, 400, "max_tokens: Input should be a valid integer"),
    ("seed-float", "POST", SPEECH, {"input": "hi", "seed": 1.5}, 400, "seed"),
    ("temperature-numeric-string", "POST", SPEECH, {"input": "hi", "temperature": "0.5"}, 400, "temperature"),
    ("voice-too-long", "POST", SPEECH, {"input": "hi", "voice": "v" * 100_000}, 400, "voice: String should have at most 64"),
    ("bad-stream-format", "POST", SPEECH, {"input": "hi", "stream_format": "chunks"}, 400, "stream_format"),
    ("pcm-endpoint-other-format", "POST", f"{SPEECH}/stream", {"input": "hi", "response_format": "mp3"}, 400,
     "raw PCM only"),
    ("pcm-endpoint-empty", "POST", f"{SPEECH}/stream", {"input": ""}, 400, "input is empty"),
    ("sse-unknown-voice", "POST", f"{SPEECH}/sse", {"input": "hi", "voice": "x"}, 400, "unknown voice"),
    ("wrong-method", "GET", SPEECH, None, 405, "Method Not Allowed"),
    ("unknown-path", "GET", "/v1/nothing-here", None, 404, "Not Found"),
    ("offer-garbage-sdp", "POST", "/rtc/offer", {"sdp": "hello", "type": "offer"}, 400, "audio section"),
    ("offer-wrong-type", "POST", "/rtc/offer", {"sdp": "v=0", "type": "answer"}, 400, "type"),
    ("offer-missing-sdp", "POST", "/rtc/offer", {"type": "offer"}, 400, "sdp: field required"),
]


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_bad_http_request_gets_4xx_with_reason(tts_server, case):
    _, method, path, body, status, reason = case
    kwargs = {"content": body, "headers": JSON} if isinstance(body, bytes) else {"json": body}
    response = httpx.request(method, f"{tts_server.base_url}{path}", timeout=30,
                             **(kwargs if body is not None else {}))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert reason in error["message"], error


# (case id, frame to send, expected error code, words the reason must contain)
WS_CASES = [
    ("binary-frame", b"\x00\x01\x02", "bad_request", "binary frames"),
    ("malformed-json", "{type: speak}", "bad_json", "malformed JSON"),
    ("deeply-nested-json", "[" * 100_000, "bad_json", "nested too deeply"),
    ("deeply-nested-object", '{"a":' * 50_000, "bad_json", "nested too deeply"),
    ("max-tokens-bool", {"type": "speak", "text": "hi", "max_tokens": True}, "bad_request", "max_tokens"),
    ("json-array", "[1, 2]", "bad_request", "JSON object"),
    ("json-number", "42", "bad_request", "JSON object"),
    ("unknown-type", {"type": "sing"}, "unknown_type", "unknown message type 'sing'"),
    ("no-type-no-input", {"voice": "tara"}, "bad_request", '"type"'),
    ("empty-text", {"type": "speak", "segment_id": "e", "text": ""}, "bad_request", "input is empty"),
    ("only-tags", {"type": "speak", "text": "<laugh>"}, "bad_request", "only tags"),
    ("lone-surrogate", '{"type": "speak", "text": "Hi \\ud800 there."}', "bad_request", "surrogate"),
    ("zero-width-only", {"type": "speak", "text": "\u200b\u200d\ufeff"}, "bad_request", "input is empty"),
    ("unknown-voice", {"type": "speak", "text": "hi", "voice": "nobody"}, "bad_request", "unknown voice"),
    ("temperature-out-of-range", {"type": "speak", "text": "hi", "temperature": 7}, "bad_request", "temperature"),
    ("max-tokens-out-of-range", {"type": "speak", "text": "hi", "max_tokens": 1}, "bad_request", "max_tokens"),
    ("unknown-field", {"type": "speak", "text": "hi", "pitch": 2}, "bad_request", "pitch: unknown field"),
    ("text-not-string", {"type": "speak", "text": ["hi"]}, "bad_request", "text"),
    ("empty-segment-id", {"type": "speak", "text": "hi", "segment_id": ""}, "bad_request", "segment_id"),
    ("oversized-text", {"type": "speak", "text": "word " * 1000}, "too_large", "exceeds 4000 characters"),
    ("oversized-streamed-text", {"type": "speak", "text": "word " * 1000, "continue": True}, "too_large",
     "exceeds 4000 characters"),
    ("continue-not-bool", {"type": "speak", "text": "hi", "continue": "maybe"}, "bad_request", "continue"),
    ("cancel-unknown-segment", {"type": "cancel", "segment_id": "ghost"}, "unknown_segment", "ghost"),
    ("cancel-extra-field", {"type": "cancel", "segment_id": "x", "now": True}, "bad_request", "unknown field"),
]


@pytest.mark.parametrize("case", WS_CASES, ids=[c[0] for c in WS_CASES])
async def test_bad_ws_message_gets_error_and_connection_stays_usable(tts_server, case):
    _, frame, code, reason = case
    async with websockets.connect(f"{tts_server.ws_url}/v1/audio/speech/stream/ws") as ws:
        await ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))
        error = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert error["type"] == "error" and error["code"] == code, error
        assert reason in error["message"], error
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30)) == {"type": "pong"}


def test_server_is_healthy_after_the_corpus(tts_server):
    health = tts_server.wait_idle()
    assert health["status"] == "ok"
    response = httpx.post(f"{tts_server.base_url}/v1/audio/speech/stream", json={"input": "Still fine."}, timeout=300)
    assert response.status_code == 200 and len(response.content) > 0
