"""Where the time goes between text and a listener hearing it: every hop, the LiveKit path against
the server's own first audio and the embedded WebRTC path, in one run.

    python bench/latency.py [--rounds 6] [--join-rounds 3] [--modes dev,start] [--baseline-ref REV]

Starts livekit-server (livekit.yaml on free ports), the TTS server (tiny model, greedy, prebuffer 0)
and, per mode, the agent worker (`python -m agent dev|start`, ORPHEUS_AGENT_TRACE_HOPS=1). A Python
listener (livekit `rtc.AudioStream`, 24 kHz) joins a room per round and:
- join -> greeting heard: `room.connect` starts the clock; heard = the first 10 ms frame above speech level
  (hops: job_started, the greeting's stream_opened / first_text_sent / first_audio_received,
  session_started (room connected, track published), first_push, first_capture);
- chat -> heard: sends `lk.chat` text, then waits for the first frame above speech level.
Hops come from the worker's log (`tts_plugin/hops.py`: one `hop <name> <key> <unix time>` line each,
taken with `time.time()` in the job process; everything runs on this machine, so all clocks are one):
text_received (worker got the chat) -> say (after interrupting) -> stream_opened (plugin stream) ->
first_text_sent (to the TTS server) -> first_audio_received (the server's first audio, over loopback)
-> first_push (to livekit-agents' emitter) -> first_capture (the room's AudioSource) -> heard. The
same chat rounds from headless Chromium on web/livekit.html (heard = the agent track's
`totalAudioEnergy` rising in `getStats`, Date.now() in the page), unless --no-chromium.
Baselines in the same run: the TTS server's own first audio (a WebSocket client, request -> first
byte), the embedded WebRTC path (aiortc listener, data-channel speak -> first audible frame), and with
``--baseline-ref`` the same rounds through a worker running an older commit's code (a git worktree;
same TTS server, same LiveKit server).
Prints one JSON object. The model is random: this measures time, not speech.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.livekit import start_agent_worker, start_livekit_server  # noqa: E402
from tests.fixtures.processes import stop_process  # noqa: E402
from tests.fixtures.server import start_tts_server  # noqa: E402
from tts_plugin.protocol import CHANNELS, SAMPLE_RATE, WS_PATH  # noqa: E402

SPEECH_RMS = 1000.0  # the random model's speech decodes at ~4000-5000 RMS; silence is ~0
AGENT = "orpheus-latency"
GREETING = "Hello there."
CHAT = "Say this back to me."
HOP_LINE = re.compile(r"hop (\w+) (\S+) (\d+\.\d+)")
JOIN_HOPS = ["job_started", "stream_opened", "first_text_sent", "first_audio_received", "session_started",
             "first_push", "first_capture"]
CHAT_HOPS = ["text_received", "say", "stream_opened", "first_text_sent", "first_audio_received", "first_push",
             "first_capture"]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1), "n": len(ordered)}


class RoomListener:
    """Joins a room, decodes the agent's audio, and notes the wall time of each 10 ms frame's level."""

    def __init__(self) -> None:
        from livekit import rtc

        self.room = rtc.Room()
        self.frames: list[tuple[float, float]] = []  # (unix time received, rms)
        self.state = ""
        self.state_changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.room.on("track_subscribed", self._on_track)
        self.room.on("participant_attributes_changed", self._on_attributes)

    def _on_track(self, track, publication, participant) -> None:
        from livekit import rtc

        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._tasks.append(asyncio.create_task(self._read(track)))

    def _on_attributes(self, changed: dict, participant) -> None:
        if "lk.agent.state" in changed:
            self.state = changed["lk.agent.state"]
            self.state_changed.set()

    async def _read(self, track) -> None:
        from livekit import rtc

        async for event in rtc.AudioStream.from_track(track=track, sample_rate=SAMPLE_RATE, num_channels=CHANNELS):
            pcm = np.frombuffer(event.frame.data, "<i2").astype(np.float64)
            self.frames.append((time.time(), float(np.sqrt(np.mean(pcm ** 2))) if len(pcm) else 0.0))

    async def heard_after(self, since: float, timeout_s: float = 120) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, rms in self.frames:
                if at >= since and rms > SPEECH_RMS:
                    return at
            await asyncio.sleep(0.005)
        raise TimeoutError("no speech heard")

    async def quiet(self, timeout_s: float = 120) -> None:
        """The agent is back to listening and nothing loud has played for a while (the jitter buffer
        drains after the state attribute changes)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            loud = [at for at, rms in self.frames if rms > SPEECH_RMS]
            if self.state != "speaking" and (not loud or time.time() - loud[-1] > 1.0):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the agent kept speaking")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.room.disconnect()


