"""Phone calls end to end: a PJSUA2 SIP phone calls the shipped trunk's number on livekit-sip, which
puts the call into a `call-` room on livekit-server (Redis); the dispatch rule (bound to the trunk)
sends the agent worker (`start` mode), which speaks through the TTS server on the tiny model.

The phone hears G.711 µ-law at 8 kHz and records it. The tiny model never stops early: every
sentence is 8 frames (0.683 s), so the speech the caller must hear is known. A hidden observer in
the call's room follows the agent's state (speaking -> listening ends an utterance).
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from dataclasses import dataclass

import httpx
import psutil
import pytest
from livekit import api

from tests.fixtures.phone import PHONE_GREETING_SENTENCES, CallObserver, lk_api, room_of
from tests.fixtures.sip_caller import PHONE_RATE, speech_runs

pytestmark = pytest.mark.phone

SENTENCE_S = 8 * 2048 / 24000
GREETING_S = PHONE_GREETING_SENTENCES * SENTENCE_S
ANSWER_BOUND_S = 30  # INVITE -> 200 OK: generous, "answered, not hanging"
FIRST_AUDIO_BOUND_S = 60  # answer -> first audible audio, as generous
# The tiny model's noise arrives at ~3500 RMS (int16) after the phone leg's 8 kHz µ-law, silence
# at ~3; resampling smears each edge over a frame or two, which this level mostly leaves out.
SPEECH_RMS = 1000.0
DRAIN_S = 1.0  # the agent's state runs ahead of the audio still in flight to the phone


def new_caller() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


async def rooms_of(server, caller: str) -> list[str]:
    async with lk_api(server) as lk:
        return [room.name for room in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms
                if caller in room.name]


async def participants(server, room_name: str) -> list:
    """The room's participants, less the tests' hidden observers."""
    async with lk_api(server) as lk:
        return [p for p in (await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))).participants
                if not p.identity.startswith("observer-")]


async def until(condition, deadline_s: float, what: str, interval_s: float = 0.1):
    """Poll ``condition()`` (sync or async) until truthy; its value. A bound, not a timing."""
    async def poll():
        while True:
            value = condition()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval_s)
    try:
        return await asyncio.wait_for(poll(), deadline_s)
    except TimeoutError:
        raise AssertionError(f"not within {deadline_s} s: {what}") from None


def heard(runs: list[tuple[float, float]], start_s: float = 0.0, end_s: float = float("inf")) -> float:
    return sum(length for offset, length in runs if start_s <= offset < end_s)


def assert_duration(runs: list[tuple[float, float]], made_s: float) -> None:
    """The speech heard lasts as long as the speech the engine made; each stretch may gain or lose
    a 20 ms packet at its edges (the agent fills generation gaps with silence)."""
    heard_s = heard(runs)
    allowance = 0.04 + 0.02 * len(runs)
    assert abs(heard_s - made_s) <= allowance, f"heard {heard_s:.2f} s in {runs}; the engine made {made_s:.3f} s"


def cancellations(tts_server) -> float:
    text = httpx.get(f"{tts_server.base_url}/metrics", timeout=10).text
    return sum(float(value) for value in re.findall(r"^orpheus_cancellations_total\{[^}]*\} (\S+)$", text, re.M))


async def place_call(sip_phone, sip_bridge, phone_line, livekit_phone_server, caller: str | None = None):
    """Dial the trunk's number; join the call's room as an observer as soon as it exists (before
    the agent can have said anything), then wait for the answer."""
    caller = caller or new_caller()
    call = sip_phone.dial(sip_bridge.uri(phone_line.numbers[0]), caller=caller)
    room_name = await room_of(livekit_phone_server, caller)
    observer = await CallObserver().join(livekit_phone_server, room_name)
    result = await call.wait_answered(ANSWER_BOUND_S)
    assert result.status_code == 200, result.log
    return call, room_name, observer


@pytest.fixture
async def idle_worker(phone_agent_worker):
    """The phone worker with no job left from an earlier test's call."""
    await until(lambda: phone_agent_worker.active_jobs() == 0, 60, "no job left from an earlier call")
    return phone_agent_worker


