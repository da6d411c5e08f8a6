"""WebSocket protocol of the real server: segments, metrics, cancel, ordering, input streaming,
and disconnects that stop generation (the orpheus-streaming shape: tests/test_compat_clients.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest
import websockets

from tests.fixtures.server import DEFAULT_MAX_TOKENS, FRAME_SAMPLES

SENTENCE_BYTES = DEFAULT_MAX_TOKENS // 7 * FRAME_SAMPLES * 2
LONG_SENTENCE = "This sentence goes on and on " + "and on " * 30 + "until the end."  # ~2400 tokens
RECEIVE_TIMEOUT_S = 300


@dataclass
class Segment:
    events: list[dict] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)

    def event(self, kind: str) -> dict:
        return next(e for e in self.events if e["type"] == kind)


class Client:
    """Records the server's replies; binary frames belong to the segment last started."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.segments: dict[str, Segment] = {}
        self.order: list[tuple[str, str | None]] = []  # (type, segment_id) as received
        self.current: str | None = None

    async def send(self, **message) -> None:
        await self.ws.send(json.dumps(message))

    async def next_message(self) -> dict | bytes:
        message = await asyncio.wait_for(self.ws.recv(), RECEIVE_TIMEOUT_S)
        if isinstance(message, bytes):
            assert self.current is not None, "audio outside start/end"
            self.segments[self.current].audio.extend(message)
            return message
        event = json.loads(message)
        sid = event.get("segment_id")
        self.order.append((event["type"], sid))
        if event["type"] == "start":
            self.current = sid
        if sid is not None:
            self.segments.setdefault(sid, Segment()).events.append(event)
        if event["type"] == "end":
            self.current = None
        return event

    async def until(self, predicate) -> dict | bytes:
        while True:
            message = await self.next_message()
            if predicate(message):
                return message

    async def until_end(self, segment_id: str) -> dict:
        return await self.until(lambda m: isinstance(m, dict) and m["type"] == "end"
                                and m["segment_id"] == segment_id)


@pytest.fixture
async def ws_client(tts_server):
    async with websockets.connect(f"{tts_server.ws_url}/v1/audio/speech/stream/ws", max_size=None) as ws:
        yield Client(ws)


async def test_ws_ping_gets_pong(ws_client):
    await ws_client.send(type="ping")
    assert await ws_client.next_message() == {"type": "pong"}


async def test_ws_segment_replies_start_pcm_metrics_end(ws_client):
    await ws_client.send(type="speak", segment_id="s1", text="Hello there.", voice="zoe")
    end = await ws_client.until_end("s1")
    segment = ws_client.segments["s1"]
    start = segment.event("start")
    assert (start["sample_rate"], start["channels"], start["format"]) == (24000, 1, "pcm_s16le")
    assert len(segment.audio) == SENTENCE_BYTES
    metrics = segment.event("metrics")
    assert metrics["audio_s"] == pytest.approx(len(segment.audio) / 2 / 24000, abs=1e-3)
    assert metrics["ttfb_ms"] > 0 and metrics["rtf"] > 0 and metrics["tokens"] == DEFAULT_MAX_TOKENS
    assert end == {"type": "end", "segment_id": "s1", "cancelled": False}
    assert [t for t, _ in ws_client.order] == ["start", "metrics", "end"]


async def test_ws_several_segments_run_in_order_on_one_connection(ws_client):
    for sid in ("a", "b", "c"):
        await ws_client.send(type="speak", segment_id=sid, text=f"Segment {sid}.", max_tokens=28)
    await ws_client.until_end("c")
    assert [(t, s) for t, s in ws_client.order if t in ("start", "end")] == [
        ("start", "a"), ("end", "a"), ("start", "b"), ("end", "b"), ("start", "c"), ("end", "c")]
    for sid in ("a", "b", "c"):
        assert len(ws_client.segments[sid].audio) == 28 // 7 * FRAME_SAMPLES * 2


