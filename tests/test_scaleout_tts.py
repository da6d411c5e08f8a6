"""The TTS tier scaled out (tests/fixtures/tts_cluster.py): one `vllm serve`, two TTS server replicas
generating on it, HAProxy with the shipped deploy/haproxy.cfg in front. Clients only know the
balancer. Faults are real: SIGKILL and SIGTERM of replicas, SIGKILL of vLLM; each test restores the
cluster (restarting on the same ports) so the tests do not depend on their order.

Greedy decoding with an 8-frame cap per sentence (the replicas' flags): the tiny model never says
end-of-speech greedily, so a sentence is exactly 8 x 2048 samples, and "complete audio" is exact.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from livekit.agents import APIConnectionError, APIConnectOptions, APIStatusError
from livekit.agents.tts import TTSError

from tests.fixtures.processes import poll_until
from tests.fixtures.server import DEFAULT_MAX_TOKENS, FRAME_SAMPLES
from tests.fixtures.tts_cluster import DRAIN_GRACE_S, TtsCluster
from tts_plugin import OrpheusTTS

pytestmark = pytest.mark.scaleout

PCM = "/v1/audio/speech/stream"
WS_PATH = "/v1/audio/speech/stream/ws"
SENTENCE_BYTES = DEFAULT_MAX_TOKENS // 7 * FRAME_SAMPLES * 2
SENTENCE_SAMPLES = DEFAULT_MAX_TOKENS // 7 * FRAME_SAMPLES
# Retries as an agent has them, with a short interval and a timeout for 2 shared cores.
RETRYING = APIConnectOptions(max_retry=3, retry_interval=0.5, timeout=60)
NO_RETRY = APIConnectOptions(max_retry=0, timeout=60)
BOUND_S = 30  # "within a bound": generous, these assert that nothing hangs, not how fast


@pytest.fixture
def cluster(tts_cluster: TtsCluster) -> TtsCluster:
    """The session's cluster, restored after the test whatever it killed."""
    try:
        yield tts_cluster
    finally:
        tts_cluster.restore()


def speech_samples(frames) -> int:
    """Samples of speech, without the framework's 10 ms silent end-of-segment marker."""
    total = sum(f.samples_per_channel for f in frames)
    return total - (240 if total % FRAME_SAMPLES == 240 else 0)


async def pcm(client: httpx.AsyncClient, base_url: str, text: str, **body) -> bytes:
    response = await client.post(f"{base_url}{PCM}", json={"input": text, **body})
    assert response.status_code == 200, response.text
    return response.content


async def test_requests_through_the_balancer_land_on_both_replicas(cluster):
    before = [r.streams_admitted() for r in cluster.replicas]
    texts = [f"Request number {i}." for i in range(6)]
    async with httpx.AsyncClient(timeout=120) as client:
        bodies = await asyncio.gather(*(pcm(client, cluster.balancer_url, t) for t in texts))
    assert [len(b) for b in bodies] == [SENTENCE_BYTES] * len(texts)
    served = [r.streams_admitted() - b for r, b in zip(cluster.replicas, before)]
    assert sum(served) == len(texts) and all(n > 0 for n in served), served


async def test_websocket_streaming_works_through_the_balancer(cluster):
    async with websockets.connect(f"{cluster.ws_url}{WS_PATH}") as ws:
        for piece, more in (("Hello there. How", True), (" are you?", False)):
            await ws.send(json.dumps({"type": "speak", "segment_id": "s1", "text": piece, "continue": more}))
        audio, events = 0, []
        while not events or events[-1]["type"] != "end":
            message = await asyncio.wait_for(ws.recv(), BOUND_S)
            if isinstance(message, bytes):
                audio += len(message)
            else:
                events.append(json.loads(message))
    assert [e["type"] for e in events] == ["start", "metrics", "end"], events
    assert audio == 2 * SENTENCE_BYTES  # both sentences, streamed through HAProxy's tunnel

    tts = OrpheusTTS(server_url=cluster.balancer_url)  # the plugin, knowing only the balancer
    try:
        stream = tts.stream(conn_options=NO_RETRY)
        for token in ["Through", " the", " balancer.", " Twice."]:
            stream.push_text(token)
        stream.end_input()
        frames = [event.frame async for event in stream]
        await stream.aclose()
    finally:
        await tts.aclose()
    assert speech_samples(frames) == 2 * SENTENCE_SAMPLES