@dataclass
class GreetedCall:
    status_code: int
    answer_s: float
    room_name: str
    participant_kinds: list[int]
    agent_names: list[str]
    bridge_sockets: list[tuple[str, int, str]]  # (address, port, udp|tcp) the bridge listens on
    runs: list[tuple[float, float]]
    recorded_s: float


@pytest.fixture(scope="module")
async def greeted_call(sip_phone, sip_bridge, phone_line, phone_agent_worker, livekit_phone_server) -> GreetedCall:
    """One call: answered, the greeting heard to its end, then the caller hangs up."""
    call, room_name, observer = await place_call(sip_phone, sip_bridge, phone_line, livekit_phone_server)
    try:
        members = await until(lambda: _caller_and_agent(livekit_phone_server, room_name), 60,
                              "the SIP participant and the agent in the call's room")
        sockets = [(conn.laddr.ip, conn.laddr.port, "udp" if conn.type == socket.SOCK_DGRAM else "tcp")
                   for conn in psutil.Process(sip_bridge.process.pid).net_connections(kind="inet")
                   if conn.status in (psutil.CONN_LISTEN, psutil.CONN_NONE)]
        await observer.utterance_done(1)
        await asyncio.sleep(DRAIN_S)
    finally:
        await observer.close()
        call.hang_up()
    result = await call.wait_ended(30)
    samples = call.recorded()
    return GreetedCall(result.status_code, result.answered_at - result.invite_at, room_name,
                       [p.kind for p in members], [p.attributes.get("lk.agent.name", "") for p in members],
                       sockets, speech_runs(samples, SPEECH_RMS), len(samples) / PHONE_RATE)


async def _caller_and_agent(server, room_name: str):
    members = await participants(server, room_name)
    kinds = {p.kind for p in members}
    if {api.ParticipantInfo.Kind.SIP, api.ParticipantInfo.Kind.AGENT} <= kinds:
        return members
    return None


async def test_a_call_to_the_trunks_number_is_answered_with_200_ok(greeted_call):
    assert greeted_call.status_code == 200
    assert greeted_call.answer_s < ANSWER_BOUND_S


async def test_the_call_lands_in_a_call_room_with_the_caller_and_the_agent(greeted_call, phone_line):
    assert greeted_call.room_name.startswith("call-")
    assert sorted(greeted_call.participant_kinds) == sorted([api.ParticipantInfo.Kind.SIP,
                                                             api.ParticipantInfo.Kind.AGENT])
    assert phone_line.agent_name in greeted_call.agent_names


async def test_the_caller_hears_the_whole_greeting_soon_after_the_answer(greeted_call):
    runs = greeted_call.runs
    assert runs, f"the caller heard nothing in {greeted_call.recorded_s:.1f} s"
    assert runs[0][0] < FIRST_AUDIO_BOUND_S
    assert_duration(runs, GREETING_S)


async def test_the_sip_bridge_listens_on_the_configured_loopback_address_only(greeted_call, sip_bridge):
    """SIP (UDP and TCP), the health port and the call's RTP socket bind 127.0.0.1 (listen_ip).
    The bridge's own WebRTC connection to livekit-server (its ICE sockets, ephemeral ports) is
    LiveKit's client SDK, outside these settings."""
    rtp_low, rtp_high = sip_bridge.rtp_ports
    health_port = int(sip_bridge.health_url.rsplit(":", 1)[1])
    sip = [s for s in greeted_call.bridge_sockets if s[1] == sip_bridge.port]
    health = [s for s in greeted_call.bridge_sockets if s[1] == health_port]
    rtp = [s for s in greeted_call.bridge_sockets if rtp_low <= s[1] <= rtp_high]
    assert sorted(proto for _, _, proto in sip) == ["tcp", "udp"], greeted_call.bridge_sockets
    assert [proto for _, _, proto in health] == ["tcp"] and [proto for _, _, proto in rtp] == ["udp"]
    assert {ip for ip, _, _ in sip + health + rtp} == {"127.0.0.1"}, sip + health + rtp


