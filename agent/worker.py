"""The LiveKit agent worker: ``python -m agent dev|start|console|connect`` (the livekit-agents CLI).

Each job is an ``AgentSession`` speaking through ``OrpheusTTS``:
  * no STT/LLM configured: greets, then speaks every chat message the listener sends;
  * ``ORPHEUS_AGENT_LLM`` set: chat messages get LLM replies, spoken as the LLM streams them;
  * ``ORPHEUS_AGENT_STT`` (+ ``ORPHEUS_AGENT_VAD``) set too: a full voice agent.
A phone caller (a SIP participant, see sip/README.md) has a keypad: ``*`` stops the agent's speech,
``#`` repeats the last thing it said; when the caller hangs up, the call's room is deleted.

Settings (environment): ``LIVEKIT_URL``, ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET`` (read by
livekit-agents), ``ORPHEUS_SERVER_URL`` (the TTS server; unset = an engine inside each job process,
for development only), ``ORPHEUS_API_KEY`` (when the server has keys), ``ORPHEUS_AGENT_NAME``
(explicit dispatch), ``ORPHEUS_VOICE``, and the ``ORPHEUS_AGENT_*`` fields below. Plugins are named ``module:factory`` and called without
arguments, e.g. ``livekit.plugins.openai:LLM``, ``livekit.plugins.silero:VAD.load``; a plain
model id such as ``openai/gpt-4.1-mini`` goes to LiveKit Inference as is.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field

from tts_plugin import hops
from tts_plugin.settings import ServerClientSettings

log = logging.getLogger("orpheus.agent")


class WorkerSettings(ServerClientSettings):
    """The agent worker: the TTS server it speaks through (``ServerClientSettings``), then its own.
    No flags: the command line is livekit-agents' (dev, start, console)."""

    agent_name: str = Field("", description="register for explicit dispatch under this name")
    voice: str | None = Field(None, description="speaker (default: tara)")
    agent_greeting: str = Field("Hello! Send me a message and I will say it out loud.",
                                description="said when the agent joins; empty: no greeting")
    agent_instructions: str = Field("You are a friendly voice assistant. Answer briefly, in plain spoken "
                                    "sentences, without lists or markdown.")
    agent_stt: str | None = Field(None, description="speech-to-text: module:factory or an inference model id")
    agent_llm: str | None = Field(None, description="LLM: module:factory or an inference model id")
    agent_vad: str | None = Field(None, description="voice activity detector: module:factory")
    agent_max_jobs: int = Field(8, ge=1, description="concurrent rooms this worker takes (its load = jobs / this)")
    agent_trace_hops: bool = Field(False, description="log a wall-clock mark at each hop of an utterance (bench/latency.py)")
    agent_turn_detection: str | None = Field(
        None, description="stt, vad, manual, realtime_llm or module:factory of a turn detector model; "
        "default: vad with STT and VAD, stt with STT only, else manual (nothing is looked up)")
    agent_http_host: str = Field("127.0.0.1", description="address of the worker's health endpoint")
    agent_http_port: int | None = Field(
        None, ge=0, description="port of the worker's health endpoint (default: 8081 in start mode, any in dev mode)")


def load_component(spec: str | None) -> Any:
    """``pkg.module:factory.path`` -> factory() ; a spec without ':' is returned as is (inference id)."""
    if not spec:
        return None
    if ":" not in spec:
        return spec
    module_name, _, attr_path = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        target = getattr(target, attr)
    return target()


def turn_detection(settings: WorkerSettings, stt, vad):
    """Always explicit: livekit-agents' default turn detector is a LiveKit Cloud service in dev
    mode (a DNS lookup of its host at session start) and a 244 MB local model otherwise."""
    if settings.agent_turn_detection:
        return load_component(settings.agent_turn_detection)
    if stt is not None:
        return "vad" if vad is not None else "stt"
    return "manual"


def build_tts(settings: WorkerSettings):
    from tts_plugin import OrpheusTTS
    from tts_plugin.models import DEFAULT_VOICE

    if not settings.server_url:
        log.warning("ORPHEUS_SERVER_URL is not set: starting an engine inside this job process "
                    "(development only; run `python -m agent serve` and point ORPHEUS_SERVER_URL at it)")
    return OrpheusTTS(voice=settings.voice or DEFAULT_VOICE, server_url=settings.server_url,
                      api_key=settings.api_key.get_secret_value() if settings.api_key else None)


