"""Clients that hold resources without using them: half-open WebRTC listeners, slowloris
connections, WebSocket and HTTP clients that stop reading, connections queueing endless segments,
and oversized chunked bodies. Every one is bounded and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription

from agent.server.config import ServerSettings
from agent.server.main import is_loopback, refuse_open_server
from agent.server.rtc import _offer_loopback_candidates
from tests.fixtures.processes import poll_until
from tests.fixtures.secured_server import HEADER_TIMEOUT_S, MAX_QUEUED_SEGMENTS, RTC_MAX_LISTENERS

WS_PATH = "/v1/audio/speech/stream/ws"
LONG_TEXT = " ".join(["This sentence goes on and on " + "and on " * 30 + "until the end."] * 4)
BOUND_S = 240  # generous: "settles, does not hang" (generation crawls on 2 shared cores)


def idle(server) -> bool:
    health = server.health()
    return health["active_streams"] == 0 and health["running_requests"] == 0


# ---- WebRTC: half-open listeners lose their slots

class Peer:
    """An aiortc peer that posts an offer; what it does with the answer is up to the test."""

    def __init__(self, secured_server) -> None:
        self.server = secured_server
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("tts")
        self.messages: asyncio.Queue[dict] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.channel.on("open", self.opened.set)
        self.channel.on("message", lambda m: self.messages.put_nowait(json.loads(m)))

    async def offer(self) -> httpx.Response:
        self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient(headers=self.server.auth, timeout=60) as client:
            return await client.post(f"{self.server.base_url}/rtc/offer",
                                      json={"sdp": self.pc.localDescription.sdp, "type": "offer"})

    async def apply(self, response: httpx.Response) -> None:
        answer = response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))


def rtc_listeners(server) -> int:
    return server.server.health()["rtc_listeners"]


async def wait_listeners(server, count: int) -> None:
    deadline = time.monotonic() + BOUND_S
    while rtc_listeners(server) != count:
        assert time.monotonic() < deadline, f"rtc_listeners stuck at {rtc_listeners(server)}"
        await asyncio.sleep(0.2)


async def test_rtc_peers_that_never_apply_the_answer_free_their_slots_and_a_new_listener_gets_in(secured_server):
    _offer_loopback_candidates()
    await wait_listeners(secured_server, 0)
    ghosts = [Peer(secured_server) for _ in range(RTC_MAX_LISTENERS)]
    try:
        for ghost in ghosts:  # take the answer, never apply it
            assert (await ghost.offer()).status_code == 200
        refused = await Peer(secured_server).offer()
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "busy"
        await wait_listeners(secured_server, 0)  # the connect timeout frees them
        newcomer = Peer(secured_server)
        await newcomer.apply(await newcomer.offer())
        await asyncio.wait_for(newcomer.opened.wait(), 60)
        newcomer.channel.send(json.dumps({"type": "ping"}))
        assert await asyncio.wait_for(newcomer.messages.get(), 30) == {"type": "pong"}
        await newcomer.pc.close()
    finally:
        for ghost in ghosts:
            await ghost.pc.close()
    await wait_listeners(secured_server, 0)


async def test_rtc_peer_that_closes_during_ice_set_up_frees_its_slot(secured_server):
    _offer_loopback_candidates()
    await wait_listeners(secured_server, 0)
    quitters = [Peer(secured_server) for _ in range(RTC_MAX_LISTENERS)]
    for quitter in quitters:
        response = await quitter.offer()
        await quitter.apply(response)
        await quitter.pc.close()  # gone before ICE/DTLS could finish
    await wait_listeners(secured_server, 0)
    newcomer = Peer(secured_server)
    await newcomer.apply(await newcomer.offer())
    await asyncio.wait_for(newcomer.opened.wait(), 60)
    await newcomer.pc.close()


# ---- slowloris: connections that never finish their headers

def test_connection_that_never_completes_its_headers_is_closed(secured_server):
    host, port = secured_server.base_url.removeprefix("http://").split(":")
    silent = socket.create_connection((host, int(port)))
    trickle = socket.create_connection((host, int(port)))
    try:
        trickle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # ...and never the blank line
        for sock in (silent, trickle):
            sock.settimeout(HEADER_TIMEOUT_S + 30)
            assert sock.recv(1024) == b""  # closed by the server, not left hanging
    finally:
        silent.close()
        trickle.close()
    with httpx.Client(base_url=secured_server.base_url, timeout=30) as client:  # normal clients unaffected
        assert client.get("/health").status_code == 200 and client.get("/health").status_code == 200


# ---- WebSocket: bounded queue, slow consumer

async def test_ws_connection_refuses_segments_past_its_queue_bound_and_keeps_serving(secured_server):
    async with websockets.connect(f"{secured_server.ws_url}{WS_PATH}", additional_headers=secured_server.auth,
                                  max_size=None) as ws:
        await ws.send(json.dumps({"type": "speak", "segment_id": "playing", "text": LONG_TEXT, "max_tokens": 7000}))
        while not (isinstance(m := await asyncio.wait_for(ws.recv(), 120), str) and json.loads(m)["type"] == "start"):
            pass
        for i in range(MAX_QUEUED_SEGMENTS + 1):
            await ws.send(json.dumps({"type": "speak", "segment_id": f"q{i}", "text": "Queued."}))
        await ws.send(json.dumps({"type": "ping"}))
        errors, pong = [], None
        while pong is None:
            message = await asyncio.wait_for(ws.recv(), 120)
            if isinstance(message, str):
                event = json.loads(message)
                errors += [event] if event["type"] == "error" else []
                pong = event if event["type"] == "pong" else None
        assert [(e["code"], e["segment_id"]) for e in errors] == [("too_many_segments", f"q{MAX_QUEUED_SEGMENTS}")]
        await ws.send(json.dumps({"type": "cancel"}))
    poll_until(lambda: idle(secured_server.server), BOUND_S, interval_s=0.2, what="idle after the queued segments")


async def test_ws_client_that_stops_reading_gets_slow_consumer_and_a_close_with_reason(secured_server):
    host, port = secured_server.base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast: the server's sends must wait
    sock.connect((host, int(port)))
    async with websockets.connect(f"{secured_server.ws_url}{WS_PATH}", additional_headers=secured_server.auth,
                                  sock=sock, max_size=None, max_queue=1, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "speak", "segment_id": "flood", "text": LONG_TEXT, "max_tokens": 7000}))
        await asyncio.sleep(1)
        # the client reads nothing now; the server must give up on it, not keep generating
        deadline = time.monotonic() + BOUND_S
        while not idle(secured_server.server):
            assert time.monotonic() < deadline, "the stream of a client that stopped reading is still running"
            await asyncio.sleep(0.2)
        events = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                message = await asyncio.wait_for(ws.recv(), 60)
                if isinstance(message, str):
                    events.append(json.loads(message))
    assert any(e["type"] == "error" and e["code"] == "slow_consumer" for e in events), events
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "slow_consumer" in closed.value.rcvd.reason


# ---- HTTP: a client that never reads its stream

def test_http_client_that_never_reads_does_not_hold_its_stream(secured_server):
    host, port = secured_server.base_url.removeprefix("http://").split(":")
    body = json.dumps({"input": LONG_TEXT, "max_tokens": 7000}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    try:
        sock.sendall(b"POST /v1/audio/speech/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {secured_server.api_key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        time.sleep(1)
        poll_until(lambda: idle(secured_server.server), BOUND_S, interval_s=0.2, what="the stalled stream's end")  # socket still open
        received = bytearray()
        sock.settimeout(60)
        while chunk := sock.recv(1 << 16):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")
        assert not received.endswith(b"0\r\n\r\n")  # cut, not a complete chunked body
    finally:
        sock.close()


# ---- bodies, strict values

def test_chunked_body_over_the_limit_gets_413(tts_server):
    def fifty_megabytes():
        for _ in range(50):
            yield b"x" * (1 << 20)

    try:
        response = httpx.post(f"{tts_server.base_url}/v1/audio/speech", content=fifty_megabytes(),
                              headers={"content-type": "application/json"}, timeout=60)
    except httpx.TransportError:  # the server may close while the rest is still being written: ask again
        pytest.fail("the server closed the connection without answering 413")
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert httpx.get(f"{tts_server.base_url}/health", timeout=30).status_code == 200


def test_unknown_huge_voice_is_not_echoed_back(tts_server):
    response = httpx.post(f"{tts_server.base_url}/v1/audio/speech", json={"input": "hi", "voice": "v" * 100_000},
                          timeout=30)
    assert response.status_code == 400 and len(response.content) < 1000
    assert response.json()["error"]["param"] == "voice"


def test_open_server_rule():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    assert refuse_open_server(ServerSettings(host="127.0.0.1")) is None
    assert refuse_open_server(ServerSettings(host="0.0.0.0")) is not None
    assert refuse_open_server(ServerSettings(host="0.0.0.0", allow_no_auth=True)) is None
    assert refuse_open_server(ServerSettings(host="0.0.0.0", api_keys="k" * 20)) is None
