"""The shared server under load: a pathological text does not freeze it, and overload is an
explicit ``busy`` (HTTP 429, WebSocket error), never a silent wait. Real server process, tiny model
(8 stream slots, the fixture's ``--max-streams 8``; 2 s queue wait, the default)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from tests.fixtures.server import FRAME_SAMPLES

WS_PATH = "/v1/audio/speech/stream/ws"
PATHOLOGICAL = "a) b) " * 666  # 3,995 characters: pysbd alone spends minutes on it
# Texts whose greedy generations are known to run to max_tokens (no early end-of-speech).
LONG = {"text": "This sentence goes on and on " + "and on " * 30 + "until the end.", "max_tokens": 7 * 400}
BOUND_S = 20  # generous: "not frozen", not a speed claim
SLOTS = 8


async def _speak(ws, segment_id: str, **fields) -> None:
    await ws.send(json.dumps({"type": "speak", "segment_id": segment_id, **LONG, **fields}))


async def _next_event(ws, timeout: float = 300) -> dict:
    """The next JSON event (audio frames skipped)."""
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout)
        if isinstance(message, str):
            return json.loads(message)


async def test_pathological_text_does_not_stall_health_or_other_streams(tts_server):
    async with websockets.connect(f"{tts_server.ws_url}{WS_PATH}") as ws, httpx.AsyncClient(timeout=BOUND_S) as http:
        await _speak(ws, "steady")
        assert (await _next_event(ws))["type"] == "start"
        arrivals: list[float] = []

        async def record_audio() -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    arrivals.append(time.monotonic())

        recorder = asyncio.create_task(record_audio())
        while not arrivals:
            await asyncio.sleep(0.05)

        async def pathological() -> None:
            async with httpx.AsyncClient(timeout=600) as other:
                async with other.stream("POST", f"{tts_server.base_url}/v1/audio/speech/stream",
                                        json={"input": PATHOLOGICAL, "max_tokens": 7}) as response:
                    async for _ in response.aiter_bytes():
                        pass

        heavy = asyncio.create_task(pathological())
        try:
            await asyncio.sleep(0.5)  # the request is in the server
            window_start = time.monotonic()
            for _ in range(3):
                health = await http.get(f"{tts_server.base_url}/health")  # times out at BOUND_S if frozen
                assert health.status_code == 200
            deadline = window_start + 3 * BOUND_S
            while len([t for t in arrivals if t >= window_start]) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            seen = [t for t in arrivals if t >= window_start][:3]
            assert len(seen) == 3, "the other stream got no audio while the pathological text was split"
            gaps = [b - a for a, b in zip([window_start, *seen], seen)]
            assert max(gaps) < BOUND_S, gaps
        finally:
            heavy.cancel()
            await asyncio.gather(heavy, return_exceptions=True)
            await ws.send(json.dumps({"type": "cancel", "segment_id": "steady"}))
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
    await asyncio.to_thread(tts_server.wait_idle)


async def test_overload_is_refused_busy_and_a_freed_slot_admits_the_next(tts_server):
    url = f"{tts_server.ws_url}{WS_PATH}"
    sockets = [await websockets.connect(url) for _ in range(SLOTS + 2)]
    try:
        holders, refused_ws, waiting_ws = sockets[:SLOTS], sockets[SLOTS], sockets[SLOTS + 1]
        for i, ws in enumerate(holders):
            await _speak(ws, f"hold-{i}")
        for ws in holders:
            assert (await _next_event(ws))["type"] == "start"

        health = httpx.get(f"{tts_server.base_url}/health", timeout=30).json()
        assert health["stream_limit"] == SLOTS and health["admitted_streams"] == SLOTS
        assert health["running_requests"] <= SLOTS

        # A ninth stream waits for the queue timeout, then is refused: no start, an error "busy".
        await _speak(refused_ws, "too-many")
        event = await _next_event(refused_ws, timeout=60)
        assert event["type"] == "error" and event["code"] == "busy" and event["segment_id"] == "too-many", event

        response = httpx.post(f"{tts_server.base_url}/v1/audio/speech/stream", json={"input": "One more."},
                              timeout=60)
        assert response.status_code == 429, response.text
        assert int(response.headers["retry-after"]) >= 1
        error = response.json()["error"]
        assert error["code"] == "busy" and "busy" in error["message"] and error["type"]

        metrics = httpx.get(f"{tts_server.base_url}/metrics", timeout=30).text
        assert "orpheus_queue_depth" in metrics and "orpheus_stream_limit 8.0" in metrics
        refused = {line.split("{")[1].split("}")[0]: float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("orpheus_streams_refused_total{")}
        assert refused.get('transport="ws"', 0) >= 1 and refused.get('transport="pcm"', 0) >= 1, refused
        assert "orpheus_streams_admitted_total{transport=\"ws\"}" in metrics

        # A stream in line is admitted as soon as a slot frees.
        await _speak(waiting_ws, "next-in-line")
        await asyncio.sleep(0.3)
        await holders[0].send(json.dumps({"type": "cancel", "segment_id": "hold-0"}))
        event = await _next_event(waiting_ws, timeout=60)
        assert event["type"] == "start" and event["segment_id"] == "next-in-line", event
    finally:
        for ws in sockets:
            await ws.close()
    health = await asyncio.to_thread(tts_server.wait_idle)
    assert health["admitted_streams"] == 0 and health["queued_streams"] == 0


def test_health_reports_the_stream_limit(tts_server):
    health = tts_server.health()
    assert health["stream_limit"] == SLOTS and health["status"] == "ok"


@pytest.mark.parametrize("samples", [FRAME_SAMPLES])
def test_streams_run_normally_after_overload(tts_server, samples):
    response = httpx.post(f"{tts_server.base_url}/v1/audio/speech/stream", json={"input": "Hello there.", "voice": "leo", "max_tokens": 7},
                          timeout=300)
    assert response.status_code == 200 and len(response.content) == samples * 2