async def entrypoint(ctx) -> None:
    from livekit import rtc
    from livekit.agents import Agent, AgentSession
    from livekit.agents.voice.room_io import RoomOptions, TextInputOptions

    from .keypad import Keypad

    settings = WorkerSettings()
    if settings.agent_trace_hops:
        hops.enable()
        hops.mark("job_started", ctx.room.name)
    tts = build_tts(settings)
    tts.prewarm()  # connect to the TTS server (or start the engine) while the room connects
    # The greeting is synthesized while the room connects and the agent's track is published,
    # instead of after: the listener hears it sooner by about the server's first-audio time.
    greeting = tts.synthesize(settings.agent_greeting) if settings.agent_greeting else None
    if greeting is not None:
        ctx.add_shutdown_callback(greeting.aclose)
    stt, llm, vad = (load_component(settings.agent_stt), load_component(settings.agent_llm),
                     load_component(settings.agent_vad))

    session_kwargs = {k: v for k, v in dict(stt=stt, llm=llm, vad=vad).items() if v is not None}
    session = AgentSession(tts=tts, turn_handling={"turn_detection": turn_detection(settings, stt, vad)},
                           **session_kwargs)
    keypad = Keypad(session)
    ctx.add_shutdown_callback(tts.aclose)

    # The room's first participant is the one the agent talks to. A phone call's room is that
    # call's alone: when the caller hangs up, the room goes too (and with it this job).
    caller = await ctx.wait_for_participant()
    if (twin := agent_already_in_room(ctx.room, ctx.job.agent_name)) is not None:
        # A room of a livekit-server node that died is re-created on another node when its agent
        # reconnects there, and LiveKit dispatches the agent again: two agents would answer.
        log.info("room %s already has agent %s for %r: this job leaves", ctx.room.name, twin, ctx.job.agent_name)
        ctx.shutdown(reason="the room already has this agent")
        return
    phone_call = caller.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP
    if phone_call:
        ctx.room.on("sip_dtmf_received", keypad.on_dtmf)
    text_input = TextInputOptions() if llm is not None else TextInputOptions(text_input_cb=keypad.speak_text_message)
    room_options = RoomOptions(text_input=text_input, audio_input=stt is not None,
                               participant_identity=caller.identity, delete_room_on_close=phone_call)
    await session.start(agent=Agent(instructions=settings.agent_instructions), room=ctx.room,
                        room_options=room_options)
    log.info("agent in room %s with %s (phone=%s, stt=%s, llm=%s)", ctx.room.name, caller.identity,
             phone_call, bool(stt), bool(llm))
    hops.mark("session_started", ctx.room.name)
    if greeting is not None:
        keypad.say(settings.agent_greeting, audio=frames_of(greeting))


def agent_already_in_room(room, agent_name: str) -> str | None:
    """The identity of another participant of ``room`` that is this agent (same agent name), if any."""
    from livekit import rtc
    from livekit.agents.types import ATTRIBUTE_AGENT_NAME

    for participant in room.remote_participants.values():
        if (participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                and participant.attributes.get(ATTRIBUTE_AGENT_NAME, "") == agent_name):
            return participant.identity
    return None


async def frames_of(stream) -> AsyncIterator:
    """The audio frames of a TTS stream that is already running (``session.say(..., audio=)``)."""
    async with stream:
        async for audio in stream:
            yield audio.frame


def build_server():
    from livekit.agents import AgentServer

    settings = WorkerSettings()
    http_port = {} if settings.agent_http_port is None else {"port": settings.agent_http_port}
    # Load = share of job slots in use, not CPU: on one host the CPU is the TTS engine's, and
    # livekit-server stops dispatching to a worker that reports itself loaded.
    server = AgentServer(load_fnc=lambda srv: len(srv.active_jobs) / settings.agent_max_jobs,
                         load_threshold=1.0, host=settings.agent_http_host, **http_port)
    # agent_name set: jobs come only by explicit dispatch (token room config, dispatch API, SIP rule).
    server.rtc_session(entrypoint, agent_name=settings.agent_name)
    return server


def main(argv: list[str]) -> int:
    """``argv`` starts with the command word (dev, start, console, connect, download-files)."""
    from livekit.agents import cli

    sys.argv = ["python -m agent", *argv]
    try:
        cli.run_app(build_server())
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
