"""The LiveKit tier scaled out (tests/fixtures/livekit_cluster.py): Redis, two livekit-server nodes,
two agent workers in `start` mode registered through node A, the TTS server behind `cluster_tts_url`.

Rooms are placed on a chosen node (CreateRoom's node_id) and created through the other node's API;
listeners join through either node, so every test crosses nodes. The tiny model speaks every
sentence as 8 frames (0.683 s): each room's listener must hear exactly the speech its own agent made
for the text that room sent.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
from livekit import api, rtc

from agent.server.livekit_token import LiveKitTokenConfig, mint_listener_token
from tests.fixtures.livekit_cluster import JOBS_PER_WORKER, LiveKitCluster, LiveKitNode
from tests.test_livekit_room import SENTENCE_S, assert_duration
from tests.test_livekit_room import Listener as RoomListener

pytestmark = pytest.mark.scaleout

ROOMS = 6
# One and two sentences: which one a room asked for shows in how much speech its listener hears.
CHAT = {1: "Say this back to me.", 2: "Say this back to me. Then say this as well."}


class Listener(RoomListener):
    async def answer_started(self, utterance: int) -> None:
        """Return once the agent speaks its ``utterance``-th utterance (or has finished it)."""
        while not (self.utterances_done >= utterance or
                   (self.utterances_done == utterance - 1 and self._agent_state == "speaking")):
            self._state_changed.clear()
            await self._state_changed.wait()


async def join(node: LiveKitNode, room: str, identity: str) -> Listener:
    """A listener (subscribe and chat, no publishing) in ``room``, connected through ``node``."""
    server = node.server
    config = LiveKitTokenConfig(url=server.url, api_key=server.api_key, api_secret=server.api_secret)
    listener = Listener()
    await asyncio.wait_for(listener.room.connect(server.url, mint_listener_token(
        config, room=room, identity=identity, ttl_s=600)), 60)
    return listener


def agent_identities(listener: Listener) -> set[str]:
    return {p.identity for p in listener.room.remote_participants.values()
            if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT}


async def agents_become(listener: Listener, identities: set[str]) -> None:
    while agent_identities(listener) != identities:
        await asyncio.sleep(0.2)


async def dropped_again(cluster: LiveKitCluster, room: str, before: int) -> None:
    while cluster.chat_dropped(room) == before:
        await asyncio.sleep(0.1)


async def chat_until_answered(listener: Listener, text: str, utterance: int, cluster: LiveKitCluster, *,
                              attempts: int = 7, answer_s: float = 30) -> list[tuple[float, float]]:
    """Send ``text`` as chat; the speech of the agent's ``utterance``-th utterance. An agent drops
    chat from a participant it has not yet seen join (and logs that), which a listener that has
    just re-joined can race: then the text goes again, after a pause that doubles each time."""
    room = listener.room.name
    start = len(listener.rms)
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(0.25 * 2 ** attempt)
        dropped = cluster.chat_dropped(room)
        await listener.room.local_participant.send_text(text, topic="lk.chat")
        answer = asyncio.ensure_future(listener.answer_started(utterance))
        drop = asyncio.ensure_future(dropped_again(cluster, room, dropped))
        done, _ = await asyncio.wait([answer, drop], timeout=answer_s, return_when=asyncio.FIRST_COMPLETED)
        answer.cancel()
        drop.cancel()
        if drop not in done:
            break  # answered, or slow: utterance() below waits for it
    return await listener.utterance(start, utterance)


class ConnectionEvents:
    """When a listener's SDK starts reconnecting and when it gives up (``disconnected``)."""

    def __init__(self, room: rtc.Room) -> None:
        self.reconnecting = asyncio.Event()
        self.disconnected = asyncio.Event()
        room.on("reconnecting", lambda: self.reconnecting.set())
        room.on("disconnected", lambda *_: self.disconnected.set())


@pytest.fixture
async def cluster(livekit_cluster: LiveKitCluster):
    """The module's cluster with both nodes up; its rooms deleted (and their jobs ended) afterwards."""
    livekit_cluster.ensure_node_b()
    yield livekit_cluster
    livekit_cluster.ensure_node_b()
    await livekit_cluster.delete_rooms()


