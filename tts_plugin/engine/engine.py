"""The streaming engine: text in, 24 kHz mono s16le PCM out, as an async iterator.

    engine = await OrpheusEngine.start(EngineSettings())
    stream = engine.synthesize("Hello there.", voice="tara")
    async with contextlib.aclosing(stream):
        async for pcm in stream:      # bytes, s16le, 24 kHz mono
            ...
    stream.metrics                    # TTFB, audio seconds, tokens, invalid tokens...

Closing the stream (or cancelling its consumer) aborts the vLLM request at once. Input is
validated when ``synthesize`` is called, so callers can reject bad input before streaming; the
sentence split runs in a thread when the stream starts (it must never hold the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

import torch

from ..protocol import SAMPLE_RATE
from ..settings import EngineSettings
from .decode_batcher import DecodePool
from .decode_stage import DecodeExecutor, StreamDecoder, float_to_pcm16, pcm_from_frames
from .frames import FrameAssembler, frames_from_tokens
from .generator import SamplingOptions, TokenGenerator
from .profiles import ModelProfile, get_profile
from .prompt import PromptBuilder
from .remote_generator import RemoteTokenGenerator
from .snac_codec import CodecConfig, SnacCodec, load_snac, resolve_device
from .text import TextError, audio_token_budget, split_sentences, validate
from .voices import VoiceCatalog
from .window_decoder import WindowDecoder

log = logging.getLogger("orpheus.engine")


@dataclass
class SpeechMetrics:
    request_id: str
    started_at: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    first_audio_at: float | None = None
    tokens_at_first_audio: int | None = None  # audio tokens generated when the first PCM went out
    finished_at: float | None = None
    audio_samples: int = 0
    tokens: int = 0
    frames: int = 0
    invalid_tokens: int = 0
    dropped_frames: int = 0
    sentences: int = 0
    prompt_tokens: int = 0  # ids sent to the LM, all sentences together
    cancelled: bool = False

    @property
    def ttfb_s(self) -> float | None:
        return None if self.first_audio_at is None else self.first_audio_at - self.started_at

    @property
    def first_audio_after_token_s(self) -> float | None:
        """Decode latency: first audio token -> first PCM."""
        if self.first_audio_at is None or self.first_token_at is None:
            return None
        return self.first_audio_at - self.first_token_at

    @property
    def audio_s(self) -> float:
        return self.audio_samples / SAMPLE_RATE

    @property
    def elapsed_s(self) -> float:
        return (self.finished_at or time.perf_counter()) - self.started_at

    @property
    def rtf(self) -> float | None:
        """Wall time per second of audio (< 1 is faster than real time)."""
        return self.elapsed_s / self.audio_s if self.audio_samples else None

    def add(self, part: SpeechMetrics) -> None:
        """Count in ``part``, a stream spoken as a piece of this one (a WebSocket segment's sentences)."""
        if self.first_audio_at is None:
            self.first_audio_at = part.first_audio_at
        self.audio_samples += part.audio_samples
        self.tokens += part.tokens
        self.frames += part.frames
        self.invalid_tokens += part.invalid_tokens
        self.dropped_frames += part.dropped_frames
        self.sentences += part.sentences
        self.prompt_tokens += part.prompt_tokens


async def _timed(tokens: AsyncIterator[list[int]], metrics: SpeechMetrics) -> AsyncIterator[list[int]]:
    async with aclosing(tokens):
        async for batch in tokens:
            if metrics.first_token_at is None:
                metrics.first_token_at = time.perf_counter()
            yield batch


class SpeechStream:
    """Async iterator of PCM chunks (bytes) for one utterance; ``aclose()`` stops generation."""

    def __init__(self, chunks: AsyncIterator[bytes], metrics: SpeechMetrics) -> None:
        self._chunks = chunks
        self.metrics = metrics

    def __aiter__(self) -> SpeechStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()


class OrpheusEngine:
    def __init__(self, settings: EngineSettings, generator: TokenGenerator | RemoteTokenGenerator,
                 prompts: PromptBuilder, codec: SnacCodec,
                 decoder_factory: Callable[[], StreamDecoder] | None = None) -> None:
        self.settings = settings
        self.profile: ModelProfile = prompts.profile
        self.voice_catalog = VoiceCatalog.for_profile(self.profile, default=settings.voice,
                                                      aliases=settings.voice_aliases)
        self.generator = generator
        self.prompts = prompts
        self.codec = codec
        # Default: the exact incremental decoder, streams batched on the pool's worker threads.
        self.decode_pool = None
        if decoder_factory is None and settings.decoder == "window":
            decoder_factory = lambda: WindowDecoder(codec)  # noqa: E731
        if decoder_factory is None:
            self.decode_pool = DecodePool.for_codec(codec, workers=settings.decode_workers,
                                                    threads=settings.decode_threads,
                                                    max_wait_s=settings.decode_batch_wait_ms / 1000)
            decoder_factory = self.decode_pool.open_stream
        self.decoder_factory = decoder_factory
        self.executor = DecodeExecutor(settings.decode_threads)  # for decoders without async push
        self.active_streams = 0

    @classmethod
    async def start(cls, settings: EngineSettings | None = None) -> OrpheusEngine:
        settings = settings or EngineSettings()
        profile = get_profile(settings.profile)
        # Loading blocks for seconds: in threads, so a server's loop keeps answering /health.
        prompts = await asyncio.to_thread(PromptBuilder.load, settings.tokenizer or settings.model, profile)
        dtype = torch.bfloat16 if settings.snac_dtype == "bfloat16" else torch.float32
        snac = await asyncio.to_thread(load_snac, settings.snac_model)
        codec = SnacCodec(snac, CodecConfig(device=resolve_device(settings.device), dtype=dtype))
        if settings.vllm_url:
            generator = await RemoteTokenGenerator.connect(settings)
        else:
            generator = TokenGenerator.start(settings)
        return cls(settings, generator, prompts, codec)

    @property
    def voices(self) -> tuple[str, ...]:
        return self.profile.voices

    @property
    def default_voice(self) -> str:
        return self.voice_catalog.default

    def resolve_voice(self, name: str | None) -> str:
        """A voice or alias -> the model's voice (None: the default); ValueError names the known ones."""
        return self.voice_catalog.resolve(name)

    def synthesize(self, text: str, *, voice: str | None = None, options: SamplingOptions | None = None,
                   request_id: str | None = None) -> SpeechStream:
        """Validate now (TextError/ValueError), stream later."""
        clean = validate(text, self.settings.max_input_chars)
        voice = self.resolve_voice(voice)
        options = (options or SamplingOptions()).resolved(self.settings)
        metrics = SpeechMetrics(request_id=request_id or uuid.uuid4().hex)
        return SpeechStream(self._speak(clean, voice, options, metrics), metrics)

    async def _speak(self, text: str, voice: str, options: SamplingOptions,
                     metrics: SpeechMetrics) -> AsyncIterator[bytes]:
        self.active_streams += 1
        try:
            sentences = await asyncio.to_thread(split_sentences, text)
            for index, sentence in enumerate(sentences):
                budget = audio_token_budget(sentence, cap=options.max_tokens)
                sentence_options = options.model_copy(update={"max_tokens": budget})
                async with aclosing(self._speak_sentence(sentence, voice, sentence_options,
                                                         f"{metrics.request_id}-{index}", metrics)) as pcm:
                    async for chunk in pcm:
                        yield chunk
                metrics.sentences += 1
        except GeneratorExit:
            metrics.cancelled = True
            raise
        finally:
            metrics.finished_at = time.perf_counter()
            self.active_streams -= 1

    async def _speak_sentence(self, sentence: str, voice: str, options: SamplingOptions, request_id: str,
                              metrics: SpeechMetrics) -> AsyncIterator[bytes]:
        assembler = FrameAssembler()
        prompt_ids = self.prompts.build(sentence, voice)
        metrics.prompt_tokens += len(prompt_ids)
        tokens = _timed(self.generator.generate(prompt_ids, options, request_id), metrics)
        try:
            async with aclosing(tokens), aclosing(frames_from_tokens(tokens, assembler)) as frames, \
                    aclosing(pcm_from_frames(frames, self.decoder_factory(), self.executor)) as audio:
                async for samples in audio:
                    if metrics.first_audio_at is None:
                        metrics.first_audio_at = time.perf_counter()
                        metrics.tokens_at_first_audio = assembler.stats.tokens
                    metrics.audio_samples += len(samples)
                    yield float_to_pcm16(samples)
        finally:
            stats = assembler.stats
            metrics.tokens += stats.tokens
            metrics.frames += stats.frames
            metrics.invalid_tokens += stats.invalid_tokens
            metrics.dropped_frames += stats.dropped_frames
            if stats.invalid_tokens:
                log.warning("request %s: %d invalid tokens, %d frames dropped", request_id,
                            stats.invalid_tokens, stats.dropped_frames)

    async def warmup(self) -> None:
        """One short generation so the first real request pays no start-up cost."""
        stream = self.synthesize("Hi.", options=SamplingOptions(max_tokens=28))
        async with aclosing(stream):
            async for _ in stream:
                pass

    @property
    def running_requests(self) -> int:
        return self.generator.running_requests

    @property
    def failed(self) -> bool:
        """The token generator can never serve again (its vLLM engine core died)."""
        return bool(getattr(self.generator, "failed", False))

    @property
    def unreachable(self) -> str | None:
        """Why the remote vLLM server cannot be used now (None: it answers, or vLLM runs in this process)."""
        return getattr(self.generator, "unreachable", None)

    @property
    def decode_busy_s(self) -> float:
        """Wall time the SNAC decode workers have spent decoding, all streams together."""
        return (self.decode_pool.busy_s if self.decode_pool is not None else 0.0) + self.executor.busy_s

    async def aclose(self) -> None:
        # Joins of worker threads and of vLLM's engine core process: off the event loop.
        if self.decode_pool is not None:
            await asyncio.to_thread(self.decode_pool.shutdown)
        self.executor.shutdown()
        await self.generator.aclose()


__all__ = ["OrpheusEngine", "SpeechStream", "SpeechMetrics", "SamplingOptions", "TextError"]
