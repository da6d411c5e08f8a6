"""Soak: concurrent WebSocket clients for a while, with random cancels, dropped connections and
reconnects, against a server this script starts (tiny model, random SNAC, 8 stream slots).

    python bench/soak.py [--clients 8] [--duration 60] [--warmup 10] [--seed 1]

Each client connects, speaks 1-4 segments of 1-2 sentences, and per segment either lets it finish,
cancels it after a random delay, or drops the connection mid-segment; then it reconnects or carries
on with the same socket. Samples expected are what the server says it generated (each finished
segment's ``metrics`` message: whole 2048-sample frames), received are the PCM samples between its
``start`` and ``end``: lost must be 0. ``busy`` refusals are counted, not hidden. The baseline, in
the same run: the server's memory (RSS, engine core process included) after a ``--warmup`` soak
(first batches, buffers, allocator arenas), against its memory at the end; and the server idle
(0 running requests) once every client has gone.
Prints one JSON object. The model is random: this measures robustness, not speech.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.processes import stop_process  # noqa: E402
from tests.fixtures.server import start_tts_server  # noqa: E402
from tts_plugin.protocol import SAMPLE_RATE, WS_PATH  # noqa: E402

FRAME_SAMPLES = 2048
SENTENCES = ["Hello there.", "How are you today?", "This is a soak test.", "Numbers like 42 are fine.",
             "Keep going, please.", "One more sentence, then another.", "Short.", "Is anyone listening?"]
RECEIVE_TIMEOUT_S = 120


@dataclass
class Tally:
    streams: int = 0
    completed: int = 0
    cancelled: int = 0
    dropped: int = 0
    connections: int = 0
    busy: int = 0
    samples_expected: int = 0
    samples_received: int = 0
    errors: Counter = field(default_factory=Counter)


def rss_mib(pid: int) -> dict:
    """RSS of the server process and of its children (vLLM's engine core), MiB."""
    process = psutil.Process(pid)
    children = sum(c.memory_info().rss for c in process.children(recursive=True))
    server = process.memory_info().rss
    return {"total": round((server + children) / 2**20, 1), "server": round(server / 2**20, 1),
            "engine_core": round(children / 2**20, 1)}


async def speak_segment(ws, segment_id: str, rng: random.Random, tally: Tally) -> bool:
    """One segment; returns False when the connection was dropped (the caller reconnects)."""
    text = " ".join(rng.sample(SENTENCES, rng.randint(1, 2)))
    ending = rng.choices(["finish", "cancel", "drop"], weights=[6, 3, 1])[0]
    await ws.send(json.dumps({"type": "speak", "segment_id": segment_id, "text": text}))
    tally.streams += 1
    started_at: float | None = None
    act_after = rng.uniform(0.05, 1.5)
    received = 0
    acted = False
    while True:
        timeout = RECEIVE_TIMEOUT_S
        if ending != "finish" and started_at is not None and not acted:
            timeout = max(0.0, started_at + act_after - time.monotonic())
        try:
            message = await asyncio.wait_for(ws.recv(), timeout)
        except TimeoutError:
            if started_at is None or acted or ending == "finish":
                raise
            acted = True
            if ending == "drop":
                tally.dropped += 1
                await ws.close()
                return False
            await ws.send(json.dumps({"type": "cancel", "segment_id": segment_id}))
            continue
        if isinstance(message, bytes):
            received += len(message) // 2
            continue
        event = json.loads(message)
        if event.get("segment_id") != segment_id:
            continue
        kind = event["type"]
        if kind == "start":
            started_at = time.monotonic()
        elif kind == "error":
            tally.errors[event["code"]] += 1
            if event["code"] == "busy":
                tally.busy += 1
                return True  # refused before start: nothing else comes for it
        elif kind == "metrics":  # a segment that ran to its end: every sample must have arrived
            expected = round(event["audio_s"] * SAMPLE_RATE / FRAME_SAMPLES) * FRAME_SAMPLES
            tally.samples_expected += expected
            tally.samples_received += received
        elif kind == "end":
            if event["cancelled"]:
                tally.cancelled += 1
            else:
                tally.completed += 1
            return True


async def client(index: int, url: str, deadline: float, seed: int, tally: Tally) -> None:
    rng = random.Random(seed * 1000 + index)
    serial = 0
    while time.monotonic() < deadline:
        tally.connections += 1
        async with websockets.connect(url, max_size=None) as ws:
            for _ in range(rng.randint(1, 4)):
                if time.monotonic() >= deadline:
                    break
                serial += 1
                if not await speak_segment(ws, f"c{index}-{serial}", rng, tally):
                    break


async def soak(base_url: str, ws_url: str, clients: int, duration_s: float, seed: int) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + duration_s
    await asyncio.gather(*(client(i, f"{ws_url}{WS_PATH}", deadline, seed, tally) for i in range(clients)))
    return tally


def wait_idle(base_url: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        health = httpx.get(f"{base_url}/health", timeout=10).json()
        if (health["running_requests"] == 0 and health["active_streams"] == 0) or time.monotonic() > deadline:
            return health
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of soak")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of soak before the baseline RSS")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as log_dir:
        server = start_tts_server(Path(log_dir))
        try:
            rss_fresh = rss_mib(server.process.pid)
            if args.warmup > 0:
                asyncio.run(soak(server.base_url, server.ws_url, args.clients, args.warmup, args.seed + 1))
                wait_idle(server.base_url)
            rss_start = rss_mib(server.process.pid)
            started = time.monotonic()
            tally = asyncio.run(soak(server.base_url, server.ws_url, args.clients, args.duration, args.seed))
            elapsed = time.monotonic() - started
            health = wait_idle(server.base_url)
            rss_end = rss_mib(server.process.pid)
        finally:
            stop_process(server.process)
    print(json.dumps({
        "clients": args.clients, "duration_s": args.duration, "elapsed_s": round(elapsed, 1),
        "streams": tally.streams, "completed": tally.completed, "cancelled": tally.cancelled,
        "dropped_connections": tally.dropped, "connections": tally.connections,
        "busy_refusals": tally.busy, "errors": dict(tally.errors),
        "samples_expected": tally.samples_expected, "samples_received": tally.samples_received,
        "samples_lost": tally.samples_expected - tally.samples_received,
        "rss_fresh_mib": rss_fresh, "rss_start_mib": rss_start, "rss_end_mib": rss_end, "rss_growth_mib": round(rss_end["total"] - rss_start["total"], 1),
        "running_requests_end": health["running_requests"], "active_streams_end": health["active_streams"],
        "admitted_streams_end": health["admitted_streams"], "stream_limit": health["stream_limit"],
    }, indent=2))


if __name__ == "__main__":
    main()
