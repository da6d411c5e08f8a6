"""Embedded WebRTC listener (aiortc): no LiveKit server needed.

``POST /rtc/offer`` answers a browser's SDP offer (non-trickle). Each listener gets its own audio
track, which sends 24 kHz mono Opus encoded here with PyAV in 20 ms packets; aiortc only packetises
them (its own encoder would resample to 48 kHz stereo). Silence fills the gaps, so the track stays
alive. Text to speak comes over the listener's data channel, and plays to that listener only:

  page -> server: {"type":"speak","text":"...","voice":"tara", <sampling>}  {"type":"stop"}  {"type":"ping"}
  server -> page: {"type":"start"} {"type":"first_audio","ttfb_ms"} {"type":"metrics",...}
                  {"type":"end","cancelled":bool} {"type":"error","code","message"} {"type":"pong"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from fractions import Fraction

import aioice.ice
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tts_plugin.protocol import (
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    ClientMessage,
    ErrorCode,
    ServerMessage,
    metrics_payload,
    to_ms,
)

from .admission import Busy
from .errors import ApiError, describe_validation_error
from .speech_request import SamplingFields
from .state import ServerState

log = logging.getLogger("orpheus.server.rtc")

router = APIRouter()

PACKET_SAMPLES = SAMPLE_RATE // 50  # 20 ms
PACKET_BYTES = PACKET_SAMPLES * SAMPLE_WIDTH
OPUS_BITRATE = 32000


class OpusSpeechTrack(MediaStreamTrack):
    """Audio track fed with PCM; ``recv()`` paces 20 ms Opus packets in real time, silence when idle."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pcm = bytearray()
        self._encoder = av.CodecContext.create("libopus", "w")
        self._encoder.sample_rate = SAMPLE_RATE
        self._encoder.layout = "mono"
        self._encoder.format = "s16"
        self._encoder.bit_rate = OPUS_BITRATE
        self._encoder.time_base = Fraction(1, SAMPLE_RATE)
        self._encoder.open()
        self._started_at: float | None = None
        self._pts = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._holding = False

    def hold(self) -> None:
        """Queue audio without playing it yet (a jitter pre-buffer for the next utterance)."""
        self._holding = True

    def release(self) -> None:
        self._holding = False

    @property
    def buffered_s(self) -> float:
        return len(self._pcm) / 2 / SAMPLE_RATE

    def push(self, pcm: bytes) -> None:
        self._pcm.extend(pcm)
        self._drained.clear()

    def clear(self) -> None:
        self._pcm.clear()
        self._holding = False
        self._drained.set()

    async def wait_played(self) -> None:
        await self._drained.wait()

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._started_at is None:
            self._started_at = time.monotonic()
        due = self._started_at + self._pts / SAMPLE_RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.2:  # the loop stalled: re-anchor instead of bursting to catch up
            self._started_at += -delay

        chunk = b""
        if not self._holding:
            chunk = bytes(self._pcm[:PACKET_BYTES])
            del self._pcm[:PACKET_BYTES]
            if not self._pcm:
                self._drained.set()
        samples = np.zeros(PACKET_SAMPLES, dtype=np.int16)
        samples[: len(chunk) // 2] = np.frombuffer(chunk, dtype="<i2")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        packets = self._encoder.encode(frame)  # libopus: one packet per 20 ms frame
        packet = packets[0] if packets else av.Packet(b"\xf8\xff\xfe")  # Opus DTX/silence TOC
        packet.pts = self._pts
        packet.time_base = Fraction(1, SAMPLE_RATE)
        self._pts += PACKET_SAMPLES
        return packet


class ChannelSpeak(SamplingFields):
    model_config = ConfigDict(extra="forbid")
    type: str = "speak"
    text: str
    voice: str | None = Field(None, max_length=64)


class Listener:
    """One browser: a peer connection, its speech track, its data channel, at most one utterance."""

    def __init__(self, state: ServerState, on_closed) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.state = state
        self.pc = RTCPeerConnection()
        self.track = OpusSpeechTrack()
        self.channel = None
        self.speaking: asyncio.Task | None = None
        self._on_closed = on_closed
        self._closed = False
        self._connect_deadline: asyncio.TimerHandle | None = None

        @self.pc.on("datachannel")
        def _on_channel(channel) -> None:
            self.channel = channel
            channel.on("message", lambda message: self._on_message(message))

        @self.pc.on("connectionstatechange")
        async def _on_state() -> None:
            if self.pc.connectionState == "connected":
                self._cancel_deadline()
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    def expire_unless_connected(self, timeout_s: float) -> None:
        """A peer that took the answer and never connected (or left during ICE/DTLS) frees its slot."""
        def expire() -> None:
            if self.pc.connectionState != "connected" and not self._closed:
                log.info("listener %s did not connect within %.0f s (%s); freeing its slot",
                         self.id, timeout_s, self.pc.connectionState)
                self._closing = asyncio.create_task(self.close())

        self._connect_deadline = asyncio.get_running_loop().call_later(timeout_s, expire)

    def _cancel_deadline(self) -> None:
        if self._connect_deadline is not None:
            self._connect_deadline.cancel()
            self._connect_deadline = None

    async def answer(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        # The transceiver exists before the offer is applied, so codec negotiation sees the
        # preference: the track sends Opus packets, nothing else would fit.
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"])
        await self.pc.setRemoteDescription(offer)
        await self.pc.setLocalDescription(await self.pc.createAnswer())  # waits for ICE gathering
        return self.pc.localDescription

    # ---- data channel
    def _send(self, payload: dict) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(payload))

    def _error(self, code: ErrorCode, message: str) -> None:
        self.state.metrics.error("rtc", code)
        self._send({"type": ServerMessage.ERROR, "code": code, "message": message})

    def _on_message(self, message) -> None:
        if not isinstance(message, str):
            return self._error(ErrorCode.BAD_REQUEST, "binary messages are not accepted; send JSON text")
        try:
            data = json.loads(message)
        except json.JSONDecodeError as exc:
            return self._error(ErrorCode.BAD_JSON, f"malformed JSON: {exc.msg}")
        except RecursionError:
            return self._error(ErrorCode.BAD_JSON, "malformed JSON: nested too deeply")
        if not isinstance(data, dict):
            return self._error(ErrorCode.BAD_REQUEST, "each message must be a JSON object")
        kind = data.get("type")
        if kind == ClientMessage.PING:
            self._send({"type": ServerMessage.PONG})
        elif kind == ClientMessage.STOP:
            self.stop()
        elif kind == ClientMessage.SPEAK:
            try:
                request = ChannelSpeak.model_validate(data)
            except ValidationError as exc:
                return self._error(ErrorCode.BAD_REQUEST,
                                   "; ".join(describe_validation_error(e)[0] for e in exc.errors()))
            self.speak(request)
        else:
            self._error(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}; expected speak, stop or ping")

    # ---- speaking
    def speak(self, request: ChannelSpeak) -> None:
        if (refusal := self.state.refusal()) is not None:
            return self._error(*refusal)
        engine = self.state.engine
        try:
            stream = engine.synthesize(request.text, voice=request.voice, options=request.sampling(),
                                       request_id=f"rtc-{self.id}-{uuid.uuid4().hex[:8]}")
        except ValueError as exc:
            return self._error(ErrorCode.BAD_REQUEST, str(exc))
        self.stop()  # a new utterance replaces the one playing
        self.speaking = asyncio.create_task(self._play(stream))

    def stop(self) -> None:
        if self.speaking and not self.speaking.done():
            self.speaking.cancel()
        self.track.clear()

    async def _play(self, stream) -> None:
        try:
            slot = await self.state.admission.acquire("rtc")
        except Busy as exc:
            return self._error(ErrorCode.BUSY, str(exc))  # no start: the utterance was never admitted
        try:
            await self._play_admitted(stream)
        finally:
            slot.release()

    async def _play_admitted(self, stream) -> None:
        self._send({"type": ServerMessage.START, "request_id": stream.metrics.request_id})
        first = True
        prebuffer_s = self.state.settings.rtc_prebuffer_ms / 1000
        if prebuffer_s > 0:
            self.track.hold()
        try:
            async with contextlib.aclosing(self.state.metrics.observe(stream, "rtc")) as chunks:
                async for pcm in chunks:
                    if first:
                        first = False
                        self._send({"type": ServerMessage.FIRST_AUDIO, "ttfb_ms": to_ms(stream.metrics.ttfb_s)})
                    self.track.push(pcm)
                    if self.track.buffered_s >= prebuffer_s:
                        self.track.release()
            self.track.release()
            self._send({"type": ServerMessage.METRICS, **metrics_payload(stream.metrics)})
            await self.track.wait_played()
            self._send({"type": ServerMessage.END, "cancelled": False})
        except asyncio.CancelledError:
            self._send({"type": ServerMessage.END, "cancelled": True})
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the page, the listener stays
            log.exception("listener %s: speech failed", self.id)
            self._error(ErrorCode.ENGINE_ERROR, str(exc))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_deadline()
        self.stop()
        self.track.stop()
        await self.pc.close()
        self._on_closed(self)


class RtcListeners:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.listeners: dict[str, Listener] = {}
        if state.settings.rtc_loopback_candidates:
            _offer_loopback_candidates()

    @property
    def listener_count(self) -> int:
        return len(self.listeners)

    async def connect(self, offer: RTCSessionDescription) -> tuple[Listener, RTCSessionDescription]:
        if len(self.listeners) >= self.state.settings.rtc_max_listeners:
            # a full listener table is 503 Service Unavailable (a stream slot's queue wait is busy's 429)
            raise ApiError(ErrorCode.BUSY, "too many WebRTC listeners", status=503)
        listener = Listener(self.state, self._forget)
        self.listeners[listener.id] = listener
        self.state.metrics.rtc_listeners.set(len(self.listeners))
        try:
            answer = await listener.answer(offer)
        except Exception as exc:
            await listener.close()
            raise ApiError(ErrorCode.BAD_OFFER, f"cannot answer the offer: {exc}") from None
        listener.expire_unless_connected(self.state.settings.rtc_connect_timeout_s)
        return listener, answer

    def _forget(self, listener: Listener) -> None:
        self.listeners.pop(listener.id, None)
        self.state.metrics.rtc_listeners.set(len(self.listeners))

    async def aclose(self) -> None:
        await asyncio.gather(*(listener.close() for listener in list(self.listeners.values())),
                             return_exceptions=True)


def _offer_loopback_candidates() -> None:
    """aioice leaves 127.0.0.1 out of its host candidates; a loopback-only host then has none."""
    original = aioice.ice.get_host_addresses
    if getattr(original, "with_loopback", False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        return addresses + ["127.0.0.1"] if use_ipv4 and "127.0.0.1" not in addresses else addresses

    with_loopback.with_loopback = True
    aioice.ice.get_host_addresses = with_loopback


class Offer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sdp: str = Field(..., min_length=1, max_length=100_000)
    type: str = Field("offer", pattern="^offer$")


@router.post("/rtc/offer", tags=["webrtc"])
async def rtc_offer(offer: Offer, request: Request) -> dict:
    """Answer an SDP offer (gather complete, no trickle). Open a data channel to send text."""
    state: ServerState = request.app.state.server
    if (refusal := state.refusal()) is not None:  # state.rtc exists whenever the engine does
        raise ApiError(*refusal)
    if "m=audio" not in offer.sdp:
        raise ApiError(ErrorCode.BAD_OFFER, "the offer has no audio section; add a recvonly audio transceiver")
    listener, answer = await state.rtc.connect(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    return {"sdp": answer.sdp, "type": answer.type, "listener_id": listener.id}
