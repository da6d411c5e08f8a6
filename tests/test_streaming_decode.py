"""Streaming SNAC decode against the offline decode of the whole code sequence.

These hold for every streaming decoder the engine may use (see DECODERS).
"""

import numpy as np
import pytest

from tts_plugin.engine.decode_batcher import DecodeBatcher
from tts_plugin.engine.snac_codec import FRAME_SAMPLES
from tts_plugin.engine.stream_decoder import IncrementalDecoder, IncrementalSnac
from tts_plugin.engine.window_decoder import WindowDecoder

_batchers: dict[int, DecodeBatcher] = {}


def _batched(codec):
    """The engine's default: an incremental decoder behind the shared cross-stream batcher."""
    if id(codec) not in _batchers:
        _batchers[id(codec)] = DecodeBatcher.for_codec(codec)
    return _batchers[id(codec)].open_stream()


DECODERS = {
    "window": lambda codec: WindowDecoder(codec),
    "incremental": lambda codec: IncrementalDecoder(IncrementalSnac(codec)),
    "batched": _batched,
}


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    noise = np.sum((reference - test) ** 2)
    return float(10 * np.log10(np.sum(reference ** 2) / max(noise, 1e-30)))


def random_frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, size=(n, 7))


def stream(decoder, frames: np.ndarray, push_size: int) -> list[np.ndarray]:
    chunks = [decoder.push(frames[i:i + push_size]) for i in range(0, len(frames), push_size)]
    chunks.append(decoder.flush())
    return chunks


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("push_size", [1, 3, 12])
def test_streamed_audio_matches_offline_decode_with_exact_length(snac_codec, name, push_size):
    frames = random_frames(12)
    offline = snac_codec.decode(frames)
    decoder = DECODERS[name](snac_codec)
    streamed = np.concatenate(stream(decoder, frames, push_size))
    assert len(streamed) == len(offline) == FRAME_SAMPLES * len(frames)
    # Audio that waited for its full look-ahead is close to exact; report the measured figure.
    early = decoder.early_frames * FRAME_SAMPLES
    ratio = snr_db(offline[early:], streamed[early:])
    print(f"{name} push={push_size}: {ratio:.1f} dB after early audio, {snr_db(offline, streamed):.1f} dB overall")
    assert ratio >= 60.0
    assert snr_db(offline, streamed) >= 30.0


@pytest.mark.parametrize("name", DECODERS)
def test_first_audio_comes_after_at_most_two_frames_and_total_length_is_exact(snac_codec, name):
    decoder = DECODERS[name](snac_codec)
    frames = random_frames(6, seed=1)
    first = decoder.push(frames[:1])
    second = decoder.push(frames[1:2])
    assert len(first) + len(second) >= FRAME_SAMPLES  # frame 0 is out after two frames
    chunks = [c for c in [first, second] if len(c)] + [decoder.push(f[None]) for f in frames[2:]]
    chunks.append(decoder.flush())
    # Chunks need not be frame-aligned (exact audio may go out to its last ready sample), but
    # the whole is exactly 2048 samples a frame.
    assert sum(map(len, chunks)) == 6 * FRAME_SAMPLES


@pytest.mark.parametrize("name", DECODERS)
def test_last_frames_are_flushed_at_end_of_stream(snac_codec, name):
    frames = random_frames(5, seed=2)
    decoder = DECODERS[name](snac_codec)
    pushed = sum(len(decoder.push(f[None])) for f in frames)
    assert pushed < 5 * FRAME_SAMPLES  # look-ahead holds some back...
    tail = decoder.flush()
    assert pushed + len(tail) == 5 * FRAME_SAMPLES  # ...until the flush
    offline = snac_codec.decode(frames)
    assert snr_db(offline[-len(tail):], tail) >= 60.0
    assert len(decoder.flush()) == 0  # a second flush emits nothing more


@pytest.mark.parametrize("name", DECODERS)
def test_single_frame_utterance_is_emitted_once(snac_codec, name):
    frames = random_frames(1, seed=3)
    decoder = DECODERS[name](snac_codec)
    audio = np.concatenate([decoder.push(frames), decoder.flush()])
    assert snr_db(snac_codec.decode(frames), audio) >= 60.0


def test_positional_noise_makes_decoding_repeatable_and_independent_of_cuts(snac_codec):
    frames = random_frames(8, seed=4)
    whole = snac_codec.decode(frames)
    assert np.array_equal(whole, snac_codec.decode(frames))
    # frames 4..7 decoded from frame 2 on (2 frames of left context) match the whole decode there
    part = snac_codec.decode(frames[2:], start_frame=2)[2 * FRAME_SAMPLES:]
    assert snr_db(whole[4 * FRAME_SAMPLES:], part) >= 60.0


@pytest.mark.parametrize("name", DECODERS)
async def test_decode_stage_yields_no_empty_chunk_and_every_sample_once(snac_codec, name):
    from tts_plugin.engine.decode_stage import DecodeExecutor, pcm_from_frames

    frames = random_frames(9, seed=5)

    async def batches():
        for i in range(0, 9, 2):  # 2, 2, 2, 2, 1 frames
            yield frames[i:i + 2]

    executor = DecodeExecutor()
    chunks = [c async for c in pcm_from_frames(batches(), DECODERS[name](snac_codec), executor)]
    executor.shutdown()
    assert chunks and all(len(c) > 0 for c in chunks)
    streamed = np.concatenate(chunks)
    assert len(streamed) == 9 * FRAME_SAMPLES
    assert snr_db(snac_codec.decode(frames)[FRAME_SAMPLES:], streamed[FRAME_SAMPLES:]) >= 60.0
