"""The streaming engine on a real vLLM CPU engine (tiny random model, random SNAC)."""

import asyncio
from contextlib import aclosing

import numpy as np
import pytest

from tts_plugin.engine.generator import SamplingOptions
from tts_plugin.engine.snac_codec import FRAME_SAMPLES
from tts_plugin.engine.text import TextError

SHORT = SamplingOptions(max_tokens=70, seed=7)  # 10 frames a sentence


def snr_db(reference, test) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / max(np.sum((reference - test) ** 2), 1e-30)))


async def collect(stream) -> bytes:
    async with aclosing(stream):
        return b"".join([chunk async for chunk in stream])


async def wait_until_idle(engine, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if engine.running_requests == 0:
            return
        await asyncio.sleep(0.05)


async def test_stream_yields_exactly_2048_samples_per_generated_frame(engine):
    stream = engine.synthesize("Hello there. How are you?", voice="leo", options=SHORT)
    pcm = await collect(stream)
    m = stream.metrics
    assert m.sentences == 2 and m.frames == 20 and m.invalid_tokens == 0
    assert len(pcm) == 2 * FRAME_SAMPLES * m.frames
    assert m.ttfb_s is not None and m.audio_s == pytest.approx(20 * FRAME_SAMPLES / 24000)
    assert np.abs(np.frombuffer(pcm, "<i2")).max() > 0


async def test_same_seed_gives_the_same_audio(engine):
    first, second, other = [np.frombuffer(await collect(engine.synthesize("Repeat me.", options=o)), "<i2")
                            .astype(np.float64) for o in (SHORT, SHORT, SHORT.model_copy(update={"seed": 8}))]
    # Same tokens; the decode may be cut into different windows (vLLM batches deltas by timing),
    # which moves a few samples by rounding only. Other tokens give far less (random SNAC weights
    # share a code-independent component, so not ~0 dB).
    assert len(first) == len(second)
    assert snr_db(first, second) > 50 > 40 > snr_db(first, other)


async def test_slot_constraint_keeps_every_token_in_range(engine):
    stream = engine.synthesize("Constrained tokens only.", options=SamplingOptions(max_tokens=140, temperature=1.5, seed=3))
    await collect(stream)
    assert stream.metrics.tokens == 140 and stream.metrics.invalid_tokens == 0


async def test_closing_the_stream_aborts_the_vllm_request(engine):
    stream = engine.synthesize("A long sentence that would run for a while.",
                               options=SamplingOptions(max_tokens=7 * 400))
    async with aclosing(stream):
        async for _ in stream:
            assert engine.running_requests == 1
            break
    await wait_until_idle(engine)
    assert engine.running_requests == 0 and engine.active_streams == 0
    assert stream.metrics.cancelled and stream.metrics.frames < 400
    # the engine serves the next request normally
    assert len(await collect(engine.synthesize("Next.", options=SHORT))) == 10 * FRAME_SAMPLES * 2


async def test_cancelling_the_consumer_task_aborts_the_vllm_request(engine):
    stream = engine.synthesize("Cancel me from outside.", options=SamplingOptions(max_tokens=7 * 400))
    started = asyncio.Event()

    async def consume():
        async with aclosing(stream):
            async for _ in stream:
                started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until_idle(engine)
    assert engine.running_requests == 0


async def test_four_concurrent_streams_all_complete_with_exact_lengths(engine):
    texts = ["One stream.", "Two streams here.", "Three at once.", "And a fourth, longer one. With two sentences."]
    # Seeded: the slot constraint allows end-of-speech on frame boundaries, and exact lengths
    # need generations that run to their budget.
    streams = [engine.synthesize(t, options=SamplingOptions(max_tokens=49 + 7 * i, seed=i))
               for i, t in enumerate(texts)]
    results = await asyncio.gather(*(collect(s) for s in streams))
    for pcm, stream in zip(results, streams):
        assert len(pcm) == 2 * FRAME_SAMPLES * stream.metrics.frames
    assert [s.metrics.frames for s in streams] == [7, 8, 9, 20]


async def test_long_text_with_tags_is_spoken_sentence_by_sentence(engine):
    text = "First sentence. <laugh> Second one, with a tag! Third? " + "More words, " * 40 + "end."
    from tts_plugin.engine.text import split_sentences

    sentences = split_sentences(text)
    assert sentences[:3] == ["First sentence.", "<laugh> Second one, with a tag!", "Third?"]
    assert all(len(s) <= 280 for s in sentences)
    stream = engine.synthesize(text, options=SamplingOptions(max_tokens=14, seed=5))
    await collect(stream)
    assert stream.metrics.sentences == len(sentences) == stream.metrics.frames // 2


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(text=""), TextError, "empty"),
    (dict(text="x" * 5000), TextError, "limit"),
    (dict(text="Hi.", voice="nobody"), ValueError, "unknown voice"),
])
async def test_bad_input_is_refused_before_any_generation(engine, kwargs, error, match):
    with pytest.raises(error, match=match):
        engine.synthesize(**kwargs)
    assert engine.running_requests == 0


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(max_tokens=3), dict(speed=2)])
def test_out_of_range_sampling_options_are_refused(bad):
    with pytest.raises(ValueError):
        SamplingOptions(**bad)


class ExplodingDecoder:
    def push(self, frames):
        raise RuntimeError("decoder failed")

    def flush(self):
        raise AssertionError("never reached")


async def test_a_failing_stage_aborts_the_vllm_request_and_reaches_the_consumer(engine):
    from tts_plugin.engine.engine import OrpheusEngine

    broken = OrpheusEngine(engine.settings, engine.generator, engine.prompts, engine.codec,
                           decoder_factory=ExplodingDecoder)
    with pytest.raises(RuntimeError, match="decoder failed"):
        await collect(broken.synthesize("This will fail.", options=SamplingOptions(max_tokens=7 * 400)))
    await wait_until_idle(engine)
    assert engine.running_requests == 0 and broken.active_streams == 0
    broken.executor.shutdown()


async def test_decoding_runs_off_the_event_loop_thread(engine):
    import threading

    from tts_plugin.engine.engine import OrpheusEngine
    from tts_plugin.engine.window_decoder import WindowDecoder

    threads = set()

    class RecordingDecoder(WindowDecoder):
        def push(self, frames):
            threads.add(threading.current_thread())
            return super().push(frames)

    recording = OrpheusEngine(engine.settings, engine.generator, engine.prompts, engine.codec,
                              decoder_factory=lambda: RecordingDecoder(engine.codec))
    await collect(recording.synthesize("Off the loop.", options=SHORT))
    recording.executor.shutdown()
    assert threads and threading.main_thread() not in threads


async def test_closing_a_token_generation_aborts_its_vllm_request_before_any_collection(engine):
    # The abort must come from closing vLLM's generate() explicitly, not from the garbage
    # collector or the loop's async-generator finalizer (which runs later, if ever).
    import gc

    tokens = engine.generator.generate(engine.prompts.build("Close me.", engine.default_voice),
                                       SamplingOptions(max_tokens=7 * 400).resolved(engine.settings))
    gc.disable()
    try:
        await tokens.__anext__()
        assert engine.running_requests == 1
        await tokens.aclose()
        assert engine.running_requests == 0  # at once: no await of anything else in between
    finally:
        gc.enable()
    await wait_until_idle(engine)
