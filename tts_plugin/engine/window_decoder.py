"""Streaming SNAC decode by overlapping windows: every frame's audio is emitted exactly once.

A frame is emitted once ``right`` frames after it have arrived, decoded inside a window that also
holds ``left`` frames before it; with positional noise the result matches an offline decode of the
whole sequence (2 x 2 frames of context: ~80 dB). The very first frame goes out as soon as
``first_audio_frames`` frames exist (less right context: early audio), and ``flush`` emits the
tail at end of stream with the same zero padding an offline decode sees.

Not the default (the incremental decoder is); it stays in the engine because ``--decoder window``
is the in-run baseline of ``bench/server_e2e.py``, which measures the real server with each decoder.
"""

from __future__ import annotations

import numpy as np

from .snac_codec import FRAME_SAMPLES, SnacCodec


class WindowDecoder:
    def __init__(self, codec: SnacCodec, *, left: int = 2, right: int = 2, first_audio_frames: int = 2) -> None:
        if right < 0 or left < 0 or first_audio_frames < 1:
            raise ValueError("context sizes must be >= 0 and first_audio_frames >= 1")
        self.codec = codec
        self.left = left
        self.right = right
        self.first_audio_frames = first_audio_frames
        self._frames: list[np.ndarray] = []
        self.emitted = 0  # frames whose audio has been returned
        self.early_frames = 0  # frames emitted with less than `right` frames of look-ahead

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Add frames (k, 7); return the float32 audio of every frame that became ready."""
        self._frames.extend(np.asarray(frames).reshape(-1, 7))
        ready = len(self._frames) - self.right
        if self.emitted == 0 and ready < 1 and len(self._frames) >= self.first_audio_frames:
            ready = 1
            self.early_frames = 1
        return self._emit_until(ready)

    def flush(self) -> np.ndarray:
        """End of stream: emit everything not yet emitted."""
        return self._emit_until(len(self._frames))

    def _emit_until(self, end: int) -> np.ndarray:
        if end <= self.emitted:
            return np.zeros(0, dtype=np.float32)
        start = max(0, self.emitted - self.left)
        stop = min(len(self._frames), end + self.right)
        audio = self.codec.decode(np.stack(self._frames[start:stop]), start_frame=start)
        out = audio[(self.emitted - start) * FRAME_SAMPLES:(end - start) * FRAME_SAMPLES]
        self.emitted = end
        return out
