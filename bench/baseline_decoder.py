"""The common public Orpheus streaming decoder, reimplemented as the benchmark's baseline.

What it does (as published): wait for 28 tokens (4 frames); then after every further 7 tokens
decode the last 4 frames and keep samples [2048:4096], i.e. the second frame of the window.
Every frame is decoded ~4 times; first audio needs 4 frames; frame 0 and the last two frames
are never emitted (no end-of-stream flush). The public bugs around code 0 and the first chunk
are not reproduced: frames come in already assembled.

Two variants share the arithmetic:
- ``BaselineWindowDecoder(codec)``: on our ``SnacCodec`` (weight norm folded, positional noise),
  so it runs the same model object, dtype and threads as our decoder: the fair comparison;
- ``ShippedWindowDecoder(model)``: on the SNAC model as ``from_pretrained`` loads it (weight
  norm active, RNG noise) with the per-call code tensors it builds: the cost as shipped.
"""

from __future__ import annotations

import numpy as np
import torch

from tts_plugin.engine.frames import frames_to_snac_codes
from tts_plugin.engine.snac_codec import FRAME_SAMPLES, SnacCodec

WINDOW_FRAMES = 4
KEEP_FRAME = 1  # index of the frame kept from each window


class BaselineWindowDecoder:
    """push(frames) -> float32 audio of every frame that became ready (never the first/last)."""

    def __init__(self, codec: SnacCodec) -> None:
        self.codec = codec
        self._frames: list[np.ndarray] = []
        self.emitted_frames: list[int] = []  # frame index of each emitted chunk, in order

    def _decode_window(self, window: np.ndarray, start: int) -> np.ndarray:
        return self.codec.decode(window, start_frame=start)

    def push(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for frame in np.asarray(frames).reshape(-1, 7):
            self._frames.append(frame)
            count = len(self._frames)
            if count >= WINDOW_FRAMES:
                start = count - WINDOW_FRAMES
                audio = self._decode_window(np.stack(self._frames[start:]), start)
                out.append(audio[KEEP_FRAME * FRAME_SAMPLES:(KEEP_FRAME + 1) * FRAME_SAMPLES])
                self.emitted_frames.append(start + KEEP_FRAME)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def flush(self) -> np.ndarray:
        return np.zeros(0, dtype=np.float32)  # as published: the tail is never emitted


class ShippedWindowDecoder(BaselineWindowDecoder):
    """Same windows on the unmodified SNAC model (weight norm recomputed per call, RNG noise)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(codec=None)  # type: ignore[arg-type]
        self.model = model

    @torch.inference_mode()
    def _decode_window(self, window: np.ndarray, start: int) -> np.ndarray:
        codes = [torch.tensor(level, dtype=torch.int32).unsqueeze(0) for level in frames_to_snac_codes(window)]
        return self.model.decode(codes)[0, 0].cpu().numpy()
