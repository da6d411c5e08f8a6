"""The in-process engine as a backend: for scripts and tests that run everything in one process.

The engine (vLLM + SNAC) is either handed in (shared, not closed here) or started on first use
from ``EngineSettings`` and owned. Agent jobs in production talk to the TTS server instead: one
vLLM engine per job process does not scale.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING

from livekit.agents import APIConnectionError, APIConnectOptions, APIStatusError, utils

from ..log import logger
from .base import SpeakOptions, SpeechBackend

if TYPE_CHECKING:
    from ..engine.engine import OrpheusEngine
    from ..settings import EngineSettings


class EngineBackend(SpeechBackend):
    def __init__(self, engine: OrpheusEngine | None = None, settings: EngineSettings | None = None) -> None:
        self._engine = engine
        self._owns_engine = engine is None
        self._settings = settings
        self._starting: asyncio.Task[OrpheusEngine] | None = None

    @property
    def model(self) -> str:
        if self._engine is not None:
            return self._engine.settings.model
        return self._settings.model if self._settings else "orpheus"

    @property
    def engine(self) -> OrpheusEngine | None:
        return self._engine

    async def _start_engine(self) -> OrpheusEngine:
        from ..engine.engine import OrpheusEngine
        from ..settings import EngineSettings

        settings = self._settings or EngineSettings()
        logger.info("starting the in-process engine (model %s)", settings.model)
        engine = await OrpheusEngine.start(settings)
        await engine.warmup()
        self._engine = engine
        return engine

    async def _get_engine(self) -> OrpheusEngine:
        if self._engine is not None:
            return self._engine
        if self._starting is None:
            self._starting = asyncio.create_task(self._start_engine(), name="orpheus-engine-start")
        try:
            # shield: a cancelled first turn must not abort the start every later turn waits for
            return await asyncio.shield(self._starting)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._starting = None  # let a later request try again
            raise APIConnectionError(f"the in-process engine failed to start: {e}", retryable=False) from e

    def prewarm(self) -> None:
        if self._engine is None and self._starting is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop yet: the first request starts the engine
            self._starting = asyncio.create_task(self._start_engine(), name="orpheus-engine-start")

    async def speak(
        self,
        text: AsyncIterable[str],
        opts: SpeakOptions,
        *,
        segment_id: str,
        conn_options: APIConnectOptions,
        on_text_sent: Callable[[], None],
    ) -> AsyncIterator[bytes]:
        from ..engine.text import SentenceSplitter, TextError, has_words

        engine = await self._get_engine()
        sentences = utils.aio.Chan[str]()

        async def split_text() -> None:
            splitter = SentenceSplitter()
            try:
                async for token in text:
                    for sentence in splitter.push(token):
                        sentences.send_nowait(sentence)
                for sentence in splitter.flush():
                    if has_words(sentence):  # an LLM turn of only tags: nothing to say, not an error
                        sentences.send_nowait(sentence)
            finally:
                sentences.close()

        # Tokens keep arriving while earlier sentences are spoken.
        splitter = asyncio.create_task(split_text(), name="orpheus-sentences")
        try:
            index = 0
            async for sentence in sentences:
                try:
                    speech = engine.synthesize(sentence, voice=opts.voice, options=opts.sampling_options,
                                               request_id=f"{segment_id}-{index}")
                except (TextError, ValueError) as e:  # refused input: unknown voice, too long...
                    raise APIStatusError(str(e), status_code=400, retryable=False) from e
                index += 1
                on_text_sent()
                try:
                    async with aclosing(speech):  # closing aborts the vLLM request
                        async for pcm in speech:
                            yield pcm
                except (asyncio.CancelledError, GeneratorExit):
                    raise
                except Exception as e:
                    raise APIConnectionError(f"the in-process engine failed: {e}", retryable=False) from e
            await splitter  # surfaces an error of the text source
        finally:
            await utils.aio.gracefully_cancel(splitter)

    async def aclose(self) -> None:
        if self._starting is not None and not self._starting.done():
            await utils.aio.cancel_and_wait(self._starting)
        if self._owns_engine and self._engine is not None:
            await self._engine.aclose()
            self._engine = None
