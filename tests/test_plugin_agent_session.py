"""An AgentSession with no room: a scripted LLM streams text, OrpheusTTS speaks it into a sink.

The LLM holds back the end of its answer until the sink has heard audio, so the test passes only
if the pipeline speaks the first sentence while the LLM is still generating.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, Agent, AgentSession, llm
from livekit.agents.voice import io

from tts_plugin import OrpheusTTS

MAX_TOKENS = 56
SENTENCE_SAMPLES = MAX_TOKENS // 7 * 2048
# The LLM stops mid-way through sentence two (the session's markdown filter holds back the last word).
FIRST_PART = ["Sure", ",", " here", " it", " is", ".", " The", " answer", " is"]
REST = [" forty", " two", "."]


class ScriptedLLM(llm.LLM):
    """Streams FIRST_PART, waits until ``heard`` is set (or gives up), then streams REST."""

    def __init__(self, heard: asyncio.Event) -> None:
        super().__init__()
        self.heard = heard
        self.waited_for_audio: bool | None = None

    def chat(self, *, chat_ctx, tools=None, conn_options=DEFAULT_API_CONNECT_OPTIONS, **_) -> llm.LLMStream:
        return ScriptedStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class ScriptedStream(llm.LLMStream):
    async def _run(self) -> None:
        script: ScriptedLLM = self._llm  # type: ignore[assignment]

        def send(token: str) -> None:
            self._event_ch.send_nowait(
                llm.ChatChunk(id="scripted", delta=llm.ChoiceDelta(role="assistant", content=token)))

        for token in FIRST_PART:
            send(token)
        try:
            await asyncio.wait_for(script.heard.wait(), 120)
            script.waited_for_audio = True
        except TimeoutError:
            script.waited_for_audio = False
        for token in REST:
            send(token)


class CollectingAudioOutput(io.AudioOutput):
    """A sink that keeps every frame and 'plays' instantly."""

    def __init__(self) -> None:
        super().__init__(label="collect", capabilities=io.AudioOutputCapabilities(pause=False), sample_rate=24000)
        self.frames: list[rtc.AudioFrame] = []
        self.heard = asyncio.Event()
        self._segment_s = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._segment_s:
            self.on_playback_started(created_at=time.time())
        self._segment_s += frame.duration
        self.frames.append(frame)
        self.heard.set()

    def flush(self) -> None:
        super().flush()
        if self._segment_s:
            played, self._segment_s = self._segment_s, 0.0
            self.on_playback_finished(playback_position=played, interrupted=False)

    def clear_buffer(self) -> None:
        if self._segment_s:
            played, self._segment_s = self._segment_s, 0.0
            self.on_playback_finished(playback_position=played, interrupted=True)


async def test_agent_session_speaks_llm_streamed_text_sentence_by_sentence(engine):
    sink = CollectingAudioOutput()
    scripted = ScriptedLLM(sink.heard)
    tts = OrpheusTTS(engine=engine, max_tokens=MAX_TOKENS, temperature=0.0)  # greedy: exact lengths
    session = AgentSession(llm=scripted, tts=tts)
    session.output.audio = sink
    try:
        await session.start(Agent(instructions="Answer briefly."))
        handle = session.generate_reply(user_input="What is the answer?")
        await handle.wait_for_playout()
    finally:
        await session.aclose()
        await tts.aclose()

    assert scripted.waited_for_audio is True  # first sentence heard while the LLM was mid-answer
    audio = np.concatenate([np.frombuffer(f.data, "<i2") for f in sink.frames])
    assert {f.sample_rate for f in sink.frames} == {24000} and {f.num_channels for f in sink.frames} == {1}
    assert len(audio) == 2 * SENTENCE_SAMPLES  # "Sure, here it is." + "The answer is forty two."
    assert np.abs(audio).max() > 0
