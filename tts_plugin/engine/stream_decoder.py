"""Exact incremental SNAC decoding: every output sample is computed once, streams batch together.

Each temporal convolution keeps the last inputs it needs as state, so a pushed frame costs one
frame of compute. All layers run in a *uniform* schedule: ``n`` latents in give ``n * 512``
samples out for every stream, whatever its age, so streams at different points of their
utterances stack into one batched call. The price is a fixed lag: a chunk's output starts
``lag`` samples (4757 for SNAC 24 kHz, its receptive field) before the chunk's aligned position.
Outputs at positions an offline decode does not have (before 0, after the end) are junk; they
are zeroed before every temporal convolution, which is exactly the zero padding an offline
decode applies, and dropped from the final audio. End of stream feeds zero latents until the
lag is drained.

The transposed convolutions (kernel 2s, stride s, padding s/2) run as one GEMM over pairs of
consecutive inputs with ``s`` output phases: same arithmetic, no slow ConvTranspose1d path on the
CPU, and a one-sample state. 1x1 convolutions at the latent rate run as plain GEMMs (oneDNN's
conv path is ~10x slower on 4-column inputs).

Use one torch thread on the CPU: a step is ~200 small ops, and with two threads every op's
parallel region waits for a core that vLLM (or anything else) holds: measured >5x slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .frames import frames_to_snac_codes
from .snac_codec import FRAME_SAMPLES, HOP, LATENTS_PER_FRAME, NOISE_TABLE_LEN, PositionalNoise, SnacCodec


@dataclass
class StreamState:
    """Per-stream convolution state and position; rows of a batched step."""

    history: list[torch.Tensor]  # one (1, C, H) tensor per stateful slot, in plan order
    start_latent: int = 0  # absolute latent index of this stream's latent 0 (noise positions)
    latents_in: int = 0  # latents fed so far, including end-of-stream padding
    end_latent: int | None = None  # real latents of the stream, once it has ended


class _StepContext:
    """Positions of the current chunk for every row, at any layer's rate and lag."""

    def __init__(self, states: list[StreamState], latents: int) -> None:
        self.first = [s.latents_in for s in states]
        self.ends = [s.end_latent for s in states]
        self.starts = [s.start_latent for s in states]
        self.latents = latents

    def first_positions(self, up: int, lag: int) -> list[int]:
        return [a * up - lag for a in self.first]

    def zero_invalid(self, x: torch.Tensor, up: int, lag: int) -> torch.Tensor:
        """Zero the columns an offline decode would see as padding (before 0 or past the end)."""
        length = x.shape[-1]
        firsts = self.first_positions(up, lag)
        if all(f >= 0 and (e is None or f + length <= e * up) for f, e in zip(firsts, self.ends)):
            return x
        pos = torch.tensor(firsts, device=x.device).view(-1, 1) + torch.arange(length, device=x.device)
        ends = torch.tensor([(e * up if e is not None else 1 << 62) for e in self.ends], device=x.device)
        keep = (pos >= 0) & (pos < ends.view(-1, 1))
        return x * keep.unsqueeze(1).to(x.dtype)


def _snake(x: torch.Tensor, alpha: torch.Tensor, inv_alpha: torch.Tensor, out: torch.Tensor | None = None):
    # snac's x + 1/(alpha+1e-9) * sin(alpha x)^2 with one temporary instead of four
    return torch.addcmul(x, (alpha * x).sin_().square_(), inv_alpha, out=out)


def _snake_expr(x, alpha, inv_alpha):
    return x + inv_alpha * torch.sin(alpha * x).pow(2)


def _snake_into(x, alpha, inv_alpha, out):
    out.copy_(_snake_expr(x, alpha, inv_alpha))


class SnakeKernels:
    """Snake activation, eager or fused by torch.compile (one pass instead of four). On this CPU
    the fused kernel halves Snake alone, but the decode gains only ~10 % at 8 streams and nothing
    for one stream (call overhead), so it is opt-in. Compiling needs a C++ compiler (CPU) and
    5-20 s once per process; any compile failure falls back to eager."""

    def __init__(self, fused: bool = False) -> None:
        self.fused = fused
        if fused:
            self._apply = torch.compile(_snake_expr, dynamic=True)
            self._into = torch.compile(_snake_into, dynamic=True)

    def apply(self, x, alpha, inv_alpha):
        if self.fused:
            try:
                return self._apply(x, alpha, inv_alpha)
            except Exception:  # no compiler / backend: stay correct, get slower
                self.fused = False
        return _snake(x, alpha, inv_alpha)

    def into(self, x, alpha, inv_alpha, out):
        if self.fused:
            try:
                self._into(x, alpha, inv_alpha, out)
                return
            except Exception:
                self.fused = False
        _snake(x, alpha, inv_alpha, out=out)


