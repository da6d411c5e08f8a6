"""The incremental SNAC decoder and the cross-stream batcher against an offline decode."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from tts_plugin.engine.decode_batcher import DecodeBatcher
from tts_plugin.engine.decode_stage import DecodeExecutor, pcm_from_frames
from tts_plugin.engine.snac_codec import FRAME_SAMPLES
from tts_plugin.engine.stream_decoder import IncrementalDecoder, IncrementalSnac

EXACT_SNR_DB = 100.0  # fp32: measured ~123 dB (rounding only); 60 dB would already be inaudible
EARLY_SNR_DB = 20.0  # first frame, one frame of look-ahead: measured ~39 dB


def snr_db(signal: np.ndarray, reference: np.ndarray) -> float:
    noise = float(np.sum((signal.astype(np.float64) - reference) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / noise)


@pytest.fixture(scope="module")
def snac(snac_codec):
    return IncrementalSnac(snac_codec)


def frames_of(count: int, seed: int) -> np.ndarray:
    frames = np.random.default_rng(seed).integers(0, 4096, size=(count, 7))
    frames[0, :] = 0  # code 0 is valid
    return frames


def stream(decoder, frames: np.ndarray, push_size: int) -> list[np.ndarray]:
    chunks = [decoder.push(frames[i:i + push_size]) for i in range(0, len(frames), push_size)]
    return chunks + [decoder.flush()]


@pytest.mark.parametrize("push_size", [1, 3, 14])
def test_matches_offline_decode_for_any_push_size(snac, snac_codec, push_size):
    frames = frames_of(14, seed=push_size)
    decoder = IncrementalDecoder(snac)
    chunks = stream(decoder, frames, push_size)
    audio = np.concatenate(chunks)
    reference = snac_codec.decode(frames)

    assert len(audio) == len(reference) == FRAME_SAMPLES * len(frames)
    early = decoder.early_samples
    assert snr_db(audio[early:], reference[early:]) >= EXACT_SNR_DB
    if early:
        assert snr_db(audio[:early], reference[:early]) >= EARLY_SNR_DB
    # a push of everything at once has its full look-ahead except the tail: nothing early
    assert (early == 0) == (push_size >= 3)


def test_first_audio_after_two_frames_then_frame_by_frame(snac):
    decoder = IncrementalDecoder(snac)
    frames = frames_of(8, seed=1)
    sizes = [len(decoder.push(f)) for f in frames]
    assert sizes[0] == 0 and sizes[1] == FRAME_SAMPLES  # first audio once 2 frames (14 tokens) exist
    assert decoder.early_samples == FRAME_SAMPLES
    assert sum(sizes) + len(decoder.flush()) == FRAME_SAMPLES * len(frames)


def test_first_audio_frames_is_configurable(snac):
    decoder = IncrementalDecoder(snac, first_audio_frames=1)
    assert len(decoder.push(frames_of(1, seed=2))) == FRAME_SAMPLES


@pytest.mark.parametrize("count", [1, 2, 3])
def test_short_utterances_flush_exactly(snac, snac_codec, count):
    frames = frames_of(count, seed=10 + count)
    decoder = IncrementalDecoder(snac)
    audio = np.concatenate(stream(decoder, frames, 1))
    reference = snac_codec.decode(frames)
    assert len(audio) == len(reference)
    early = decoder.early_samples
    assert snr_db(audio[early:], reference[early:]) >= EXACT_SNR_DB


def test_flush_without_frames_and_no_push_after_flush(snac):
    decoder = IncrementalDecoder(snac)
    assert decoder.flush().size == 0
    with pytest.raises(RuntimeError):
        decoder.push(frames_of(1, seed=3))


def test_start_frame_offsets_the_noise_like_offline(snac, snac_codec):
    frames = frames_of(6, seed=4)
    decoder = IncrementalDecoder(snac, start_frame=50)
    audio = np.concatenate(stream(decoder, frames, 2))
    reference = snac_codec.decode(frames, start_frame=50)
    early = decoder.early_samples
    assert snr_db(audio[early:], reference[early:]) >= EXACT_SNR_DB


def test_batched_step_equals_separate_steps(snac):
    """Rows of one call at different ages of their streams, one of them ending."""
    frames = frames_of(12, seed=5)
    solo = [IncrementalDecoder(snac) for _ in range(3)]
    batched = [IncrementalDecoder(snac) for _ in range(3)]
    for decoders in (solo, batched):
        for decoder, count in zip(decoders, (4, 7, 10)):
            decoder.push(frames[:count])
    expected = [solo[0].push(frames[4:5]), solo[1].push(frames[7:8]), solo[2].push(frames[10:11])]
    zs = [batched[0].prepare_push(frames[4:5]), batched[1].prepare_push(frames[7:8]),
          batched[2].prepare_push(frames[10:11])]
    firsts = [d.next_position() for d in batched]
    audio = snac.step([d.state for d in batched], torch.cat(zs))
    got = [d.finish(audio[i], firsts[i]) for i, d in enumerate(batched)]
    for want, have in zip(expected, got):
        assert len(want) == len(have) == FRAME_SAMPLES
        assert snr_db(have, want) >= EXACT_SNR_DB
    # and the rows carry on independently: a flush of one, a push of another
    assert snr_db(batched[2].flush(), solo[2].flush()) >= EXACT_SNR_DB
    assert snr_db(batched[0].push(frames[5:6]), solo[0].push(frames[5:6])) >= EXACT_SNR_DB


def test_batcher_streams_of_different_lengths_and_start_times(snac, snac_codec):
    batcher = DecodeBatcher(snac, max_wait_s=0.005)
    utterances = [frames_of(n, seed=20 + n) for n in (1, 4, 11, 7, 9)]

    async def one(frames: np.ndarray, delay: float, push_size: int) -> np.ndarray:
        await asyncio.sleep(delay)

        async def batches():
            for i in range(0, len(frames), push_size):
                await asyncio.sleep(0.005)
                yield frames[i:i + push_size]
        decoder = batcher.open_stream()
        chunks = [c async for c in pcm_from_frames(batches(), decoder, DecodeExecutor())]
        assert all(len(c) for c in chunks)  # no empty chunk
        return np.concatenate(chunks), decoder.decoder.early_samples

    async def run_all():
        return await asyncio.gather(*[one(f, 0.02 * i, 1 + i % 3) for i, f in enumerate(utterances)])

    try:
        results = asyncio.run(run_all())
    finally:
        batcher.shutdown()
    for frames, (audio, early) in zip(utterances, results):
        reference = snac_codec.decode(frames)
        assert len(audio) == len(reference)
        assert snr_db(audio[early:], reference[early:]) >= EXACT_SNR_DB
    assert batcher.rows > batcher.ticks  # some calls did decode several streams at once


def test_batcher_sync_push_and_cancelled_stream_does_not_block_others(snac, snac_codec):
    batcher = DecodeBatcher(snac, max_wait_s=0.5)
    try:
        abandoned = batcher.open_stream()
        abandoned.push(frames_of(1, seed=6))
        abandoned.close()  # a cancelled stream stops being waited for
        live = batcher.open_stream()
        frames = frames_of(5, seed=7)
        audio = np.concatenate([live.push(frames[:2]), live.push(frames[2:]), live.flush()])
    finally:
        batcher.shutdown()
    reference = snac_codec.decode(frames)
    early = live.decoder.early_samples
    assert len(audio) == len(reference)
    assert snr_db(audio[early:], reference[early:]) >= EXACT_SNR_DB


def test_batcher_error_in_one_stream_does_not_fail_the_others(snac):
    batcher = DecodeBatcher(snac)
    try:
        finished = batcher.open_stream()
        finished.push(frames_of(1, seed=8))
        finished.flush()
        with pytest.raises(RuntimeError, match="push after flush"):
            finished.push(frames_of(1, seed=9))
        live = batcher.open_stream()
        assert len(live.push(frames_of(2, seed=10))) == FRAME_SAMPLES  # early first frame
    finally:
        batcher.shutdown()


def test_decode_pool_spreads_streams_and_concurrent_workers_stay_exact(snac_codec):
    """Two workers decode four streams at once; each stream still matches its offline decode
    (the positional noise of one worker never leaks into another's decode)."""
    from concurrent.futures import ThreadPoolExecutor

    from tts_plugin.engine.decode_batcher import DecodePool

    pool = DecodePool.for_codec(snac_codec, workers=2)
    try:
        streams = [pool.open_stream() for _ in range(4)]
        assert sorted(b.open_streams for b in pool.batchers) == [2, 2]
        utterances = [np.random.default_rng(100 + i).integers(0, 4096, size=(8 + i, 7)) for i in range(4)]

        def run(i):
            chunks = [streams[i].push(f[None]) for f in utterances[i]] + [streams[i].flush()]
            return np.concatenate(chunks)

        with ThreadPoolExecutor(4) as threads:
            outputs = list(threads.map(run, range(4)))
        for frames, audio, stream in zip(utterances, outputs, streams):
            offline = snac_codec.decode(frames)
            assert len(audio) == len(offline) == 2048 * len(frames)
            early = stream.early_frames * 2048
            err = np.sum((offline[early:] - audio[early:]) ** 2)
            assert 10 * np.log10(np.sum(offline[early:] ** 2) / max(err, 1e-30)) >= 60.0
        assert all(b.open_streams == 0 for b in pool.batchers)
    finally:
        pool.shutdown()


def test_offline_decodes_on_several_threads_do_not_share_noise_positions(snac_codec):
    from concurrent.futures import ThreadPoolExecutor

    frames = np.random.default_rng(9).integers(0, 4096, size=(6, 7))
    expected = {start: snac_codec.decode(frames, start_frame=start) for start in (0, 40, 80, 120)}
    with ThreadPoolExecutor(4) as threads:
        results = list(threads.map(lambda s: (s, snac_codec.decode(frames, start_frame=s)), list(expected) * 3))
    def snr(ref, test):
        return 10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - test) ** 2), 1e-30))

    # Worker threads round differently (their own intra-op pools): compare by SNR. A decode that
    # used another thread's noise positions scores ~3 dB.
    assert snr(expected[0], expected[40]) < 10
    for start, audio in results:
        assert snr(expected[start], audio) > 100


def test_batcher_holds_steady_state_chunks_for_other_streams_but_never_a_first_audio(snac):
    """With an hour-long batch wait, a first audio still comes at once (a held one would time out
    here); a steady-state push then waits for the other stream and both decode in one call."""
    from concurrent.futures import wait

    batcher = DecodeBatcher(snac, max_wait_s=3600)
    try:
        a, b = batcher.open_stream(), batcher.open_stream()
        for stream, seed in ((a, 30), (b, 31)):  # first audio while the other stream is idle
            assert len(batcher.submit(stream, frames_of(2, seed=seed)).result(timeout=60)) == FRAME_SAMPLES
        ticks, rows = batcher.ticks, batcher.rows
        held = batcher.submit(a, frames_of(1, seed=32))  # a has audio out: may wait for b
        other = batcher.submit(b, frames_of(1, seed=33))
        wait([held, other], timeout=300)
        assert held.done() and other.done()
        assert (batcher.ticks - ticks, batcher.rows - rows) == (1, 2)  # one call, both streams
    finally:
        batcher.shutdown()
