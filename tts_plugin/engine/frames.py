"""Generated token ids -> 7-token frames of SNAC codes.

The slot of a token is its position in the generated stream modulo 7, so a bad token can never
shift the slots of the tokens after it. A token outside its slot's code range (a non-audio token,
or an audio token of another slot) invalidates its whole frame: the frame is dropped and counted.
Code 0 is a valid code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import numpy as np

from .profiles import AUDIO_TOKEN_BASE, CODEBOOK_SIZE, END_OF_SPEECH, FRAME_TOKENS


@dataclass
class FrameStats:
    tokens: int = 0  # audio-position tokens consumed (stop token excluded)
    frames: int = 0  # complete, valid frames produced
    invalid_tokens: int = 0
    dropped_frames: int = 0  # frames discarded because they held an invalid token
    partial_tail_tokens: int = 0  # tokens of an incomplete last frame (never decoded)


def token_to_code(token_id: int, slot: int) -> int | None:
    """The SNAC code a token carries in ``slot``, or None when it is outside that slot's range."""
    code = token_id - AUDIO_TOKEN_BASE - CODEBOOK_SIZE * slot
    return code if 0 <= code < CODEBOOK_SIZE else None


def frame_token_ids(codes: Iterable[int]) -> list[int]:
    """Inverse of the mapping: 7 codes of one frame -> the 7 token ids the LM emits."""
    return [AUDIO_TOKEN_BASE + CODEBOOK_SIZE * slot + int(c) for slot, c in enumerate(codes)]


class FrameAssembler:
    """Feeds token ids one by one; yields each completed frame as 7 codes (t0..t6)."""

    def __init__(self) -> None:
        self.stats = FrameStats()
        self._codes = np.zeros(FRAME_TOKENS, dtype=np.int64)
        self._frame_ok = True
        self.ended = False

    def push(self, token_ids: Iterable[int]) -> list[np.ndarray]:
        frames: list[np.ndarray] = []
        for token_id in token_ids:
            if self.ended:
                break
            if token_id == END_OF_SPEECH:
                self.ended = True
                break
            slot = self.stats.tokens % FRAME_TOKENS
            self.stats.tokens += 1
            code = token_to_code(token_id, slot)
            if code is None:
                self.stats.invalid_tokens += 1
                self._frame_ok = False
            else:
                self._codes[slot] = code
            if slot == FRAME_TOKENS - 1:
                if self._frame_ok:
                    frames.append(self._codes.copy())
                    self.stats.frames += 1
                else:
                    self.stats.dropped_frames += 1
                self._frame_ok = True
        return frames

    def finish(self) -> None:
        self.stats.partial_tail_tokens = self.stats.tokens % FRAME_TOKENS


async def frames_from_tokens(
    token_batches: AsyncIterator[list[int]], assembler: FrameAssembler | None = None
) -> AsyncIterator[np.ndarray]:
    """Async stage: batches of generated token ids -> arrays (k, 7) of the frames they complete."""
    assembler = assembler or FrameAssembler()
    async for batch in token_batches:
        frames = assembler.push(batch)
        if frames:
            yield np.stack(frames)
        if assembler.ended:
            break
    assembler.finish()


def frames_to_snac_codes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 7) frames -> SNAC's three code levels of lengths n, 2n, 4n.

    level0 = [t0], level1 = [t1, t4], level2 = [t2, t3, t5, t6] per frame.
    """
    frames = np.asarray(frames, dtype=np.int64).reshape(-1, FRAME_TOKENS)
    level0 = frames[:, 0]
    level1 = frames[:, [1, 4]].reshape(-1)
    level2 = frames[:, [2, 3, 5, 6]].reshape(-1)
    return level0, level1, level2