EAGER_SNAKE = SnakeKernels(fused=False)


def _cat_history(history: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([history, x], dim=2) if history.shape[-1] else x


class _Op:
    """One layer in the uniform schedule. ``up``/``lag`` describe its *output* stream."""

    states = 0  # number of history tensors this op keeps

    def init_history(self) -> list[torch.Tensor]:
        return []

    def step(self, x: torch.Tensor, history: list[torch.Tensor], ctx: _StepContext):
        raise NotImplementedError


class _Snake(_Op):
    kernels = EAGER_SNAKE

    def __init__(self, snake: nn.Module) -> None:
        self.alpha = snake.alpha.detach()
        self.inv_alpha = (self.alpha + 1e-9).reciprocal()

    def step(self, x, history, ctx):
        return self.kernels.apply(x, self.alpha, self.inv_alpha), []


class _Pointwise(_Op):
    """1x1 conv. Short chunks (latent rate) run as one (B*T, C_in) x (C_in, C_out) GEMM: oneDNN's
    conv path is ~10x slower there; long chunks keep the channels-first conv."""

    SHORT = 16

    def __init__(self, conv: nn.Conv1d) -> None:
        self.weight = conv.weight.detach()
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.weight_t = self.weight[:, :, 0].t().contiguous()  # (C_in, C_out)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        if t >= self.SHORT:
            if b == 1 and self.bias is not None:
                return torch.addmm(self.bias.view(-1, 1), self.weight[:, :, 0], x[0]).unsqueeze(0)
            return F.conv1d(x, self.weight, self.bias)
        rows = x.transpose(1, 2).reshape(b * t, c)
        y = rows @ self.weight_t if self.bias is None else torch.addmm(self.bias, rows, self.weight_t)
        return y.view(b, t, -1).transpose(1, 2).contiguous()

    def step(self, x, history, ctx):
        return self.apply(x), []


class _Tanh(_Op):
    def step(self, x, history, ctx):
        return torch.tanh_(x), []


class _TemporalConv(_Op):
    """Symmetric-padded conv (kernel k, dilation d): state = last (k-1)d inputs, lag += pad."""

    states = 1

    def __init__(self, conv: nn.Conv1d, up: int, lag_in: int) -> None:
        self.weight, self.bias = conv.weight.detach(), conv.bias.detach()
        self.dilation, self.groups = conv.dilation[0], conv.groups
        self.span = (conv.kernel_size[0] - 1) * self.dilation
        assert conv.padding[0] * 2 == self.span, "expects 'same' padding"
        self.up, self.lag_in, self.lag = up, lag_in, lag_in + conv.padding[0]
        self.channels = conv.in_channels

    def init_history(self):
        return [torch.zeros(1, self.channels, self.span, dtype=self.weight.dtype, device=self.weight.device)]

    def step(self, x, history, ctx):
        buf = _cat_history(history[0], ctx.zero_invalid(x, self.up, self.lag_in))
        y = F.conv1d(buf, self.weight, self.bias, dilation=self.dilation, groups=self.groups)
        return y, [buf[:, :, buf.shape[-1] - self.span:]]


class _Upsample(_Op):
    """ConvTranspose1d(k=2s, stride s, padding s/2) as a 2-tap conv with s phases per input.

    Untrimmed output block m (samples s*m .. s*m+s-1) = W[:, :, r] x[m] + W[:, :, s+r] x[m-1];
    the padding trims s/2 samples at the start, which is a lag of s/2 output samples. It runs as
    one GEMM (B*n, 2*C_in) x (2*C_in, s*C_out) whose rows reshape to time-major output for free.
    """

    states = 1

    def __init__(self, convt: nn.ConvTranspose1d, up_in: int, lag_in: int) -> None:
        s, k, p = convt.stride[0], convt.kernel_size[0], convt.padding[0]
        assert k == 2 * s and convt.output_padding[0] == 0 and convt.groups == 1
        w = convt.weight.detach()  # (C_in, C_out, 2s)
        c_in, c_out = w.shape[0], w.shape[1]
        # rows [x[m-1]; x[m]] meet kernel taps [s + r; r]; columns ordered (phase r, C_out)
        taps = torch.cat([w[:, :, s:], w[:, :, :s]], dim=0)  # (2*C_in, C_out, s)
        self.weight = taps.permute(0, 2, 1).reshape(2 * c_in, s * c_out).contiguous()
        self.bias = convt.bias.detach().repeat(s)
        self.stride, self.c_in, self.c_out = s, c_in, c_out
        self.up_in, self.lag_in = up_in, lag_in
        self.up, self.lag = up_in * s, lag_in * s + p

    def init_history(self):
        return [torch.zeros(1, self.c_in, 1, dtype=self.weight.dtype, device=self.weight.device)]

    def step(self, x, history, ctx):
        x = ctx.zero_invalid(x, self.up_in, self.lag_in)
        b, _, n = x.shape
        rows = x.transpose(1, 2)  # (B, n, C_in) time-major view
        pairs = x.new_empty(b, n, 2 * self.c_in)  # row m = [x[m-1], x[m]]
        pairs[:, :, self.c_in:] = rows
        pairs[:, :1, :self.c_in] = history[0].transpose(1, 2)
        pairs[:, 1:, :self.c_in] = rows[:, :-1]
        y = torch.addmm(self.bias, pairs.view(b * n, 2 * self.c_in), self.weight)  # (B*n, s*C_out)
        y = y.view(b, n * self.stride, self.c_out).transpose(1, 2).contiguous()
        return y, [x[:, :, -1:]]


class _Noise(_Op):
    """PositionalNoise: x + linear(x) * table[absolute sample position]."""

    def __init__(self, noise: PositionalNoise, up: int, lag: int) -> None:
        self.linear = _Pointwise(noise.linear)
        self.table, self.mode = noise.table, noise.mode
        self.up, self.lag = up, lag

    def step(self, x, history, ctx):
        if self.mode == "off":
            return x, []
        b, _, length = x.shape
        if self.mode == "random":
            noise = torch.randn((b, 1, length), device=x.device, dtype=x.dtype)
        else:
            firsts = [s * self.up + f for s, f in zip(ctx.starts, ctx.first_positions(self.up, self.lag))]
            pos = torch.tensor(firsts, device=x.device).view(-1, 1) + torch.arange(length, device=x.device)
            noise = self.table[pos % NOISE_TABLE_LEN].to(x.dtype).unsqueeze(1)
        return torch.addcmul(x, self.linear.apply(x), noise), []


class _Residual(_Op):
    """ResidualUnit: x + 1x1(snake(dilated depthwise conv(snake(x)))); x waits ``pad`` samples."""

    states = 2
    kernels = EAGER_SNAKE

    def __init__(self, unit: nn.Module, up: int, lag_in: int) -> None:
        snake1, conv, snake2, pointwise = unit.block
        self.snake1, self.snake2 = _Snake(snake1), _Snake(snake2)
        self.conv = _TemporalConv(conv, up, lag_in)
        self.pointwise = _Pointwise(pointwise)
        self.pad = conv.padding[0]
        self.up, self.lag = up, self.conv.lag

    def init_history(self):
        conv_hist = self.conv.init_history()[0]
        return [conv_hist, conv_hist.new_zeros(*conv_hist.shape[:2], self.pad)]

    def step(self, x, history, ctx):
        conv, pad = self.conv, self.pad
        b, c, n = x.shape
        # snake(x) is written straight after the conv history: no concatenation copy
        buf = x.new_empty(b, c, conv.span + n)
        buf[:, :, :conv.span] = history[0]
        fresh = buf[:, :, conv.span:]
        self.kernels.into(x, self.snake1.alpha, self.snake1.inv_alpha, fresh)
        masked = ctx.zero_invalid(fresh, self.up, conv.lag_in)
        if masked is not fresh:
            fresh.copy_(masked)
        h = F.conv1d(buf, conv.weight, conv.bias, dilation=conv.dilation, groups=conv.groups)
        y = self.pointwise.apply(self.kernels.apply(h, self.snake2.alpha, self.snake2.inv_alpha))
        # the residual path is x delayed by `pad` samples
        if n >= pad:
            y[:, :, :pad] += history[1]
            y[:, :, pad:] += x[:, :, :n - pad]
            x_history = x[:, :, n - pad:]
        else:
            xs = torch.cat([history[1], x], dim=2)
            y += xs[:, :, :n]
            x_history = xs[:, :, n:]
        return y, [buf[:, :, buf.shape[-1] - conv.span:], x_history]


class IncrementalSnac:
    """The SNAC decoder as a list of stateful ops; ``step`` decodes one chunk for many streams."""

    def __init__(self, codec: SnacCodec, *, fused_snake: bool = False) -> None:
        self.codec = codec
        self.snake = SnakeKernels(fused_snake)
        self.ops: list[_Op] = []
        up, lag = 1, 0
        for layer in codec.model.decoder.model:
            name = type(layer).__name__
            if name == "DecoderBlock":
                for sub in layer.block:
                    op = self._make(sub, up, lag)
                    up, lag = getattr(op, "up", up), getattr(op, "lag", lag)
                    self.ops.append(op)
            else:
                op = self._make(layer, up, lag)
                up, lag = getattr(op, "up", up), getattr(op, "lag", lag)
                self.ops.append(op)
        for op in self.ops:
            if isinstance(op, (_Snake, _Residual)):
                op.kernels = self.snake
        assert up == HOP, f"decoder upsamples by {up}, expected {HOP}"
        self.lag = lag  # output samples by which a chunk's audio trails its latents
        self.drain_latents = math.ceil(lag / HOP)  # zero latents that flush the lag at the end

    @staticmethod
    def _make(layer: nn.Module, up: int, lag: int) -> _Op:
        name = type(layer).__name__
        if name == "Snake1d":
            return _Snake(layer)
        if name == "Tanh":
            return _Tanh()
        if isinstance(layer, PositionalNoise):
            return _Noise(layer, up, lag)
        if name == "ResidualUnit":
            return _Residual(layer, up, lag)
        if isinstance(layer, nn.ConvTranspose1d):
            return _Upsample(layer, up, lag)
        if isinstance(layer, nn.Conv1d):
            return _Pointwise(layer) if layer.kernel_size[0] == 1 else _TemporalConv(layer, up, lag)
        raise TypeError(f"unsupported decoder layer {name}")

    def new_state(self, start_latent: int = 0) -> StreamState:
        return StreamState(history=[h for op in self.ops for h in op.init_history()], start_latent=start_latent)

    @torch.inference_mode()
    def latents(self, frames: np.ndarray) -> torch.Tensor:
        """Frames (n, 7) -> quantized latents (1, C, 4n) in the codec's dtype."""
        device = self.codec.config.device
        codes = [torch.from_numpy(level).view(1, -1).to(device) for level in frames_to_snac_codes(frames)]
        return self.codec.model.quantizer.from_codes(codes).to(self.codec.config.dtype)

    def zero_latents(self, count: int) -> torch.Tensor:
        dim = self.ops[0].channels
        return torch.zeros(1, dim, count, dtype=self.codec.config.dtype, device=self.codec.config.device)

    @torch.inference_mode()
    def step(self, states: list[StreamState], z: torch.Tensor) -> torch.Tensor:
        """Decode latents z (B, C, n), row i continuing ``states[i]``: audio (B, n*512) float32.

        Row i's audio covers positions ``states[i].latents_in*512 - lag`` onwards (as before the
        call); states are advanced in place.
        """
        batch, latents = len(states), z.shape[-1]
        ctx = _StepContext(states, latents)
        if batch == 1:
            history = states[0].history
        else:
            history = [torch.cat(rows) for rows in zip(*(s.history for s in states))]
        new_history: list[torch.Tensor] = []
        x, slot = z, 0
        for op in self.ops:
            x, kept = op.step(x, history[slot:slot + op.states], ctx)
            slot += op.states
            new_history.extend(kept)
        for i, state in enumerate(states):
            state.history = new_history if batch == 1 else [h[i:i + 1] for h in new_history]
            state.latents_in += latents
        return x[:, 0, :].float()


@dataclass
class _Emission:
    emitted: int = 0  # samples handed out so far (positions [0, emitted))
    early_samples: int = 0  # of which emitted with partial look-ahead
    frames: list[np.ndarray] = field(default_factory=list)


class IncrementalDecoder:
    """StreamDecoder for one stream: exact audio as soon as its full look-ahead exists.

    First audio goes out once ``first_audio_frames`` frames exist: while the exact path is still
    inside its lag, the frames so far are decoded offline (zero look-ahead padding) and the audio
    of all but the last ``first_audio_frames - 1`` frames is emitted early, once per stream
    (~39 dB against the offline decode; everything after it is exact). Chunks are not
    frame-aligned: exact audio goes out to the last sample whose look-ahead exists.
    """

    def __init__(self, snac: IncrementalSnac, *, first_audio_frames: int = 2, start_frame: int = 0) -> None:
        if first_audio_frames < 1:
            raise ValueError("first_audio_frames must be >= 1")
        self.snac = snac
        self.first_audio_frames = first_audio_frames
        self.start_frame = start_frame
        self.state = snac.new_state(start_frame * LATENTS_PER_FRAME)
        self._out = _Emission()
        self._stepped_frames = 0  # frames whose latents went through `snac.step`
        self.ended = False

    @property
    def emitted_samples(self) -> int:
        return self._out.emitted

    @property
    def early_samples(self) -> int:
        return self._out.early_samples

    @property
    def early_frames(self) -> int:  # same meaning as WindowDecoder.early_frames
        return self._out.early_samples // FRAME_SAMPLES

    @property
    def frames_in(self) -> int:
        return len(self._out.frames)

    # The batcher drives these two halves; push/flush run them back to back.
    def prepare_push(self, frames: np.ndarray) -> torch.Tensor | None:
        """Latents to step now, or None: stepping is deferred while it could not yet emit a sample
        (the first ~2.3 frames sit inside the lag), so first audio costs only the early decode."""
        if self.ended:
            raise RuntimeError("push after flush")
        frames = np.asarray(frames, dtype=np.int64).reshape(-1, 7)
        self._out.frames.extend(frames)
        if len(self._out.frames) * FRAME_SAMPLES - self.snac.lag <= self._out.emitted:
            return None
        return self._take_unstepped()

    def prepare_flush(self) -> torch.Tensor | None:
        if self.ended:
            return None
        self.ended = True
        self.state.end_latent = len(self._out.frames) * LATENTS_PER_FRAME
        if not self._out.frames:
            return None
        drain = self.snac.zero_latents(self.snac.drain_latents)
        pending = self._take_unstepped()
        return drain if pending is None else torch.cat([pending, drain], dim=2)

    def _take_unstepped(self) -> torch.Tensor | None:
        frames = self._out.frames[self._stepped_frames:]
        if not frames:
            return None
        self._stepped_frames = len(self._out.frames)
        return self.snac.latents(np.stack(frames))

    def finish(self, audio: torch.Tensor | None, first_position: int) -> np.ndarray:
        """Exact audio row whose first sample is at ``first_position`` -> the samples to emit."""
        out = self._out
        total = len(out.frames) * FRAME_SAMPLES
        pieces = []
        if audio is not None:
            samples = audio.numpy()
            lo = max(out.emitted, first_position)
            hi = min(total, first_position + len(samples))
            if hi > lo:
                pieces.append(samples[lo - first_position:hi - first_position])
                out.emitted = hi
        if out.emitted == 0 and not self.ended and len(out.frames) >= self.first_audio_frames:
            pieces.append(self._early_audio())
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    def _early_audio(self) -> np.ndarray:
        out = self._out
        frames = np.stack(out.frames)
        until = (len(frames) - self.first_audio_frames + 1) * FRAME_SAMPLES
        audio = self.snac.codec.decode(frames, start_frame=self.start_frame)[out.emitted:until]
        out.emitted, out.early_samples = until, until
        return audio

    def next_position(self) -> int:
        return self.state.latents_in * HOP - self.snac.lag

    def push(self, frames: np.ndarray) -> np.ndarray:
        z = self.prepare_push(frames)
        return self._run(z)

    def flush(self) -> np.ndarray:
        z = self.prepare_flush()
        return self._run(z)

    def _run(self, z: torch.Tensor | None) -> np.ndarray:
        if z is None:
            return self.finish(None, 0)
        first = self.next_position()
        return self.finish(self.snac.step([self.state], z)[0], first)
