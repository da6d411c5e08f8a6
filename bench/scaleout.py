"""The whole shape scaled out: rooms served, what the balancer costs, how long a failover and a drain take.

    python bench/scaleout.py [--rooms 6] [--room-rounds 1] [--rounds 20] [--failovers 2] [--drains 1]

Starts the cluster the scale-out tests use (tests/fixtures/tts_cluster.py): one `vllm serve` on the
tiny model, two TTS replicas generating on it, HAProxy with deploy/haproxy.cfg. Then:

- TTFB (request sent -> first PCM byte, raw PCM over HTTP, one short sentence, one stream at a time),
  through the balancer and, as the baseline in the same run, straight to one replica, interleaved.
- The proxy hop alone: GET /health round trips, through the balancer and straight to a replica.
- Failover: the plugin (OrpheusTTS, default retry options but a 60 s timeout) speaks a long text through
  the balancer; once its audio flows, the replica serving it is SIGKILLed. Failover time = kill -> the
  first audio of the retried synthesis (re-generated from the start on the survivor). The survivor's
  plain TTFB of the same run is printed beside it: the difference is what the failure itself costs.
- Drain: a long PCM stream through the balancer; once its audio flows, its replica gets SIGTERM.
  Drain time = SIGTERM -> process exit; also SIGTERM -> the stream's last byte.

- Rooms served (``--rooms``, 0 to skip): Redis, two livekit-server nodes and two agent workers in
  start mode speaking through the balancer (bench/scaleout_livekit.py's cluster setup); ``--rooms``
  listeners join new rooms at once, each round; a room is served when its listener hears the
  greeting; join -> greeting heard p50/p95. (bench/scaleout_livekit.py alone compares one node.)

Prints one JSON object. The model is random: this measures the plumbing, not speech.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livekit.agents import APIConnectOptions  # noqa: E402

from bench.scaleout_livekit import run_setup as run_livekit_cluster  # noqa: E402
from tests.fixtures.tts_cluster import Replica, TtsCluster, start_tts_cluster  # noqa: E402
from tests.fixtures.vllm_server import start_vllm_server  # noqa: E402
from tts_plugin import OrpheusTTS  # noqa: E402

PCM = "/v1/audio/speech/stream"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def summary(values: list[float]) -> dict:
    return {"p50_ms": pct(values, 0.5), "p95_ms": pct(values, 0.95), "n": len(values)}


async def ttfb(client: httpx.AsyncClient, base_url: str, text: str) -> float:
    started = time.perf_counter()
    async with client.stream("POST", f"{base_url}{PCM}", json={"input": text}) as response:
        response.raise_for_status()
        first = None
        async for chunk in response.aiter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
    return first


def serving(cluster: TtsCluster) -> Replica:
    """The replica holding the one stream in flight."""
    busy = [r for r in cluster.replicas if r.health().json()["admitted_streams"] > 0]
    assert len(busy) == 1, [r.health().json() for r in cluster.replicas]
    return busy[0]


async def failover(cluster: TtsCluster) -> dict:
    tts = OrpheusTTS(server_url=cluster.balancer_url, max_tokens=7 * 40)
    try:
        stream = tts.synthesize("A long sentence that will move to the other replica.",
                                conn_options=APIConnectOptions(timeout=60))
        events = aiter(stream)
        first = await anext(events)
        victim = serving(cluster)
        killed_at = time.perf_counter()
        victim.kill()
        async for event in events:
            if event.request_id != first.request_id:
                recovered = time.perf_counter() - killed_at
                break
        async for _ in events:
            pass
    finally:
        await tts.aclose()
    survivor = next(r for r in cluster.replicas if r is not victim)
    async with httpx.AsyncClient(timeout=120) as client:
        survivor_ttfb = await ttfb(client, survivor.base_url, "Baseline on the survivor.")
    await asyncio.to_thread(cluster.restore)
    return {"failover_s": round(recovered, 3), "survivor_ttfb_s": round(survivor_ttfb, 3)}


async def drain(cluster: TtsCluster) -> dict:
    async with httpx.AsyncClient(timeout=120) as client:
        async with client.stream("POST", f"{cluster.balancer_url}{PCM}",
                                 json={"input": "A stream in flight while its replica stops.",
                                       "max_tokens": 7 * 40}) as response:
            chunks = response.aiter_raw()
            await anext(chunks)
            victim = serving(cluster)
            signalled_at = time.perf_counter()
            victim.terminate()
            async for _ in chunks:
                pass
            stream_done = time.perf_counter() - signalled_at
    code = await asyncio.to_thread(victim.process.wait, 120)
    exited = time.perf_counter() - signalled_at
    await asyncio.to_thread(cluster.restore)
    return {"drain_s": round(exited, 3), "stream_finished_s": round(stream_done, 3), "exit_code": code}


async def round_trip(client: httpx.AsyncClient, base_url: str) -> float:
    started = time.perf_counter()
    (await client.get(f"{base_url}/health")).raise_for_status()
    return time.perf_counter() - started


async def run(args, cluster: TtsCluster) -> dict:
    direct, balanced, rtt_direct, rtt_balanced = [], [], [], []
    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(args.rounds * 5):
            rtt_direct.append(await round_trip(client, cluster.replicas[0].base_url))
            rtt_balanced.append(await round_trip(client, cluster.balancer_url))
        await ttfb(client, cluster.balancer_url, "Warm up.")
        for i in range(args.rounds):
            text = f"Round {i} of the benchmark."
            direct.append(await ttfb(client, cluster.replicas[0].base_url, text))
            balanced.append(await ttfb(client, cluster.balancer_url, text))
    failovers = [await failover(cluster) for _ in range(args.failovers)]
    drains = [await drain(cluster) for _ in range(args.drains)]
    return {
        "ttfb_direct": summary(direct),
        "ttfb_balancer": summary(balanced),
        "balancer_cost_p50_ms": round(pct(balanced, 0.5) - pct(direct, 0.5), 1),
        "health_rtt_direct": summary(rtt_direct),
        "health_rtt_balancer": summary(rtt_balanced),
        "failover": failovers,
        "failover_s_median": statistics.median(f["failover_s"] for f in failovers) if failovers else None,
        "drain": drains,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--failovers", type=int, default=2)
    parser.add_argument("--drains", type=int, default=1)
    parser.add_argument("--rooms", type=int, default=6, help="rooms joined at once through the LiveKit cluster (0: skip)")
    parser.add_argument("--room-rounds", type=int, default=1)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="orpheus-scaleout-"))
    vllm = start_vllm_server(log_dir)
    try:
        cluster = start_tts_cluster(log_dir, vllm)
        try:
            rooms = {}
            if args.rooms:  # first: the failover and drain rounds below restart replicas
                (log_dir / "livekit").mkdir()
                room_args = argparse.Namespace(rooms=args.rooms, rounds=args.room_rounds, jobs_per_worker=8,
                                               deadline=60.0)
                rooms = {"livekit_rooms": run_livekit_cluster("cluster", cluster.balancer_url, log_dir / "livekit",
                                                              room_args)}
            result = {**rooms, **asyncio.run(run(args, cluster))}
        finally:
            cluster.stop()
    finally:
        vllm.stop()
    print(json.dumps({"logs": str(log_dir), **result}, indent=2))


if __name__ == "__main__":
    main()
