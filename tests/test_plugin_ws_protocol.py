"""The plugin's WebSocket client against a scripted server: protocol rules, no engine needed.

The real server is exercised in test_plugin_tts.py; here a tiny aiohttp server plays exact
message sequences (stale audio of another segment, errors, slow streams) that the real one
produces only under races.
"""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest
from aiohttp import WSMsgType, web
from livekit.agents import APIConnectionError, APIConnectOptions, APIError, APIStatusError

from tts_plugin import OrpheusTTS
from tts_plugin.protocol import ErrorCode

NO_RETRY = APIConnectOptions(max_retry=0, timeout=10)
ONE_RETRY = APIConnectOptions(max_retry=1, retry_interval=0.05, timeout=10)
TONE = (np.sin(np.arange(4800) * 2 * np.pi * 440 / 24000) * 8000).astype("<i2").tobytes()  # 0.2 s


class ScriptedServer:
    """Speaks TONE for every segment; ``stale`` first replays audio of a foreign segment id."""

    def __init__(self, *, stale: bool = False, error_code: str | None = None, endless: bool = False,
                 error_once: bool = False, heartbeat: float | None = None, model: str | None = None) -> None:
        self.stale, self.error_code, self.endless, self.error_once = stale, error_code, endless, error_once
        self.heartbeat, self.model = heartbeat, model  # heartbeat: ping that often, close without a pong
        self.connections = 0
        self.errors_sent = 0
        self.messages: list[dict] = []
        self.cancelled = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=self.heartbeat)
        await ws.prepare(request)
        self.connections += 1
        speaker: asyncio.Task | None = None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.messages.append(data)
            sid = data.get("segment_id")
            if data["type"] == "cancel":
                self.cancelled.set()
                if speaker:
                    speaker.cancel()
                await ws.send_json({"type": "end", "segment_id": sid, "cancelled": True})
            elif data["type"] == "speak" and self.error_code:
                await ws.send_json({"type": "error", "segment_id": sid, "code": self.error_code,
                                    "message": "refused by the script"})
                self.errors_sent += 1
                if self.error_once:
                    self.error_code = None
            elif data["type"] == "speak" and speaker is None:
                speaker = asyncio.create_task(self.speak(ws, sid))
            elif data["type"] == "speak" and not data["continue"] and speaker is not None and not self.endless:
                await speaker
                speaker = None
                await ws.send_json({"type": "end", "segment_id": sid, "cancelled": False})
        return ws

    async def speak(self, ws: web.WebSocketResponse, sid: str) -> None:
        if self.stale:  # what a reused socket may still carry from an interrupted turn
            await ws.send_json({"type": "start", "segment_id": "old-turn", "sample_rate": 24000})
            await ws.send_bytes(b"\xff\x7f" * 4800)
            await ws.send_json({"type": "end", "segment_id": "old-turn", "cancelled": True})
            await ws.send_bytes(b"\xff\x7f" * 4800)  # a frame outside any segment
        await ws.send_json({"type": "start", "segment_id": sid, "sample_rate": 24000, "channels": 1,
                            "format": "pcm_s16le", **({"model": self.model} if self.model else {})})
        await ws.send_bytes(TONE)
        while self.endless:
            await asyncio.sleep(0.05)
            await ws.send_bytes(TONE)

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_get("/v1/audio/speech/stream/ws", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


def pcm_of(frame) -> bytes:
    return bytes(frame.data.cast("B"))


def is_tone(audio: bytes) -> bool:
    """TONE, then at most the framework's silent end-of-segment marker (10 ms of zeros)."""
    return audio[:len(TONE)] == TONE and not audio[len(TONE):].strip(b"\0")


async def test_audio_of_another_segment_on_the_socket_is_never_played():
    async with ScriptedServer(stale=True) as server:
        tts = OrpheusTTS(server_url=server.url)
        try:
            frame = await tts.synthesize("Hello there.", conn_options=NO_RETRY).collect()
        finally:
            await tts.aclose()
    assert is_tone(pcm_of(frame))  # exactly this segment's audio, none of the 0x7fff junk


async def test_an_idle_pooled_socket_answers_the_servers_pings_and_serves_the_next_turn():
    # The server closes a socket that leaves its pings unanswered; aiohttp answers only while
    # something reads, so without the pool's idle reader the second turn would find a dead socket.
    async with ScriptedServer(heartbeat=0.5) as server:
        tts = OrpheusTTS(server_url=server.url)
        try:
            first = await tts.synthesize("Hello there.", conn_options=NO_RETRY).collect()
            await asyncio.sleep(2.5)  # five ping intervals with nobody speaking
            second = await tts.synthesize("Hello again.", conn_options=NO_RETRY).collect()
        finally:
            await tts.aclose()
    assert is_tone(pcm_of(first)) and is_tone(pcm_of(second))
    assert server.connections == 1  # the same socket, kept alive while it sat in the pool


async def test_the_plugin_reports_the_checkpoint_the_server_names():
    async with ScriptedServer(model="my-orpheus-finetune") as server:
        tts = OrpheusTTS(server_url=server.url)
        try:
            assert tts.model == "orpheus"  # the family, before the server has said more
            await tts.synthesize("Hello there.", conn_options=NO_RETRY).collect()
            assert tts.model == "my-orpheus-finetune"
        finally:
            await tts.aclose()


async def test_stream_sends_tokens_then_ends_the_segment_with_continue_false():
    async with ScriptedServer() as server:
        tts = OrpheusTTS(server_url=server.url, voice="leo", temperature=0.5)
        try:
            stream = tts.stream(conn_options=NO_RETRY)
            for token in ["Hi", " there.", " Bye."]:
                stream.push_text(token)
            stream.end_input()
            audio = b"".join([pcm_of(ev.frame) async for ev in stream])
            await stream.aclose()
        finally:
            await tts.aclose()
    speaks = [m for m in server.messages if m["type"] == "speak"]
    assert [m["text"] for m in speaks] == ["Hi", " there.", " Bye.", ""]
    assert [m["continue"] for m in speaks] == [True, True, True, False]
    assert {m["segment_id"] for m in speaks} == {speaks[0]["segment_id"]}
    assert {m["voice"] for m in speaks} == {"leo"} and {m["temperature"] for m in speaks} == {0.5}
    assert is_tone(audio)


async def test_update_options_applies_to_new_streams_and_running_streams_keep_theirs():
    async with ScriptedServer() as server:
        tts = OrpheusTTS(server_url=server.url, voice="tara")
        try:
            first = tts.stream(conn_options=NO_RETRY)
            tts.update_options(voice="zoe", seed=7)
            second = tts.stream(conn_options=NO_RETRY)
            for stream in (first, second):
                stream.push_text("Hello there.")
                stream.end_input()
                async for _ in stream:
                    pass
                await stream.aclose()
        finally:
            await tts.aclose()
    by_segment: dict[str, dict] = {}
    for m in server.messages:
        if m["type"] == "speak" and m["text"]:
            by_segment.setdefault(m["segment_id"], m)
    first_msg, second_msg = by_segment.values()
    assert first_msg["voice"] == "tara" and "seed" not in first_msg
    assert second_msg["voice"] == "zoe" and second_msg["seed"] == 7


def test_update_options_refuses_out_of_range_sampling():
    tts = OrpheusTTS(server_url="http://127.0.0.1:9")
    with pytest.raises(ValueError):
        tts.update_options(temperature=5.0)
    with pytest.raises(ValueError):
        OrpheusTTS(server_url="http://127.0.0.1:9", top_p=0.0)
    assert tts.voice == "tara"


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
async def test_every_server_error_code_raises_its_livekit_exception_and_only_retryable_ones_are_retried(code):
    async with ScriptedServer(error_code=code.value) as server:
        tts = OrpheusTTS(server_url=server.url)
        try:
            with pytest.raises(APIError) as caught:
                await tts.synthesize("Hello there.", conn_options=ONE_RETRY).collect()
        finally:
            await tts.aclose()
    error = caught.value
    if code.closes_connection:
        assert type(error) is APIConnectionError
    else:
        assert type(error) is APIStatusError and error.status_code == code.status and error.body["code"] == code
    assert error.retryable is code.retryable
    attempts = len([m for m in server.messages if m["type"] == "speak" and m["text"]])
    assert attempts == (2 if code.retryable else 1)


async def test_an_unreachable_server_raises_a_connection_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tts = OrpheusTTS(server_url=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(APIConnectionError):
            await tts.synthesize("Hello there.", conn_options=NO_RETRY).collect()
    finally:
        await tts.aclose()


async def test_closing_a_stream_mid_speech_sends_cancel_for_its_segment():
    async with ScriptedServer(endless=True) as server:
        tts = OrpheusTTS(server_url=server.url)
        try:
            stream = tts.stream(conn_options=NO_RETRY)
            stream.push_text("Talk forever.")
            stream.end_input()
            async for _ in stream:
                break  # audio is flowing: interrupt
            await stream.aclose()
            await asyncio.wait_for(server.cancelled.wait(), 30)
        finally:
            await tts.aclose()
    cancel = next(m for m in server.messages if m["type"] == "cancel")
    speak = next(m for m in server.messages if m["type"] == "speak")
    assert cancel["segment_id"] == speak["segment_id"]


async def test_a_busy_refusal_is_retried_and_the_retry_speaks():
    async with ScriptedServer(error_code="busy", error_once=True) as server:
        tts = OrpheusTTS(server_url=server.url)
        try:
            retry = APIConnectOptions(max_retry=2, retry_interval=0.1, timeout=10)
            frame = await tts.synthesize("Hello there.", conn_options=retry).collect()
        finally:
            await tts.aclose()
    assert server.errors_sent == 1 and is_tone(pcm_of(frame))
