"""``OrpheusTTS``: Orpheus speech for LiveKit Agents, streamed sentence by sentence at 24 kHz mono.

    tts = OrpheusTTS(voice="tara")                       # ORPHEUS_SERVER_URL set: the TTS server
    tts = OrpheusTTS(server_url="http://127.0.0.1:8000") # explicitly the TTS server
    tts = OrpheusTTS(server_url=..., api_key="...")      # a server with ORPHEUS_API_KEYS (default: ORPHEUS_API_KEY)
    tts = OrpheusTTS(engine=engine)                      # an engine already running in this process
    session = AgentSession(tts=tts, ...)

Without a server URL the engine runs in this process (started on first use from
``EngineSettings``): fine for scripts and tests, not for agent workers with many jobs.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING

import aiohttp
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts, utils
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from . import hops
from .backends.base import SpeakOptions, SpeechBackend
from .backends.local import EngineBackend
from .backends.remote import ServerBackend
from .models import DEFAULT_VOICE, TTSVoices
from .protocol import CHANNELS, SAMPLE_RATE
from .sampling import SamplingOptions
from .settings import ServerClientSettings

if TYPE_CHECKING:
    from .engine.engine import OrpheusEngine
    from .settings import EngineSettings


def _checked(voice: str, sampling: dict) -> SpeakOptions:
    """Refuse bad values when they are set, not at the first turn (ValueError)."""
    if not isinstance(voice, str) or not voice.strip():
        raise ValueError("voice must be a non-empty string")
    return SpeakOptions(voice=voice, sampling_options=SamplingOptions(**sampling))


class OrpheusTTS(tts.TTS):
    def __init__(
        self,
        *,
        voice: TTSVoices | str = DEFAULT_VOICE,
        server_url: NotGivenOr[str | None] = NOT_GIVEN,
        api_key: NotGivenOr[str | None] = NOT_GIVEN,
        engine: OrpheusEngine | None = None,
        settings: EngineSettings | None = None,
        http_session: aiohttp.ClientSession | None = None,
        **sampling: float | int | None,
    ) -> None:
        """
        Args:
            voice: speaker name of the model ("tara", "leo", ...).
            **sampling: ``temperature``, ``top_p``, ``repetition_penalty``, ``max_tokens`` (audio
                tokens of one sentence), ``seed``: names and bounds of ``SamplingOptions``; unset or
                None keeps the engine's defaults.
            server_url: base URL of the TTS server (``http://127.0.0.1:8000``); defaults to
                ``ORPHEUS_SERVER_URL``. None or unset: the in-process engine.
            api_key: the server's API key (sent as ``Authorization: Bearer``); defaults to
                ``ORPHEUS_API_KEY``.
            engine: an ``OrpheusEngine`` running in this process, shared (not closed by ``aclose``).
            settings: settings for an in-process engine this TTS starts and owns.
            http_session: aiohttp session for the server's WebSocket (default: the job's).
        """
        super().__init__(capabilities=tts.TTSCapabilities(streaming=True), sample_rate=SAMPLE_RATE,
                         num_channels=CHANNELS)
        self._opts = _checked(voice, sampling)
        client = ServerClientSettings()
        url = server_url if is_given(server_url) else client.server_url
        key = api_key if is_given(api_key) else (client.api_key.get_secret_value() if client.api_key else None)
        self._backend: SpeechBackend
        if engine is not None:
            self._backend = EngineBackend(engine=engine)
        elif url:
            self._backend = ServerBackend(url, http_session=http_session, api_key=key)
        else:
            self._backend = EngineBackend(settings=settings)
        self._streams = weakref.WeakSet[SynthesizeStream]()

    @property
    def model(self) -> str:
        return self._backend.model

    @property
    def provider(self) -> str:
        return "orpheus-rtc"

    @property
    def backend(self) -> SpeechBackend:
        return self._backend

    @property
    def voice(self) -> str:
        return self._opts.voice

    def update_options(
        self,
        *,
        voice: NotGivenOr[TTSVoices | str] = NOT_GIVEN,
        **sampling: float | int | None,
    ) -> None:
        """Change options for streams created from now on (running streams keep theirs).

        ``sampling``: the knobs to change (as in the constructor); None puts one back to the engine's default.
        """
        self._opts = _checked(voice if is_given(voice) else self._opts.voice,
                              {**self._opts.sampling(), **sampling})

    def prewarm(self) -> None:
        """Open a server connection (or start the in-process engine) before the first turn."""
        self._backend.prewarm()

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
                   ) -> ChunkedStream:
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> SynthesizeStream:
        stream = SynthesizeStream(tts=self, conn_options=conn_options)
        self._streams.add(stream)
        return stream

    async def aclose(self) -> None:
        for stream in list(self._streams):
            await stream.aclose()
        self._streams.clear()
        await self._backend.aclose()


class ChunkedStream(tts.ChunkedStream):
    """The whole text at once; still spoken sentence by sentence as the engine produces it."""

    def __init__(self, *, tts: OrpheusTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: OrpheusTTS = tts
        self._opts = tts._opts  # frozen: a snapshot

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        segment_id = utils.shortuuid()
        hops.mark("stream_opened", segment_id)
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=SAMPLE_RATE,
                                  num_channels=CHANNELS, mime_type="audio/pcm")
        speech = self._tts._backend.speak(_single(self._input_text), self._opts, segment_id=segment_id,
                                          conn_options=self._conn_options, on_text_sent=lambda: None)
        await _push_all(speech, output_emitter, segment_id)
        output_emitter.flush()


class SynthesizeStream(tts.SynthesizeStream):
    """LLM tokens in (``push_text``), speech out as each sentence completes."""

    def __init__(self, *, tts: OrpheusTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: OrpheusTTS = tts
        self._opts = tts._opts  # frozen: a snapshot

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        # A fresh id per stream: the server tags audio with it, so audio of an earlier,
        # interrupted stream can never come out of this one.
        segment_id = utils.shortuuid()
        hops.mark("stream_opened", segment_id)
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=SAMPLE_RATE,
                                  num_channels=CHANNELS, mime_type="audio/pcm", stream=True)
        segment_started = False

        async def text() -> AsyncIterator[str]:
            nonlocal segment_started
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    break  # one segment per stream: the framework drops text pushed after a flush
                if not segment_started:
                    output_emitter.start_segment(segment_id=segment_id)
                    segment_started = True
                yield data

        speech = self._tts._backend.speak(text(), self._opts, segment_id=segment_id,
                                          conn_options=self._conn_options, on_text_sent=self._mark_started)
        await _push_all(speech, output_emitter, segment_id)
        if segment_started:
            output_emitter.end_segment()


async def _single(text: str) -> AsyncIterator[str]:
    yield text


async def _push_all(speech: AsyncIterator[bytes], output_emitter: tts.AudioEmitter, segment_id: str) -> None:
    async with aclosing(speech):
        async for pcm in speech:
            hops.mark_once("first_push", segment_id)
            output_emitter.push(pcm)