async def test_six_rooms_across_both_nodes_each_hear_their_own_agent_and_jobs_fill_both_workers_and_tts_replicas(
        cluster, tts_cluster):
    a, b = cluster.a, cluster.b
    admitted_before = [replica.streams_admitted() for replica in tts_cluster.replicas]
    # (host node, node the listener connects through): all four pairings; every room created through B
    layout = list(itertools.islice(itertools.cycle([(a, a), (a, b), (b, a), (b, b)]), ROOMS))
    tag = uuid.uuid4().hex[:6]
    rooms = [await cluster.create_room(f"scale-{tag}-{i}", through=b, host=host) for i, (host, _) in enumerate(layout)]
    listeners = await asyncio.gather(*(join(via, room.name, f"listener-{i}")
                                       for i, (room, (_, via)) in enumerate(zip(rooms, layout))))
    try:
        # the room a listener reaches through its node is the one created through B
        assert [await listener.room.sid for listener in listeners] == [room.sid for room in rooms]
        greetings = await asyncio.gather(*(listener.utterance(0, 1) for listener in listeners))
        for runs in greetings:
            assert_duration(runs, 2 * SENTENCE_S)  # the greeting: two sentences
        asked = [1 + i % 2 for i in range(ROOMS)]
        starts = [len(listener.rms) for listener in listeners]
        for listener, sentences in zip(listeners, asked):
            await listener.room.local_participant.send_text(CHAT[sentences], topic="lk.chat")
        replies = await asyncio.gather(*(listener.utterance(start, 2) for listener, start in zip(listeners, starts)))
        for runs, sentences in zip(replies, asked):
            assert_duration(runs, sentences * SENTENCE_S)
        agents = [agent_identities(listener) for listener in listeners]
        assert all(len(found) == 1 for found in agents) and len(set.union(*agents)) == ROOMS  # one agent each
    finally:
        for listener in listeners:
            await listener.close()
    names = {room.name for room in rooms}
    served = [[name for name in worker.rooms_served() if name in names] for worker in cluster.workers]
    assert sorted(itertools.chain(*served)) == sorted(names)  # every room's job ran once
    # each worker took rooms up to its capacity; the rest went to the other worker
    assert [len(rooms_of_worker) for rooms_of_worker in served] == [JOBS_PER_WORKER, JOBS_PER_WORKER]
    # the workers' speech went through the balancer to both TTS replicas
    admitted = [replica.streams_admitted() - before for replica, before in zip(tts_cluster.replicas, admitted_before)]
    assert all(count > 0 for count in admitted), admitted


async def test_killing_node_b_ends_its_listeners_cleanly_and_its_rooms_agents_carry_on_through_node_a(cluster):
    a, b = cluster.a, cluster.b
    tag = uuid.uuid4().hex[:6]
    plan = {"x": (a, b), "y": (b, b), "z": (a, a)}  # room: (host node, node its listener connects through)
    rooms = {key: await cluster.create_room(f"fail-{tag}-{key}", through=a, host=host)
             for key, (host, _) in plan.items()}
    listeners = {key: await join(via, rooms[key].name, f"listener-{key}") for key, (_, via) in plan.items()}
    events = {key: ConnectionEvents(listener.room) for key, listener in listeners.items()}
    extra: list[Listener] = []  # listeners re-joined through A
    try:
        await asyncio.gather(*(listener.utterance(0, 1) for listener in listeners.values()))  # greetings
        agent_of = {key: agent_identities(listener) for key, listener in listeners.items()}

        b.kill()  # SIGKILL: a crash

        # Listeners connected through B learn it at once (reconnecting), and their SDK gives up
        # with a disconnect instead of hanging (its reconnect attempts all target B).
        for key in ("x", "y"):
            await asyncio.wait_for(events[key].reconnecting.wait(), 30)
            await asyncio.wait_for(events[key].disconnected.wait(), 120)
        assert not events["z"].reconnecting.is_set() and not events["z"].disconnected.is_set()

        # A room on A with its listener on A: its agent keeps speaking.
        z = listeners["z"]
        assert_duration(await chat_until_answered(z, CHAT[1], 2, cluster), SENTENCE_S)

        # x's room lives on A: re-joining through A (same identity) finds the same room, the same
        # agent, and it answers.
        rejoined = await join(a, rooms["x"].name, "listener-x")
        extra.append(rejoined)
        assert await rejoined.room.sid == rooms["x"].sid
        await asyncio.wait_for(rejoined.agent_track.wait(), 60)
        assert agent_identities(rejoined) == agent_of["x"]
        assert_duration(await chat_until_answered(rejoined, CHAT[2], 1, cluster), 2 * SENTENCE_S)

        # y's room was hosted on B. Its agent's connection went through A (the worker's node), so
        # the agent reconnects through A, and LiveKit re-creates the room there, same room id.
        async def y_on_node_a() -> set[str]:
            async with a.api() as lk:
                while True:
                    found = await lk.room.list_rooms(api.ListRoomsRequest(names=[rooms["y"].name]))
                    if found.rooms and found.rooms[0].sid == rooms["y"].sid:
                        people = await lk.room.list_participants(api.ListParticipantsRequest(room=rooms["y"].name))
                        identities = {p.identity for p in people.participants}
                        if agent_of["y"] <= identities:
                            return identities
                    await asyncio.sleep(0.5)
        await asyncio.wait_for(y_on_node_a(), 60)

        # LiveKit also dispatched y's agent again into the re-created room; that second job sees
        # the agent already there and leaves, so the listener re-joining y through A is answered
        # by one agent, the one it had.
        rejoined_y = await join(a, rooms["y"].name, "listener-y")
        extra.append(rejoined_y)
        await asyncio.wait_for(agents_become(rejoined_y, agent_of["y"]), 60)
        assert_duration(await chat_until_answered(rejoined_y, CHAT[1], 1, cluster), SENTENCE_S)
        assert any(f"room {rooms['y'].name} already has agent" in worker.log_path.read_text()
                   for worker in cluster.workers)
        await asyncio.to_thread(cluster.wait_active_jobs, 3, 60)  # x, y, z: no job left over

        # The workers, registered through A, never lost their registration.
        assert [worker.registrations() for worker in cluster.workers] == [1, 1]
        assert all(worker.worker.process.poll() is None for worker in cluster.workers)
    finally:
        for listener in [*listeners.values(), *extra]:
            await listener.close()
