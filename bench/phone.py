"""Phone calls: INVITE -> 200 OK, and answer -> first audible audio at the caller, over several calls.

    python bench/phone.py [--calls 6] [--greeting "Hello, you have reached the Orpheus agent."]

Starts the phone path on free loopback ports the way the phone tests do: the TTS server on the tiny
model, Redis, livekit-server with Redis (livekit-redis.yaml), livekit-sip (sip/livekit-sip.yaml), the
shipped trunk and its bound dispatch rule, and `python -m agent start`. A PJSUA2 phone (G.711 µ-law,
8 kHz) places the calls one after another; each call waits until the agent has said the greeting,
then hangs up. First audible audio is read off the caller's recording (10 ms frames above the
tests' speech level), counted from the 200 OK.

Baseline, same run, same server, before each call: the TTS server's own time to first audio for the
greeting over its WebSocket (what the agent's plugin waits for before anything can play), so the
phone path's own share is the difference. Prints one JSON object. The model is random: this measures latency, not speech.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.phone import (  # noqa: E402
    CallObserver,
    provision_phone_line,
    room_of,
    start_livekit_phone_server,
    start_phone_worker,
    start_redis,
    start_sip_bridge,
)
from tests.fixtures.processes import stop_process  # noqa: E402
from tests.fixtures.server import start_tts_server  # noqa: E402
from tests.fixtures.sip_caller import SipPhone, speech_runs  # noqa: E402
from tts_plugin.protocol import WS_PATH  # noqa: E402

SPEECH_RMS = 1000.0  # as tests/test_phone.py: the tiny model's noise arrives at ~3500, silence at ~3
DRAIN_S = 1.0


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94] if len(ordered) > 1 else ordered[0]
    return {"p50": round(statistics.median(ordered), 3), "p95": round(p95, 3), "max": round(ordered[-1], 3),
            "values": [round(v, 3) for v in values]}


async def one_call(phone: SipPhone, bridge, line, livekit) -> dict:
    caller = "+1555" + str(uuid.uuid4().int)[:7]
    call = phone.dial(bridge.uri(line.numbers[0]), caller=caller)
    room = await room_of(livekit, caller)
    observer = await CallObserver().join(livekit, room)
    try:
        result = await call.wait_answered(60)
        if result.status_code != 200:
            raise RuntimeError(f"call not answered: {result.log}")
        await observer.utterance_done(1, deadline_s=300)
        await asyncio.sleep(DRAIN_S)
    finally:
        await observer.close()
        call.hang_up()
    await call.wait_ended(30)
    runs = speech_runs(call.recorded(), SPEECH_RMS)
    if not runs:
        raise RuntimeError("the caller heard nothing")
    return {"invite_to_200_s": result.answered_at - result.invite_at,
            "answer_to_first_audio_s": (result.recording_from - result.answered_at) + runs[0][0],
            "heard_s": sum(length for _, length in runs)}


async def server_ttfb(ws, text: str, index: int) -> float:
    """First audio of one segment on an open WebSocket (the plugin keeps its connections open too)."""
    sent = time.perf_counter()
    await ws.send(json.dumps({"type": "speak", "segment_id": f"b{index}", "text": text}))
    first = None
    async for message in ws:
        if isinstance(message, bytes) and first is None:
            first = time.perf_counter()
        elif isinstance(message, str) and json.loads(message).get("type") == "end":
            break
    return first - sent


async def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-phone-"))
    stops = []
    try:
        tts = start_tts_server(workdir)
        stops.append(tts.process)
        redis_address, redis = start_redis(workdir)
        stops.append(redis)
        livekit, livekit_proc = start_livekit_phone_server(workdir, redis_address)
        stops.append(livekit_proc)
        bridge = start_sip_bridge(workdir, livekit, redis_address)
        stops.append(bridge.process)
        line = await provision_phone_line(livekit)
        worker = start_phone_worker(workdir, livekit, tts.base_url, line.agent_name, args.greeting)
        stops.append(worker.process)
        phone = await SipPhone(workdir).start()
        calls, baseline = [], []
        try:
            # Interleaved, so both see the same load; the baseline goes first, because after a
            # call the worker starts a fresh idle job process (seconds of CPU) to replace the used one.
            async with websockets.connect(f"{tts.ws_url}{WS_PATH}", max_size=None) as ws:
                for i in range(args.calls):
                    baseline.append(await server_ttfb(ws, args.greeting, i))
                    calls.append(await one_call(phone, bridge, line, livekit))
        finally:
            await phone.close()
    finally:
        for process in reversed(stops):
            stop_process(process, 20)
    answer_to_audio = summary([c["answer_to_first_audio_s"] for c in calls])
    ttfb = summary(baseline)
    return {
        "calls": args.calls, "greeting": args.greeting, "cores": os.cpu_count(), "codec": "PCMU/8000",
        "invite_to_200_ok_s": summary([c["invite_to_200_s"] for c in calls]),
        "answer_to_first_audio_s": answer_to_audio,
        "baseline_server_ttfb_s": ttfb,
        "phone_path_share_p50_s": round(answer_to_audio["p50"] - ttfb["p50"], 3),
        "heard_s": summary([c["heard_s"] for c in calls]),
        "logs": str(workdir),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--greeting", default="Hello, you have reached the Orpheus agent.")
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