def token(livekit, room: str) -> str:
    from livekit import api

    grants = api.VideoGrants(room_join=True, room=room, can_publish=False, can_subscribe=True, can_publish_data=True)
    dispatch = api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=AGENT)])
    return (api.AccessToken(livekit.api_key, livekit.api_secret).with_identity(f"listener-{uuid.uuid4().hex[:6]}")
            .with_grants(grants).with_room_config(dispatch).to_jwt())


def hops_between(log: Path, since: float, until: float) -> dict[str, float]:
    """The first mark of each hop name logged in [since, until]."""
    marks: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        found = HOP_LINE.search(line)
        if found and since <= float(found[3]) <= until:
            marks.setdefault(found[1], float(found[3]))
    return marks


async def server_first_audio(ws_url: str, rounds: int) -> list[float]:
    import websockets

    ttfbs = []
    async with websockets.connect(f"{ws_url}{WS_PATH}") as ws:
        for index in range(rounds):
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "speak", "segment_id": f"d{index}", "text": CHAT}))
            first = None
            while True:
                message = await ws.recv()
                if isinstance(message, bytes) and first is None:
                    first = time.perf_counter() - sent
                elif isinstance(message, str) and json.loads(message)["type"] == "end":
                    break
            ttfbs.append(first)
    return ttfbs


async def embedded_webrtc(base_url: str, rounds: int) -> dict:
    """aiortc listener of the server's own WebRTC room: speak -> the server's first_audio event, and
    speak -> first audible 20 ms frame."""
    from agent.server.rtc import _offer_loopback_candidates
    from tests.test_server_rtc import PythonListener

    class TimedListener(PythonListener):
        arrivals: list[tuple[float, float]]  # (perf_counter, rms) of each 20 ms frame

        async def _read(self, track) -> None:
            self.arrivals = []
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(np.float64).reshape(-1, len(frame.layout.channels))[:, 0]
                self.arrivals.append((time.perf_counter(), float(np.sqrt(np.mean(samples ** 2)))))

    _offer_loopback_candidates()
    listener = TimedListener(base_url)
    await listener.connect()
    server, heard = [], []
    try:
        await asyncio.sleep(1.0)
        for _ in range(rounds):
            sent = time.perf_counter()
            listener.send(type="speak", text=CHAT)
            first_audio = await listener.next_event("first_audio")
            server.append(first_audio["ttfb_ms"] / 1000)
            while not (loud := [at for at, rms in listener.arrivals if at >= sent and rms > SPEECH_RMS]):
                await asyncio.sleep(0.005)
            heard.append(loud[0] - sent)
            await listener.next_event("end")
            await asyncio.sleep(1.5)  # the utterance plays out
    finally:
        await listener.close()
    return {"server_first_audio": server, "heard": heard}


async def livekit_rounds(livekit, worker, join_rounds: int, chat_rounds: int) -> dict:
    joins, chats = [], []
    for index in range(max(join_rounds, 1)):
        listener = RoomListener()
        room = f"lat-{uuid.uuid4().hex[:8]}"
        joined = time.time()
        await listener.room.connect(livekit.url, token(livekit, room))
        heard = await listener.heard_after(joined)
        marks = hops_between(worker.log_path, joined - 1, heard + 5)
        joins.append({"join_to_heard": heard - joined, **{k: v - joined for k, v in marks.items() if k in JOIN_HOPS}})
        await listener.quiet()
        if index == 0:
            for _ in range(chat_rounds):
                sent = time.time()
                await listener.room.local_participant.send_text(CHAT, topic="lk.chat")
                heard_at = await listener.heard_after(sent)
                await listener.quiet()
                marks = hops_between(worker.log_path, sent, heard_at)
                chats.append({"sent": sent, "heard": heard_at, **marks})
        await listener.close()
    return {"joins": joins[:join_rounds], "chats": chats}


def chat_summary(chats: list[dict]) -> dict:
    """Each hop's time since the chat was sent, and the gap after the server's first audio."""
    out = {"chat_to_heard": percentiles([c["heard"] - c["sent"] for c in chats])}
    for hop in CHAT_HOPS:
        out[f"to_{hop}"] = percentiles([c[hop] - c["sent"] for c in chats if hop in c])
    out["server_first_audio_to_heard"] = percentiles(
        [c["heard"] - c["first_audio_received"] for c in chats if "first_audio_received" in c])
    out["text_sent_to_server_first_audio"] = percentiles(
        [c["first_audio_received"] - c["first_text_sent"] for c in chats if "first_audio_received" in c])
    return out


