"""The server's end of life, each in a fresh server process (it exits): the vLLM engine core is
killed for real (health 503, requests refused, the stream in flight cut, exit status 1), and a
SIGTERM drain (health 503 "draining", no new streams, streams in flight finish within the grace,
the rest are ended with frames or cut, exit 0 without a traceback, even with a client that never
reads)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket

import httpx
import psutil
import pytest
import websockets

from tests.fixtures.processes import poll_until
from tests.fixtures.server import FRAME_SAMPLES, start_tts_server

pytestmark = pytest.mark.server

PCM = "/v1/audio/speech/stream"
WS_PATH = "/v1/audio/speech/stream/ws"
# Texts whose greedy generations are known to run to max_tokens (no early end-of-speech).
LONG = {"input": "This sentence goes on and on " + "and on " * 30 + "until the end.", "max_tokens": 7 * 400}
EXIT_TIMEOUT_S = 90


def _engine_cores(pid: int) -> list[psutil.Process]:
    children = psutil.Process(pid).children(recursive=True)
    return [p for p in children if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline())]


def test_engine_death_cuts_streams_turns_health_503_refuses_requests_and_exits_nonzero(tmp_path):
    server = start_tts_server(tmp_path)
    try:
        cores = _engine_cores(server.process.pid)
        assert len(cores) == 1, [(p.pid, p.name(), p.cmdline()[:3]) for p in
                                 psutil.Process(server.process.pid).children(recursive=True)]
        with httpx.stream("POST", f"{server.base_url}{PCM}", json=LONG, timeout=120) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            received = len(next(chunks))
            cores[0].send_signal(signal.SIGKILL)
            with pytest.raises(httpx.RemoteProtocolError):  # cut, not a clean end of the chunked body
                for chunk in chunks:
                    received += len(chunk)
        assert received < LONG["max_tokens"] // 7 * FRAME_SAMPLES * 2

        def failed_health():
            try:
                response = httpx.get(f"{server.base_url}/health", timeout=10)
            except httpx.TransportError:
                raise AssertionError("the server exited before /health said why") from None
            return response if response.status_code == 503 else None

        health = poll_until(failed_health, 30, what="/health 503")
        assert health.json()["status"] == "engine_failed" and health.json()["model_loaded"] is False
        refused = httpx.post(f"{server.base_url}{PCM}", json={"input": "Anyone there?"}, timeout=30)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "engine_failed"
        assert "engine" in refused.json()["error"]["message"]
        assert server.process.wait(timeout=EXIT_TIMEOUT_S) == 1, server.log_tail()
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def _never_reading_stream(base_url: str) -> socket.socket:
    """A long PCM request from a client that never reads (tiny receive buffer: the server blocks)."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    body = json.dumps(LONG).encode()
    sock.sendall(b"POST " + PCM.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return sock


async def test_sigterm_drains_streams_then_exits_zero_without_traceback(tmp_path):
    server = await asyncio.to_thread(start_tts_server, tmp_path, "--drain-grace-s", "20")
    stuck = None
    try:
        async with websockets.connect(f"{server.ws_url}{WS_PATH}") as long_ws, \
                websockets.connect(f"{server.ws_url}{WS_PATH}") as late_ws, \
                httpx.AsyncClient(timeout=120) as http:
            await long_ws.send(json.dumps({"type": "speak", "segment_id": "long", "text": LONG["input"],
                                           "max_tokens": LONG["max_tokens"]}))
            assert json.loads(await asyncio.wait_for(long_ws.recv(), 120))["type"] == "start"
            stuck = await asyncio.to_thread(_never_reading_stream, server.base_url)
            short_frames = 4
            async with http.stream("POST", f"{server.base_url}{PCM}",
                                   json={"input": "Hello there.", "voice": "leo", "max_tokens": 7 * short_frames}) as short:
                assert short.status_code == 200
                chunks = short.aiter_raw()
                body = bytearray(await chunks.__anext__())  # in flight: SIGTERM now
                server.process.send_signal(signal.SIGTERM)

                health = await http.get(f"{server.base_url}/health")
                assert health.status_code == 503 and health.json()["status"] == "draining"
                refused = await http.post(f"{server.base_url}{PCM}", json={"input": "Too late."})
                assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
                await late_ws.send(json.dumps({"type": "speak", "segment_id": "late", "text": "Too late."}))
                event = json.loads(await asyncio.wait_for(late_ws.recv(), 30))
                assert event["type"] == "error" and event["code"] == "draining", event

                async for chunk in chunks:  # finishes within the grace, complete
                    body += chunk
            assert len(body) == short_frames * FRAME_SAMPLES * 2

            # The long segment outlives the grace: an error saying why, its end, then close 1012.
            events = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    message = await asyncio.wait_for(long_ws.recv(), 60)
                    if isinstance(message, str):
                        events.append(json.loads(message))
            kinds = [(e["type"], e.get("code")) for e in events]
            assert ("error", "shutting_down") in kinds and events[-1] == {"type": "end", "segment_id": "long",
                                                                          "cancelled": True}, events
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012

        code = await asyncio.to_thread(server.process.wait, EXIT_TIMEOUT_S)
        log = server.log_path.read_text(errors="replace")
        assert code == 0, server.log_tail()
        assert "Traceback" not in log, log[-4000:]
    finally:
        if stuck is not None:
            stuck.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