async def test_a_killed_replica_fails_its_streams_over_to_the_other_one(cluster):
    """SIGKILL a replica with streams in flight: the plugin's streams on it fail with APIConnectionError,
    the framework's retry re-synthesizes them through the balancer on the survivor, every caller gets
    its complete audio; HAProxy marks the dead replica down; it rejoins once restarted."""
    long_frames = 40
    tts, long_tts = OrpheusTTS(server_url=cluster.balancer_url), OrpheusTTS(server_url=cluster.balancer_url,
                                                                           max_tokens=7 * long_frames)
    errors: list[TTSError] = []
    tts.on("error", errors.append)
    long_tts.on("error", errors.append)
    try:
        # LLM-style streams whose first sentence is not complete yet: connected and admitted, silent.
        streams = [tts.stream(conn_options=RETRYING) for _ in range(4)]
        for i, stream in enumerate(streams):
            stream.push_text(f"Stream {i} says hello")
        await asyncio.to_thread(poll_until, lambda: admitted(cluster) == [2, 2], BOUND_S,
                                what="two streams admitted on each replica (leastconn)")
        # A whole text whose audio is flowing when the kill comes (a ChunkedStream is retried even then).
        chunked = long_tts.synthesize("One long sentence that is still being spoken.", conn_options=RETRYING)
        chunked_events = aiter(chunked)
        first = await asyncio.wait_for(anext(chunked_events), BOUND_S)
        victim = cluster.replicas[admitted(cluster).index(3)]
        survivor = next(r for r in cluster.replicas if r is not victim)

        victim.kill()
        await asyncio.to_thread(cluster.wait_status, victim.name, "DOWN", BOUND_S)

        for i, stream in enumerate(streams):
            stream.push_text(f" and goodbye from stream {i}.")
            stream.end_input()

        async def collect(stream) -> list:
            frames = [event.frame async for event in stream]
            await stream.aclose()
            return frames

        results = await asyncio.wait_for(asyncio.gather(*(collect(s) for s in streams)), 120)
        assert [speech_samples(frames) for frames in results] == [SENTENCE_SAMPLES] * len(streams)
        rest = [first] + [event async for event in chunked_events]
        final_attempt = rest[-1].request_id  # a retry starts over under a fresh request id
        assert speech_samples([e.frame for e in rest if e.request_id == final_attempt]) \
            == long_frames * FRAME_SAMPLES
    finally:
        await tts.aclose()
        await long_tts.aclose()
    # the victim's three streams failed as connection errors, each retried (recoverable)
    failures = [e.error for e in errors]
    assert len(failures) == 3 and all(isinstance(e, APIConnectionError) for e in failures), failures
    assert all(e.recoverable for e in errors)
    assert survivor.health().status_code == 200
    await asyncio.to_thread(poll_until, lambda: _idle(survivor.health().json()), BOUND_S, what="survivor idle")

    await asyncio.to_thread(cluster.restore)  # restarted on its port: the balancer sends to it again
    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(pcm(client, cluster.balancer_url, f"Back {i}.") for i in range(4)))
    assert victim.streams_admitted() > 0


def admitted(cluster: TtsCluster) -> list[int]:
    """Streams holding a slot on each replica now."""
    return [r.health().json()["admitted_streams"] for r in cluster.replicas]


def _idle(health: dict) -> bool:
    return health["active_streams"] == 0 and health["running_requests"] == 0 and health["admitted_streams"] == 0