async def chromium_rounds(livekit, server, worker, rounds: int) -> list[dict]:
    """web/livekit.html in headless Chromium: chat sent -> the agent track's audio energy rises."""
    import shutil

    if not (shutil.which("node") and Path("/usr/bin/chromium").exists()):
        return []
    room = f"lat-{uuid.uuid4().hex[:8]}"
    page = f"{server.base_url}/livekit.html?{urlencode({'url': livekit.url, 'token': token(livekit, room), 'autojoin': '1'})}"
    done = await asyncio.to_thread(subprocess.run, ["node", str(ROOT / "bench" / "browser" / "livekit_heard.mjs"),
                                                     page, str(rounds), CHAT],
                                   cwd=ROOT, capture_output=True, text=True, timeout=600)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result.get("ok"):
        raise RuntimeError(f"Chromium run failed: {result.get('error')}")
    chats = []
    for r in result["rounds"]:
        if r["heard"] is None:
            continue
        sent, heard = r["sent"] / 1000, r["heard"] / 1000
        browser = {k: r[k] for k in ("jitter_buffer_ms", "jitter_buffer_target_ms", "packets_received", "opus_fmtp")}
        chats.append({"sent": sent, "heard": heard, "browser": browser, **hops_between(worker.log_path, sent, heard)})
    return chats


def browser_summary(chats: list[dict]) -> dict:
    """Chromium's side: how long its jitter buffer held the first half second of speech (its
    ``jitterBufferDelay`` per sample played) and the target it aimed for, and the Opus parameters."""
    stats = [c["browser"] for c in chats]
    return {
        **chat_summary(chats),
        "jitter_buffer_ms": percentiles([s["jitter_buffer_ms"] / 1000 for s in stats if s["jitter_buffer_ms"]]),
        "jitter_buffer_target_ms": percentiles([s["jitter_buffer_target_ms"] / 1000 for s in stats]),
        "packets_between_chat_and_heard": [s["packets_received"] for s in stats],
        "opus_fmtp": stats[0]["opus_fmtp"] if stats else None,
    }


async def measure_worker(livekit, server, log_dir: Path, mode: str, tree: Path, args) -> dict:
    log_dir.mkdir()
    worker = start_agent_worker(livekit, server.base_url, log_dir, mode=mode, agent_name=AGENT, greeting=GREETING,
                                tree=tree, ORPHEUS_AGENT_TRACE_HOPS="1")
    try:
        await asyncio.sleep(3.0)  # start mode: let it prewarm its idle job processes
        rounds = await livekit_rounds(livekit, worker, args.join_rounds, args.rounds)
        browser = await chromium_rounds(livekit, server, worker, args.rounds) if args.chromium else []
    finally:
        stop_process(worker.process, 20)
    return {
        "join_to_greeting_heard": percentiles([j["join_to_heard"] for j in rounds["joins"]]),
        **{f"join_to_{hop}": percentiles([j[hop] for j in rounds["joins"] if hop in j]) for hop in JOIN_HOPS},
        **chat_summary(rounds["chats"]),
        "chromium": browser_summary(browser) if browser else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="chat utterances per mode")
    parser.add_argument("--join-rounds", type=int, default=3, help="rooms joined per mode (greeting latency)")
    parser.add_argument("--modes", default="dev,start")
    parser.add_argument("--baseline-ref", help="git revision whose worker runs the same rounds (before/after)")
    parser.add_argument("--no-chromium", dest="chromium", action="store_false",
                        help="skip the Chromium listener (web/livekit.html)")
    args = parser.parse_args()
    result: dict = {"rounds": args.rounds, "join_rounds": args.join_rounds}
    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        work = Path(tmp)
        (work / "lk").mkdir()
        (work / "server").mkdir()
        livekit, livekit_proc = start_livekit_server(work / "lk")
        server = start_tts_server(work / "server", "--rtc-prebuffer-ms", "0")
        try:
            await server_first_audio(server.ws_url, 2)  # warm-up: the first requests after start are slow
            direct = await server_first_audio(server.ws_url, args.rounds)
            result["server_first_audio"] = percentiles(direct)
            embedded = await embedded_webrtc(server.base_url, args.rounds)
            result["embedded_webrtc"] = {
                "server_first_audio": percentiles(embedded["server_first_audio"]),
                "speak_to_heard": percentiles(embedded["heard"]),
                "server_first_audio_to_heard": percentiles(
                    [h - s for h, s in zip(embedded["heard"], embedded["server_first_audio"])]),
            }
            trees = {"": ROOT}
            if args.baseline_ref:
                trees["baseline_"] = work / "baseline-tree"
                subprocess.run(["git", "worktree", "add", "--detach", "-q", str(trees["baseline_"]), args.baseline_ref],
                               cwd=ROOT, check=True)
                result["baseline_ref"] = args.baseline_ref
            try:
                for mode in args.modes.split(","):
                    for prefix, tree in trees.items():
                        result[prefix + mode] = await measure_worker(livekit, server, work / f"{prefix}{mode}", mode,
                                                                     tree, args)
            finally:
                if args.baseline_ref:
                    subprocess.run(["git", "worktree", "remove", "--force", str(trees["baseline_"])], cwd=ROOT)
        finally:
            stop_process(server.process)
            stop_process(livekit_proc, 10)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
