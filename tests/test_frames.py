"""Generated tokens -> 7-token frames -> SNAC code levels."""

import numpy as np

from tts_plugin.engine.frames import FrameAssembler, frame_token_ids, frames_to_snac_codes, token_to_code
from tts_plugin.engine.profiles import AUDIO_TOKEN_BASE, CODEBOOK_SIZE, END_OF_SPEECH


def test_token_ids_map_to_slot_codes_including_code_zero():
    assert token_to_code(AUDIO_TOKEN_BASE, 0) == 0
    assert token_to_code(AUDIO_TOKEN_BASE + CODEBOOK_SIZE * 3 + 4095, 3) == 4095
    assert token_to_code(AUDIO_TOKEN_BASE + CODEBOOK_SIZE * 3, 2) is None  # another slot's token
    assert token_to_code(128000, 0) is None  # a text token


def test_frames_with_code_zero_are_kept_whole():
    codes = [[0, 0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 4095]]
    assembler = FrameAssembler()
    frames = assembler.push(frame_token_ids(codes[0]) + frame_token_ids(codes[1]))
    assert [f.tolist() for f in frames] == codes
    assert assembler.stats.frames == 2 and assembler.stats.invalid_tokens == 0


def test_out_of_range_token_drops_its_frame_without_shifting_later_slots():
    good = [[7, 8, 9, 10, 11, 12, 13], [20, 21, 22, 23, 24, 25, 26]]
    bad = frame_token_ids([1, 1, 1, 1, 1, 1, 1])
    bad[3] = 128009  # a text token where slot 3's audio token belongs
    assembler = FrameAssembler()
    frames = assembler.push(frame_token_ids(good[0]) + bad + frame_token_ids(good[1]))
    assert [f.tolist() for f in frames] == good
    assert assembler.stats.invalid_tokens == 1
    assert assembler.stats.dropped_frames == 1


def test_end_of_speech_stops_and_partial_tail_is_counted_not_decoded():
    assembler = FrameAssembler()
    tokens = frame_token_ids([5] * 7) + frame_token_ids([6] * 7)[:3]
    frames = assembler.push(tokens)
    assert assembler.push([END_OF_SPEECH] + frame_token_ids([9] * 7)) == []
    assembler.finish()
    assert len(frames) == 1 and assembler.ended
    assert assembler.stats.partial_tail_tokens == 3


def test_tokens_split_across_batches_assemble_the_same_frames():
    codes = np.arange(70).reshape(10, 7) * 50
    tokens = [t for frame in codes for t in frame_token_ids(frame)]
    whole = FrameAssembler().push(tokens)
    assembler = FrameAssembler()
    pieces = [f for i in range(0, len(tokens), 3) for f in assembler.push(tokens[i:i + 3])]
    assert np.array_equal(np.stack(whole), np.stack(pieces))


def test_snac_levels_follow_the_orpheus_layout():
    frames = np.array([[0, 1, 2, 3, 4, 5, 6], [10, 11, 12, 13, 14, 15, 16]])
    level0, level1, level2 = frames_to_snac_codes(frames)
    assert level0.tolist() == [0, 10]
    assert level1.tolist() == [1, 4, 11, 14]
    assert level2.tolist() == [2, 3, 5, 6, 12, 13, 15, 16]
