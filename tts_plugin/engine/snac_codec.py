"""SNAC 24 kHz loading and offline decoding, prepared for streaming.

Two changes to the model as published, both output-preserving in distribution:
- weight norm is folded into plain weights once (the published model recomputes every decoder
  weight on every call, ~2x slower);
- the decoder's NoiseBlocks draw their noise from a fixed Gaussian table indexed by absolute
  sample position instead of the global RNG, so a frame decodes to the same samples however the
  stream is cut into windows (and two decodes of the same codes agree).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..protocol import SAMPLE_RATE
from .frames import frames_to_snac_codes

log = logging.getLogger(__name__)

HOP = 512  # samples per latent frame
FRAME_SAMPLES = 2048  # samples per Orpheus frame (4 latent frames)
LATENTS_PER_FRAME = FRAME_SAMPLES // HOP

# hubertsiuzdak/snac_24khz config.json (used to build the 'random' test codec).
SNAC_24KHZ_CONFIG = dict(
    sampling_rate=SAMPLE_RATE, encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024,
    decoder_rates=[8, 8, 4, 2], attn_window_size=None, codebook_size=4096, codebook_dim=8,
    vq_strides=[4, 2, 1], noise=True, depthwise=True,
)

NOISE_TABLE_LEN = 1 << 20  # 43.7 s at 24 kHz before the table repeats


class PositionalNoise(nn.Module):
    """Drop-in for snac's NoiseBlock: x + linear(x) * noise[absolute position]."""

    def __init__(self, linear: nn.Module, upsampling: int, seed: int) -> None:
        super().__init__()
        self.linear = linear
        self.upsampling = upsampling  # samples of this layer per latent frame
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(NOISE_TABLE_LEN, generator=gen), persistent=False)
        # Per thread: decode workers share this module, each decoding its own positions.
        self._position = threading.local()

    @property
    def start_latent(self) -> torch.Tensor | None:
        """Absolute latent-frame index of column 0 of the input, per batch row (set by the caller)."""
        return getattr(self._position, "start_latent", None)

    @start_latent.setter
    def start_latent(self, value: torch.Tensor | None) -> None:
        self._position.start_latent = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length = x.shape
        start = self.start_latent if self.start_latent is not None else torch.zeros(batch, dtype=torch.long)
        pos = start.to(x.device).view(-1, 1) * self.upsampling + torch.arange(length, device=x.device)
        noise = self.table[pos % NOISE_TABLE_LEN].to(x.dtype).unsqueeze(1)
        return x + self.linear(x) * noise


def fold_weight_norm(model: nn.Module) -> None:
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def load_snac(name: str, *, seed: int = 0) -> nn.Module:
    """SNAC by Hugging Face id or local dir; ``random`` = real 24 kHz config, seeded random weights."""
    from snac import SNAC

    if name == "random":
        torch.manual_seed(seed)
        model = SNAC(**SNAC_24KHZ_CONFIG)
        log.warning("SNAC with RANDOM weights: output is noise, for tests and benchmarks only")
    else:
        model = SNAC.from_pretrained(name)
    return model.eval()


@dataclass
class CodecConfig:
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    noise_seed: int = 1234


class SnacCodec:
    """Decoder half of SNAC, ready for streaming: folded, deterministic noise, inference only."""

    def __init__(self, model: nn.Module, config: CodecConfig | None = None) -> None:
        self.config = config or CodecConfig()
        fold_weight_norm(model)
        self.noise_blocks: list[PositionalNoise] = []
        upsampling = 1
        for block in model.decoder.model:
            stride = _decoder_block_stride(block)
            if stride:
                upsampling *= stride
                layers = block.block
                for i, layer in enumerate(layers):
                    if type(layer).__name__ == "NoiseBlock":
                        noise = PositionalNoise(layer.linear, upsampling, self.config.noise_seed + len(self.noise_blocks))
                        layers[i] = noise
                        self.noise_blocks.append(noise)
        model.encoder = None  # decoding only: free the encoder's memory
        self.model = model.to(device=self.config.device, dtype=self.config.dtype)
        for noise in self.noise_blocks:  # the table stays fp32 for exact indexing parity across dtypes
            noise.table = noise.table.float()

    @torch.inference_mode()
    def decode(self, frames: np.ndarray, start_frame: int = 0) -> np.ndarray:
        """Offline decode of consecutive frames (n, 7) whose first is ``start_frame``: float32 PCM."""
        frames = np.asarray(frames).reshape(-1, 7)
        if len(frames) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.decode_batch([frames], [start_frame])[0]

    @torch.inference_mode()
    def decode_batch(self, windows: list[np.ndarray], start_frames: list[int]) -> list[np.ndarray]:
        """Decode equal-length windows of frames in one call (one row per window)."""
        device = self.config.device
        levels = [frames_to_snac_codes(w) for w in windows]
        codes = [torch.from_numpy(np.stack([lv[i] for lv in levels])).to(device) for i in range(3)]
        start = torch.tensor([s * LATENTS_PER_FRAME for s in start_frames], dtype=torch.long)
        for noise in self.noise_blocks:
            noise.start_latent = start
        z = self.model.quantizer.from_codes(codes)
        audio = self.model.decoder(z.to(self.config.dtype))
        return [row for row in audio[:, 0, :].float().cpu().numpy()]


def _decoder_block_stride(block: nn.Module) -> int:
    for layer in getattr(block, "block", []):
        if isinstance(layer, nn.ConvTranspose1d):
            return layer.stride[0]
    return 0


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