async def test_ws_input_streaming_speaks_each_sentence_once_it_is_complete(ws_client):
    await ws_client.send(type="speak", segment_id="live", text="Hello there. How", **{"continue": True})
    # The first sentence is complete: its audio comes while the segment is still open.
    await ws_client.until(lambda m: isinstance(m, bytes))
    await ws_client.until(lambda m: len(ws_client.segments["live"].audio) >= SENTENCE_BYTES)
    assert not any(t == "end" for t, _ in ws_client.order)
    await ws_client.send(type="speak", segment_id="live", text=" are you today?", **{"continue": True})
    await ws_client.send(type="speak", segment_id="live", text=" Fine.", **{"continue": False})
    await ws_client.until_end("live")
    segment = ws_client.segments["live"]
    assert segment.event("metrics")["sentences"] == 3  # "Hello there." "How are you today?" "Fine."
    assert len(segment.audio) == 3 * SENTENCE_BYTES


async def test_ws_cancel_stops_segment_and_generation_and_connection_stays_usable(ws_client, tts_server):
    await ws_client.send(type="speak", segment_id="long", text=LONG_SENTENCE, max_tokens=7000)
    await ws_client.until(lambda m: isinstance(m, bytes))
    assert tts_server.health()["active_streams"] >= 1
    await ws_client.send(type="cancel", segment_id="long")
    end = await ws_client.until_end("long")
    assert end["cancelled"] is True
    assert len(ws_client.segments["long"].audio) < 2400 // 7 * FRAME_SAMPLES * 2
    tts_server.wait_idle()  # the vLLM request was aborted, not left running
    await ws_client.send(type="speak", segment_id="after", text="Still here.")
    assert (await ws_client.until_end("after"))["cancelled"] is False


async def test_ws_cancel_of_a_queued_segment_skips_it(ws_client, tts_server):
    await ws_client.send(type="speak", segment_id="first", text=LONG_SENTENCE, max_tokens=7000)
    await ws_client.send(type="speak", segment_id="queued", text="Never said.")
    await ws_client.until(lambda m: isinstance(m, bytes))
    await ws_client.send(type="cancel", segment_id="queued")
    await ws_client.send(type="cancel", segment_id="first")
    await ws_client.until_end("queued")
    assert ("start", "queued") not in ws_client.order
    assert ws_client.segments["queued"].events[-1]["cancelled"] is True
    assert not ws_client.segments.get("queued", Segment()).audio
    tts_server.wait_idle()


async def test_ws_late_cancel_after_end_is_not_an_error(ws_client):
    await ws_client.send(type="speak", segment_id="done", text="Quick.", max_tokens=28)
    await ws_client.until_end("done")
    await ws_client.send(type="cancel", segment_id="done")
    await ws_client.send(type="ping")
    assert await ws_client.next_message() == {"type": "pong"}


async def test_ws_disconnect_mid_segment_stops_generation(tts_server):
    async with websockets.connect(f"{tts_server.ws_url}/v1/audio/speech/stream/ws") as ws:
        await ws.send(json.dumps({"type": "speak", "segment_id": "x", "text": LONG_SENTENCE, "max_tokens": 7000}))
        while not isinstance(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_S), bytes):
            pass
        assert tts_server.health()["active_streams"] >= 1
    health = tts_server.wait_idle()
    assert health["running_requests"] == 0


async def test_ws_rejected_streamed_segment_does_not_block_the_next_one(ws_client):
    await ws_client.send(type="speak", segment_id="huge", text="word " * 1000, **{"continue": True})
    error = await ws_client.until(lambda m: isinstance(m, dict) and m["type"] == "error")
    assert error["code"] == "too_large"
    await ws_client.send(type="speak", segment_id="next", text="Next.", max_tokens=28)
    assert (await ws_client.until_end("next"))["cancelled"] is False
    assert ("start", "huge") not in ws_client.order
