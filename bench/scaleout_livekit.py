"""The LiveKit tier scaled out: rooms served at once, and per room the time from a listener's join
to the first audible audio of its agent's greeting, on two livekit-server nodes sharing Redis
against one node, in the same run.

    python bench/scaleout_livekit.py [--rooms 6] [--rounds 2] [--jobs-per-worker 8]

Starts what the scale-out tests start (tests/fixtures/livekit_cluster.py), on free loopback ports:
the TTS server on the tiny model, then for each setup two agent workers (`python -m agent start`):
  * single: one livekit-server (livekit.yaml), both workers registered with it;
  * cluster: Redis and two nodes (livekit-redis.yaml, deploy/livekit-node-b.yaml), both workers
    registered through node A, listeners joining through A and B in turn.
Each round, ``--rooms`` listeners join new rooms at once; each listener's token dispatches the
agent (as the web page's tokens do), so the timing covers room creation, job dispatch, the
agent's join and the greeting's synthesis. A room whose greeting is not heard within
``--deadline`` seconds counts as not served. Prints one JSON object. The model is random: this
measures latency and capacity, not speech.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from livekit import api, rtc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.server.livekit_token import LiveKitTokenConfig, mint_listener_token  # noqa: E402
from tests.fixtures.livekit import CONFIG as SINGLE_NODE_CONFIG  # noqa: E402
from tests.fixtures.livekit import LiveKitServer, start_livekit_server  # noqa: E402
from tests.fixtures.livekit_cluster import (  # noqa: E402
    CLUSTER_AGENT_NAME,
    NODE_A_CONFIG,
    NODE_B_CONFIG,
    ClusterWorker,
    start_cluster_worker,
)
from tests.fixtures.phone import start_redis  # noqa: E402
from tests.fixtures.processes import poll_until, stop_process  # noqa: E402
from tests.fixtures.server import start_tts_server  # noqa: E402

SPEECH_RMS = 1000.0  # as tests/test_livekit_room.py: the tiny model's speech decodes at ~4000-5000


def summary(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None, "values": []}
    ordered = sorted(values)
    p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94] if len(ordered) > 1 else ordered[0]
    return {"p50": round(statistics.median(ordered), 3), "p95": round(p95, 3), "max": round(ordered[-1], 3),
            "values": [round(v, 3) for v in values]}


async def join_and_hear(server: LiveKitServer, room_name: str, deadline_s: float) -> float | None:
    """Seconds from the start of the join to the first audible frame of the agent; None if unheard."""
    heard = asyncio.get_running_loop().create_future()
    room = rtc.Room()
    readers: list[asyncio.Task] = []

    async def read(track: rtc.Track) -> None:
        async for event in rtc.AudioStream.from_track(track=track, sample_rate=24000, num_channels=1):
            pcm = np.frombuffer(event.frame.data, "<i2").astype(np.float64)
            if len(pcm) and np.sqrt(np.mean(pcm ** 2)) > SPEECH_RMS and not heard.done():
                heard.set_result(time.perf_counter())

    def on_track(track: rtc.Track, _publication, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            readers.append(asyncio.create_task(read(track)))

    room.on("track_subscribed", on_track)
    config = LiveKitTokenConfig(url=server.url, api_key=server.api_key, api_secret=server.api_secret,
                                agent_name=CLUSTER_AGENT_NAME)
    token = mint_listener_token(config, room=room_name, identity=f"listener-{uuid.uuid4().hex[:6]}", ttl_s=600)
    started = time.perf_counter()
    try:
        await room.connect(server.url, token)
        return await asyncio.wait_for(heard, deadline_s) - started
    except TimeoutError:
        return None
    finally:
        for task in readers:
            task.cancel()
        await room.disconnect()


async def end_rooms(servers: list[LiveKitServer], workers: list[ClusterWorker]) -> None:
    """Delete the round's rooms; wait until the workers run no job and take jobs again."""
    async with api.LiveKitAPI(servers[0].http_url, servers[0].api_key, servers[0].api_secret) as lk:
        for room in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms:
            await lk.room.delete_room(api.DeleteRoomRequest(room=room.name))
    await asyncio.to_thread(poll_until, lambda: sum(w.active_jobs() for w in workers) == 0, 120, interval_s=0.2,
                            what="no job left")
    await asyncio.to_thread(poll_until, lambda: all(w.reported_available() for w in workers), 30, interval_s=0.2,
                            what="workers available")


async def measure(servers: list[LiveKitServer], workers: list[ClusterWorker], rooms: int, rounds: int,
                  deadline_s: float) -> dict:
    times: list[float] = []
    served_per_round = []
    for _ in range(rounds):
        tag = uuid.uuid4().hex[:6]
        results = await asyncio.gather(*(join_and_hear(servers[i % len(servers)], f"bench-{tag}-{i}", deadline_s)
                                         for i in range(rooms)))
        heard = [t for t in results if t is not None]
        times += heard
        served_per_round.append(len(heard))
        await end_rooms(servers, workers)
    jobs = [len(w.rooms_served()) for w in workers]
    return {"rooms_served_at_once": served_per_round, "join_to_greeting_heard_s": summary(times),
            "jobs_per_worker": jobs}


def start_workers(stack: ExitStack, server: LiveKitServer, tts_url: str, workdir: Path, jobs: int) -> list[ClusterWorker]:
    workers = []
    for i in (1, 2):
        log_dir = workdir / f"worker-{i}"
        log_dir.mkdir()
        worker = start_cluster_worker(server, tts_url, log_dir, jobs=jobs)
        stack.callback(stop_process, worker.worker.process, 20)
        workers.append(worker)
    return workers


def run_setup(kind: str, tts_url: str, workdir: Path, args) -> dict:
    with ExitStack() as stack:
        if kind == "single":
            server, proc = start_livekit_server(workdir, config_file=SINGLE_NODE_CONFIG)
            stack.callback(stop_process, proc, 10)
            servers = [server]
        else:
            (workdir / "redis").mkdir()
            redis_address, redis = start_redis(workdir / "redis")
            stack.callback(stop_process, redis, 10)
            servers = []
            for name, config in (("a", NODE_A_CONFIG), ("b", NODE_B_CONFIG)):
                (workdir / name).mkdir()
                server, proc = start_livekit_server(workdir / name, config_file=config, redis_address=redis_address)
                stack.callback(stop_process, proc, 10)
                servers.append(server)
        workers = start_workers(stack, servers[0], tts_url, workdir, args.jobs_per_worker)
        return {"livekit_nodes": len(servers), "workers": len(workers),
                **asyncio.run(measure(servers, workers, args.rooms, args.rounds, args.deadline))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=6, help="rooms joined at once, each round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs-per-worker", type=int, default=8, help="ORPHEUS_AGENT_MAX_JOBS of each worker")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds a listener waits for the greeting")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-livekit-") as tmp:
        workdir = Path(tmp)
        (workdir / "server").mkdir()
        tts = start_tts_server(workdir / "server")
        try:
            report = {"rooms": args.rooms, "rounds": args.rounds, "jobs_per_worker_limit": args.jobs_per_worker}
            for kind in ("single", "cluster"):
                (workdir / kind).mkdir()
                report[kind] = run_setup(kind, tts.base_url, workdir / kind, args)
        finally:
            stop_process(tts.process)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