async def test_the_dispatch_rule_is_bound_to_the_trunk(phone_line, livekit_phone_server):
    async with lk_api(livekit_phone_server) as lk:
        rules = (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
    assert [list(rule.trunk_ids) for rule in rules] == [[phone_line.provisioned.trunk_id]]


async def assert_refused_unanswered(call, caller: str, sip_bridge, livekit_phone_server) -> dict:
    """The bridge decides (its log says how the call ended) and the caller never gets a 200:
    livekit-sip drops a call no trunk accepts without a final response (flood protection), so the
    caller's INVITE would only time out; the test cancels it once the bridge has decided."""
    closed = await until(lambda: sip_bridge.closed_calls(caller), ANSWER_BOUND_S, "the bridge ending the call")
    assert not call.answered.is_set() and call.result.status_code != 200, call.result.log
    assert await rooms_of(livekit_phone_server, caller) == []
    call.hang_up()
    return closed[-1]


async def test_a_call_to_a_number_the_trunk_does_not_own_is_not_answered(
        sip_phone, sip_bridge, phone_line, phone_agent_worker, livekit_phone_server):
    caller = new_caller()
    call = sip_phone.dial(sip_bridge.uri("+15105550199"), caller=caller)
    closed = await assert_refused_unanswered(call, caller, sip_bridge, livekit_phone_server)
    assert closed["result"] == "client_error", closed


async def test_a_call_from_an_address_the_trunk_does_not_allow_is_not_answered(
        sip_phone, sip_bridge, phone_line, phone_agent_worker, livekit_phone_server):
    # The shipped trunk allows 127.0.0.1/32; 127.0.0.2 is loopback too, but not allowed.
    caller = new_caller()
    call = sip_phone.dial(sip_bridge.uri(phone_line.numbers[0]), caller=caller, address="127.0.0.2")
    closed = await assert_refused_unanswered(call, caller, sip_bridge, livekit_phone_server)
    assert closed["result"] == "client_error", closed


async def test_hanging_up_during_the_greeting_ends_the_job_aborts_its_generation_and_closes_the_room(
        sip_phone, sip_bridge, phone_line, idle_worker, livekit_phone_server, tts_server):
    phone_agent_worker = idle_worker
    # Nothing of an earlier test may still stream: the streams counted below must be this call's.
    await until(lambda: (h := tts_server.health())["active_streams"] == 0 and h["running_requests"] == 0, 60,
                "the TTS server idle before the call")
    cancelled_before = cancellations(tts_server)
    call, room_name, observer = await place_call(sip_phone, sip_bridge, phone_line, livekit_phone_server)
    await observer.close()
    # The greeting (three sentences) is generated for a second or more even on a fast machine:
    # hang up as soon as the server is generating it for this call's job, whether or not its audio
    # has started (the greeting is synthesized from the job's start, so the job count is polled too).
    busy = await until(lambda: phone_agent_worker.active_jobs() == 1
                       and (h := tts_server.health())["active_streams"] >= 1 and h, 60,
                       "the job running and its greeting being generated", 0.02)
    call.hang_up()
    await call.wait_ended(30)
    idle = await until(lambda: (h := tts_server.health())["active_streams"] == 0 and h["running_requests"] == 0 and h,
                       60, "the TTS server back to no stream and no vLLM request")
    assert cancellations(tts_server) > cancelled_before, "the greeting's stream was not stopped early"
    await until(lambda: phone_agent_worker.active_jobs() == 0, 60, "the job ended")
    await until(lambda: _gone(livekit_phone_server, room_name), 60, "the call's room closed")
    assert busy["active_streams"] >= 1 and idle["running_requests"] == 0


async def _gone(server, room_name: str) -> bool:
    async with lk_api(server) as lk:
        return room_name not in [room.name for room in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms]


async def test_star_stops_the_agent_and_hash_repeats_the_last_thing_it_said(
        sip_phone, sip_bridge, phone_line, idle_worker, livekit_phone_server):
    call, room_name, observer = await place_call(sip_phone, sip_bridge, phone_line, livekit_phone_server)
    try:
        await asyncio.wait_for(observer.speaking.wait(), 120)
        call.send_dtmf("*")
        await observer.utterance_done(1)
        await asyncio.sleep(DRAIN_S)
        repeat_at = call.recording_offset()
        call.send_dtmf("#")
        await observer.utterance_done(2)
        await asyncio.sleep(DRAIN_S)
    finally:
        await observer.close()
        call.hang_up()
    await call.wait_ended(30)
    runs = speech_runs(call.recorded(), SPEECH_RMS)
    cut = [run for run in runs if run[0] < repeat_at]
    repeated = [run for run in runs if run[0] >= repeat_at]
    assert cut and heard(cut) < GREETING_S - SENTENCE_S, f"'*' did not cut the greeting short: {runs}"
    assert_duration(repeated, GREETING_S)  # '#': the whole greeting again


async def test_two_calls_at_once_each_get_their_own_room_and_job(
        sip_phone, sip_bridge, phone_line, idle_worker, livekit_phone_server):
    phone_agent_worker = idle_worker
    first, second = new_caller(), new_caller()
    calls = [sip_phone.dial(sip_bridge.uri(phone_line.numbers[0]), caller=caller) for caller in (first, second)]
    try:
        results = await asyncio.gather(*(call.wait_answered(ANSWER_BOUND_S) for call in calls))
        assert [r.status_code for r in results] == [200, 200], [r.log for r in results]
        rooms = [await room_of(livekit_phone_server, caller) for caller in (first, second)]
        assert rooms[0] != rooms[1]
        members = [await until(lambda r=r: _caller_and_agent(livekit_phone_server, r), 60, f"caller and agent in {r}")
                   for r in rooms]
        agents = [p.identity for room in members for p in room if p.kind == api.ParticipantInfo.Kind.AGENT]
        assert len(agents) == 2 and agents[0] != agents[1]
        assert phone_agent_worker.active_jobs() == 2
    finally:
        for call in calls:
            call.hang_up()
    for call in calls:
        await call.wait_ended(30)
    await until(lambda: phone_agent_worker.active_jobs() == 0, 60, "both jobs ended")


async def test_an_unbound_rule_would_let_a_wrong_number_and_a_disallowed_address_in(sip_phone, tmp_path):
    """The control for the two tests above: the same calls against a rule created as the file
    says (no trunk ids) get a call room on a stack of their own, so binding is what refuses them."""
    from agent.phone import load_dispatch_rule_request, load_trunk_request
    from tests.fixtures.phone import RULE_FILE, TRUNK_FILE, start_livekit_phone_server, start_redis, start_sip_bridge
    from tests.fixtures.processes import stop_process

    started = []
    try:
        redis_address, redis = start_redis(tmp_path)
        started.append(redis)
        livekit, livekit_proc = start_livekit_phone_server(tmp_path, redis_address)
        started.append(livekit_proc)
        bridge = start_sip_bridge(tmp_path, livekit, redis_address)
        started.append(bridge.process)
        async with lk_api(livekit) as lk:
            trunk = await lk.sip.create_inbound_trunk(load_trunk_request(TRUNK_FILE))
            unbound = load_dispatch_rule_request(RULE_FILE)
            assert list(unbound.dispatch_rule.trunk_ids) == []
            await lk.sip.create_dispatch_rule(unbound)
        number = list(load_trunk_request(TRUNK_FILE).trunk.numbers)[0]
        for uri, address in ((bridge.uri("+15105550199"), None), (bridge.uri(number), "127.0.0.2")):
            caller = new_caller()
            call = sip_phone.dial(uri, caller=caller, address=address)
            room = await room_of(livekit, caller)  # let in: the call rings in its own room
            assert room.startswith("call-") and trunk.sip_trunk_id
            call.hang_up()
            await call.wait_ended(30)
    finally:
        for process in reversed(started):
            stop_process(process, 15)