async def test_killing_vllm_turns_replicas_unready_and_restarting_it_resumes_service(cluster):
    """vLLM gone: in-flight streams end with an error, replicas say 503 vllm_unreachable, HAProxy takes
    them out and clients get a clear 503 at once; vLLM back on its port: the same replica processes
    serve again."""
    pids = [r.process.pid for r in cluster.replicas]
    async with httpx.AsyncClient(timeout=120) as client:
        async with client.stream("POST", f"{cluster.balancer_url}{PCM}",
                                 json={"input": "Cut short.", "max_tokens": 7 * 400}) as response:
            assert response.status_code == 200
            chunks = response.aiter_raw()
            await anext(chunks)
            await asyncio.to_thread(cluster.vllm.kill)
            with pytest.raises(httpx.RemoteProtocolError):  # cut: never a clean end of a short body
                async for _ in chunks:
                    pass

        for replica in cluster.replicas:
            health = await asyncio.to_thread(poll_until, lambda r=replica: r.health().status_code == 503 and r.health(),
                                             BOUND_S, what=f"{replica.name} /health 503")
            assert health.json()["status"] == "vllm_unreachable" and "vLLM" in health.json()["error"]
            refused = await client.post(f"{replica.base_url}{PCM}", json={"input": "Anyone?"})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "vllm_unreachable"
            await asyncio.to_thread(cluster.wait_status, replica.name, "DOWN", BOUND_S)

        refused = await client.post(f"{cluster.balancer_url}{PCM}", json={"input": "Anyone at all?"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "unavailable"
        tts = OrpheusTTS(server_url=cluster.balancer_url)
        try:
            with pytest.raises(APIStatusError) as raised:
                await tts.synthesize("Anyone there?", conn_options=NO_RETRY).collect()
            assert raised.value.status_code == 503 and raised.value.retryable
        finally:
            await tts.aclose()

        await asyncio.to_thread(cluster.vllm.restart)  # same port; the replicas are left alone
        for replica in cluster.replicas:
            await asyncio.to_thread(poll_until, lambda r=replica: r.health().status_code == 200, BOUND_S,
                                    what=f"{replica.name} /health 200 again")
            await asyncio.to_thread(cluster.wait_status, replica.name, "UP", BOUND_S)
        assert len(await pcm(client, cluster.balancer_url, "Service resumed.")) == SENTENCE_BYTES
    assert [r.process.pid for r in cluster.replicas] == pids and all(r.running for r in cluster.replicas)


async def test_sigterm_drains_a_replica_behind_the_balancer(cluster):
    """SIGTERM with streams in flight: /health 503 at once, HAProxy takes the replica out, its
    streams finish complete within the grace, it exits 0, and new requests go to the other one."""
    frames = 30
    long_body = {"max_tokens": 7 * frames}
    async with httpx.AsyncClient(timeout=120) as client:
        async def long_stream(i: int, started: asyncio.Event) -> int:
            async with client.stream("POST", f"{cluster.balancer_url}{PCM}",
                                     json={"input": f"Long stream {i} in flight.", **long_body}) as response:
                assert response.status_code == 200
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    started.set()
                return size

        started = [asyncio.Event() for _ in range(2)]
        tasks = [asyncio.create_task(long_stream(i, e)) for i, e in enumerate(started)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), BOUND_S)
        victim = next(r for r in cluster.replicas if r.health().json()["admitted_streams"] > 0)
        survivor = next(r for r in cluster.replicas if r is not victim)
        victim.terminate()

        health = await asyncio.to_thread(poll_until, lambda: victim.health().status_code == 503 and victim.health(),
                                         BOUND_S, what="/health 503 draining")
        assert health.json()["status"] == "draining"
        await asyncio.to_thread(cluster.wait_status, victim.name, "DOWN", BOUND_S)
        before = survivor.streams_admitted()
        bodies = await asyncio.gather(*(pcm(client, cluster.balancer_url, f"New {i}.") for i in range(3)))
        assert [len(b) for b in bodies] == [SENTENCE_BYTES] * 3
        assert survivor.streams_admitted() - before == 3  # all on the survivor

        sizes = await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_GRACE_S + BOUND_S)
        assert sizes == [frames * FRAME_SAMPLES * 2] * 2  # the drained replica's stream finished too
    code = await asyncio.to_thread(victim.process.wait, DRAIN_GRACE_S + BOUND_S)
    assert code == 0, victim.server.log_tail()
    assert "Traceback" not in victim.server.log_path.read_text(errors="replace")
