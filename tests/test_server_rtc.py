"""Embedded WebRTC room: Python aiortc listeners connect to the real server, ask for speech over the
data channel and decode the Opus audio they receive."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from agent.server.rtc import _offer_loopback_candidates
from tests.fixtures.server import DEFAULT_MAX_TOKENS, FRAME_SAMPLES

EVENT_TIMEOUT_S = 300
SENTENCE_S = DEFAULT_MAX_TOKENS // 7 * FRAME_SAMPLES / 24000
BLOCK_S = 0.02


class PythonListener:
    """A listener like the page: recvonly audio + a "tts" data channel; records decoded audio."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("tts")
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.blocks: list[float] = []  # RMS of each received 20 ms frame
        self.rates: set[int] = set()
        self.opened = asyncio.Event()
        self.channel.on("open", self.opened.set)
        self.channel.on("message", lambda m: self.events.put_nowait(json.loads(m)))
        self._reader: asyncio.Task | None = None

        @self.pc.on("track")
        def _on_track(track) -> None:
            self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(np.float64).reshape(-1, len(frame.layout.channels))[:, 0]
                self.rates.add(frame.sample_rate)
                self.blocks.append(float(np.sqrt(np.mean(samples ** 2))) if samples.size else 0.0)
        except MediaStreamError:
            pass

    async def connect(self) -> dict:
        self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{self.base_url}/rtc/offer", timeout=60,
                                         json={"sdp": self.pc.localDescription.sdp, "type": "offer"})
        response.raise_for_status()
        answer = response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(self.opened.wait(), 60)
        return answer

    def send(self, **message) -> None:
        self.channel.send(json.dumps(message))

    async def next_event(self, kind: str) -> dict:
        while True:
            event = await asyncio.wait_for(self.events.get(), EVENT_TIMEOUT_S)
            if event["type"] == kind:
                return event

    def voiced_seconds(self, threshold: float = 30.0) -> float:
        """Received audio with energy (the track carries digital silence between utterances)."""
        return sum(BLOCK_S for rms in self.blocks if rms > threshold)

    def speech_seconds(self) -> float:
        """Blocks at speech level. When generation runs slower than real time the track plays
        bursts, and Opus fades each burst out over ~10 blocks: a relative threshold skips the fades."""
        loud = np.percentile([rms for rms in self.blocks if rms > 30.0], 90)
        return sum(BLOCK_S for rms in self.blocks if rms > 0.35 * loud)

    async def close(self) -> None:
        await self.pc.close()
        if self._reader:
            await asyncio.gather(self._reader, return_exceptions=True)


@pytest.fixture
async def listener(tts_server):
    _offer_loopback_candidates()  # aioice skips 127.0.0.1; needed on a loopback-only machine
    client = PythonListener(tts_server.base_url)
    await client.connect()
    yield client
    await client.close()


async def settle(listener: PythonListener, seconds: float = 0.4) -> None:
    """Keep receiving a little after "end" so the last packets in flight are counted."""
    target = len(listener.blocks) + int(seconds / BLOCK_S)
    deadline = time.monotonic() + 30
    while len(listener.blocks) < target and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def audio_codecs(sdp: str) -> set[str]:
    section = sdp.split("m=audio", 1)[1].split("\nm=", 1)[0]
    return {line.split(" ", 1)[1].strip() for line in section.splitlines() if line.startswith("a=rtpmap:")}


async def test_rtc_answer_offers_opus_only(tts_server):
    _offer_loopback_candidates()
    client = PythonListener(tts_server.base_url)
    try:
        answer = await client.connect()
        assert audio_codecs(answer["sdp"]) == {"opus/48000/2"}  # the track sends Opus packets only
    finally:
        await client.close()


async def test_rtc_listener_receives_opus_speech_of_the_generated_duration(listener, tts_server):
    assert tts_server.health()["rtc_listeners"] >= 1
    listener.send(type="speak", text="Hello over WebRTC.", voice="tara")
    assert (await listener.next_event("start"))["type"] == "start"
    first_audio = await listener.next_event("first_audio")
    metrics = await listener.next_event("metrics")
    end = await listener.next_event("end")
    await settle(listener)
    assert first_audio["ttfb_ms"] > 0 and end["cancelled"] is False
    assert metrics["audio_s"] == pytest.approx(SENTENCE_S, abs=1e-3)
    assert listener.rates == {48000}  # libopus always decodes at 48 kHz; the RTP clock is 48 kHz
    assert listener.voiced_seconds() > 0
    # Every generated sample is played once, in one piece (the test server pre-buffers): the
    # speech-level part matches the generated duration to within a few 20 ms blocks.
    speech = listener.speech_seconds()
    assert metrics["audio_s"] - 0.06 <= speech <= metrics["audio_s"] + 0.08, (speech, metrics, listener.blocks)


async def test_rtc_track_stays_alive_with_silence_between_utterances(listener):
    await settle(listener, 0.5)
    assert len(listener.blocks) >= 20 and listener.voiced_seconds() == 0  # silence, yet packets flow


async def test_rtc_stop_cancels_speech_and_generation(listener, tts_server):
    long_sentence = "This sentence goes on and on " + "and on " * 30 + "until the end."
    listener.send(type="speak", text=long_sentence, max_tokens=7000)
    await listener.next_event("first_audio")
    listener.send(type="stop")
    end = await listener.next_event("end")
    assert end["cancelled"] is True
    tts_server.wait_idle()


async def test_rtc_data_channel_rejects_bad_messages_and_keeps_working(listener):
    for message, code in [("{oops", "bad_json"), ("[" * 50_000, "bad_json"), (json.dumps({"type": "dance"}), "unknown_type"),
                          (json.dumps({"type": "speak", "text": ""}), "bad_request"),
                          (json.dumps({"type": "speak", "text": "hi", "voice": "nobody"}), "bad_request"),
                          (json.dumps({"type": "speak", "text": "hi", "top_p": 3}), "bad_request")]:
        listener.channel.send(message)
        error = await listener.next_event("error")
        assert error["code"] == code and error["message"]
    listener.send(type="ping")
    assert await listener.next_event("pong") == {"type": "pong"}


async def test_rtc_several_listeners_each_hear_only_their_own_speech(tts_server):
    _offer_loopback_candidates()
    a, b = PythonListener(tts_server.base_url), PythonListener(tts_server.base_url)
    try:
        answers = [await a.connect(), await b.connect()]
        assert answers[0]["listener_id"] != answers[1]["listener_id"]
        assert tts_server.health()["rtc_listeners"] >= 2
        a.send(type="speak", text="Only for A.", max_tokens=28)
        await a.next_event("end")
        await settle(a)
        await settle(b)
        assert a.voiced_seconds() > 0 and b.voiced_seconds() == 0
        b.send(type="speak", text="Now for B.", max_tokens=28)
        await b.next_event("end")
        await settle(b)
        assert b.voiced_seconds() > 0
    finally:
        await a.close()
        await b.close()


async def test_rtc_listener_leaving_mid_speech_is_forgotten_and_its_generation_stops(tts_server):
    _offer_loopback_candidates()
    client = PythonListener(tts_server.base_url)
    answer = await client.connect()
    client.send(type="speak", text="This sentence goes on and on " + "and on " * 30 + "until the end.",
                max_tokens=7000)
    await client.next_event("first_audio")
    await client.close()
    deadline = time.monotonic() + 60
    while tts_server.health()["rtc_listeners"] and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert tts_server.health()["rtc_listeners"] == 0, answer["listener_id"]
    assert tts_server.wait_idle()["running_requests"] == 0
