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

Activations are time-major, ``(B, T, C)``: every 1x1 convolution is one GEMM on a free view,
and the transposed convolutions (kernel 2s, stride s, padding s/2) are one GEMM over pairs of
consecutive inputs whose rows are already the upsampled output, in order. Channel-major layout
cost a transpose copy around each of them (13 % of a single-stream step, measured).

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
from .snake_kernel import Snake


@dataclass
class StreamState:
    """Per-stream convolution state and position; rows of a batched step. Steps never write into
    ``history`` tensors, so a copy of the list is an independent fork of the stream."""

    history: list[torch.Tensor]  # one (1, H, C) tensor per stateful slot, in plan order
    start_latent: int = 0  # absolute latent index of this stream's latent 0 (noise positions)
    latents_in: int = 0  # latents fed so far, including end-of-stream padding
    end_latent: int | None = None  # real latents of the stream, once it has ended

    def fork(self, *, end_latent: int | None) -> StreamState:
        return StreamState(list(self.history), self.start_latent, self.latents_in, end_latent)


class _StepContext:
    """Positions of the current chunk for every row, at any layer's rate and lag."""

    def __init__(self, states: list[StreamState]) -> None:
        self.first = [s.latents_in for s in states]
        self.ends = [s.end_latent for s in states]
        self.starts = [s.start_latent for s in states]

    def first_positions(self, up: int, lag: int) -> list[int]:
        return [a * up - lag for a in self.first]

    def zero_invalid(self, x: torch.Tensor, up: int, lag: int) -> torch.Tensor:
        """Zero the rows an offline decode would see as padding (before 0 or past the end)."""
        length = x.shape[1]
        firsts = self.first_positions(up, lag)
        if all(f >= 0 and (e is None or f + length <= e * up) for f, e in zip(firsts, self.ends)):
            return x
        pos = torch.tensor(firsts, device=x.device).view(-1, 1) + torch.arange(length, device=x.device)
        ends = torch.tensor([(e * up if e is not None else 1 << 62) for e in self.ends], device=x.device)
        keep = (pos >= 0) & (pos < ends.view(-1, 1))
        return x * keep.unsqueeze(2).to(x.dtype)


class _Op:
    """One layer in the uniform schedule. ``up``/``lag`` describe its *output* stream."""

    states = 0  # number of history tensors this op keeps

    def init_history(self) -> list[torch.Tensor]:
        return []

    def step(self, x: torch.Tensor, history: list[torch.Tensor], ctx: _StepContext):
        raise NotImplementedError


class _Snake(_Op):
    def __init__(self, snake: nn.Module, kernel: Snake) -> None:
        self.alpha = snake.alpha.detach().reshape(-1).contiguous()  # (C,): per channel of a row
        self.inv_alpha = (self.alpha + 1e-9).reciprocal()
        self.kernel = kernel

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return self.kernel(x, self.alpha, self.inv_alpha, out=out)

    def step(self, x, history, ctx):
        return self(x), []


class _Pointwise(_Op):
    """1x1 conv: one (B*T, C_in) x (C_in, C_out) GEMM."""

    def __init__(self, conv: nn.Conv1d) -> None:
        self.weight_t = conv.weight.detach()[:, :, 0].t().contiguous()  # (C_in, C_out)
        self.bias = None if conv.bias is None else conv.bias.detach()

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        rows = x.reshape(b * t, c)
        y = rows @ self.weight_t if self.bias is None else torch.addmm(self.bias, rows, self.weight_t)
        return y.view(b, t, -1)

    def step(self, x, history, ctx):
        return self.apply(x), []


class _Tanh(_Op):
    def step(self, x, history, ctx):
        return torch.tanh_(x), []


class _Depthwise:
    """'Valid' depthwise conv along time of a time-major (B, span + n, C) buffer -> (B, n, C).
    Short chunks: one multiply-add per tap. Long ones: oneDNN's channels-last depthwise conv,
    which reads the time-major buffer as it is and writes time-major output."""

    TAPS_MAX = 64

    def __init__(self, conv: nn.Conv1d) -> None:
        weight = conv.weight.detach()  # (C, 1, k)
        self.taps = weight[:, 0, :].t().contiguous()  # (k, C)
        self.weight_cl = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        self.bias = conv.bias.detach()
        self.dilation, self.channels = conv.dilation[0], conv.in_channels
        self.span = (conv.kernel_size[0] - 1) * self.dilation

    def __call__(self, buf: torch.Tensor) -> torch.Tensor:
        n, d = buf.shape[1] - self.span, self.dilation
        if n <= self.TAPS_MAX:
            y = torch.addcmul(self.bias, buf[:, :n], self.taps[0])
            for k in range(1, len(self.taps)):
                y.addcmul_(buf[:, k * d:k * d + n], self.taps[k])
            return y
        y = F.conv2d(buf.transpose(1, 2).unsqueeze(2), self.weight_cl, self.bias, dilation=(1, d),
                     groups=self.channels)
        return y.squeeze(2).transpose(1, 2).contiguous()  # already time-major: no copy


class _TemporalConv(_Op):
    """Symmetric-padded conv (kernel k, dilation d): state = last (k-1)d inputs, lag += pad."""

    states = 1

    def __init__(self, conv: nn.Conv1d, up: int, lag_in: int) -> None:
        assert conv.padding[0] * 2 == (conv.kernel_size[0] - 1) * conv.dilation[0], "expects 'same' padding"
        self.up, self.lag_in, self.lag = up, lag_in, lag_in + conv.padding[0]
        self.channels = conv.in_channels
        self.kernel, self.dilation = conv.kernel_size[0], conv.dilation[0]
        self.span = (self.kernel - 1) * self.dilation
        self.bias, self.out_channels = conv.bias.detach(), conv.out_channels
        self.depthwise = self.taps = None
        if conv.groups == conv.in_channels == conv.out_channels:
            self.depthwise = _Depthwise(conv)
        else:  # dense: one GEMM gives every tap's contribution, the taps' rows are then summed
            assert conv.groups == 1
            weight = conv.weight.detach()  # (C_out, C_in, k)
            self.taps = weight.permute(1, 2, 0).reshape(conv.in_channels, -1).contiguous()  # (C_in, k*C_out)

    def init_history(self):
        return [torch.zeros(1, self.span, self.channels, dtype=self.bias.dtype, device=self.bias.device)]

    def step(self, x, history, ctx):
        buf = torch.cat([history[0], ctx.zero_invalid(x, self.up, self.lag_in)], dim=1)
        if self.depthwise is not None:
            y = self.depthwise(buf)
        else:
            b, length, c = buf.shape
            n, d = length - self.span, self.dilation
            per_tap = (buf.view(b * length, c) @ self.taps).view(b, length, self.kernel, self.out_channels)
            y = per_tap[:, :n, 0] + self.bias
            for k in range(1, self.kernel):
                y += per_tap[:, k * d:k * d + n, k]
        return y, [buf[:, buf.shape[1] - self.span:]]


class _Upsample(_Op):
    """ConvTranspose1d(k=2s, stride s, padding s/2) as a 2-tap conv with s phases per input.

    Untrimmed output block m (samples s*m .. s*m+s-1) = W[:, :, r] x[m] + W[:, :, s+r] x[m-1];
    the padding trims s/2 samples at the start, which is a lag of s/2 output samples. It runs as
    one GEMM (B*n, 2*C_in) x (2*C_in, s*C_out) whose rows are the time-major output as is.
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
        return [torch.zeros(1, 1, self.c_in, dtype=self.weight.dtype, device=self.weight.device)]

    def step(self, x, history, ctx):
        x = ctx.zero_invalid(x, self.up_in, self.lag_in)
        b, n, c = x.shape
        pairs = x.new_empty(b, n, 2 * c)  # row m = [x[m-1], x[m]]
        pairs[:, :, c:] = x
        pairs[:, :1, :c] = history[0]
        pairs[:, 1:, :c] = x[:, :-1]
        y = torch.addmm(self.bias, pairs.view(b * n, 2 * c), self.weight)  # (B*n, s*C_out)
        return y.view(b, n * self.stride, self.c_out), [x[:, n - 1:]]


class _Noise(_Op):
    """PositionalNoise: x + linear(x) * table[absolute sample position]."""

    def __init__(self, noise: PositionalNoise, up: int, lag: int) -> None:
        self.linear = _Pointwise(noise.linear)
        self.table = noise.table
        self.up, self.lag = up, lag

    def step(self, x, history, ctx):
        b, length, _ = x.shape
        firsts = [s * self.up + f for s, f in zip(ctx.starts, ctx.first_positions(self.up, self.lag))]
        pos = torch.tensor(firsts, device=x.device).view(-1, 1) + torch.arange(length, device=x.device)
        noise = self.table[pos % NOISE_TABLE_LEN].to(x.dtype).unsqueeze(2)
        return torch.addcmul(x, self.linear.apply(x), noise), []


class _Residual(_Op):
    """ResidualUnit: x + 1x1(snake(dilated depthwise conv(snake(x)))); x waits ``pad`` samples."""

    states = 2

    def __init__(self, unit: nn.Module, up: int, lag_in: int, kernel: Snake) -> None:
        snake1, conv, snake2, pointwise = unit.block
        assert conv.groups == conv.in_channels == conv.out_channels, "SNAC residual convs are depthwise"
        self.snake1, self.snake2 = _Snake(snake1, kernel), _Snake(snake2, kernel)
        self.conv = _Depthwise(conv)
        self.pointwise = _Pointwise(pointwise)
        self.pad = conv.padding[0]
        self.up, self.lag_in, self.lag = up, lag_in, lag_in + self.pad

    def init_history(self):
        span, channels = self.conv.span, self.conv.channels
        zeros = torch.zeros(1, span, channels, dtype=self.conv.bias.dtype, device=self.conv.bias.device)
        return [zeros, zeros[:, :self.pad]]

    def step(self, x, history, ctx):
        span, pad = self.conv.span, self.pad
        b, n, c = x.shape
        # snake(x) is written straight after the conv history: no concatenation copy
        buf = x.new_empty(b, span + n, c)
        buf[:, :span] = history[0]
        fresh = buf[:, span:]
        self.snake1(x, out=fresh)
        masked = ctx.zero_invalid(fresh, self.up, self.lag_in)
        if masked is not fresh:
            fresh.copy_(masked)
        h = self.conv(buf)
        y = self.pointwise.apply(self.snake2(h))
        # the residual path is x delayed by `pad` samples
        if n >= pad:
            y[:, :pad] += history[1]
            y[:, pad:] += x[:, :n - pad]
            x_history = x[:, n - pad:]
        else:
            xs = torch.cat([history[1], x], dim=1)
            y += xs[:, :n]
            x_history = xs[:, n:]
        return y, [buf[:, buf.shape[1] - span:], x_history]


class IncrementalSnac:
    """The SNAC decoder as a list of stateful ops; ``step`` decodes one chunk for many streams."""

    def __init__(self, codec: SnacCodec, *, native_snake: bool = True) -> None:
        self.codec = codec
        self.snake = Snake(native=native_snake)
        self.ops: list[_Op] = []
        up, lag = 1, 0
        for layer in codec.model.decoder.model:
            subs = layer.block if type(layer).__name__ == "DecoderBlock" else [layer]
            for sub in subs:
                op = self._make(sub, up, lag)
                up, lag = getattr(op, "up", up), getattr(op, "lag", lag)
                self.ops.append(op)
        assert up == HOP, f"decoder upsamples by {up}, expected {HOP}"
        self.lag = lag  # output samples by which a chunk's audio trails its latents
        self.drain_latents = math.ceil(lag / HOP)  # zero latents that flush the lag at the end

    def _make(self, layer: nn.Module, up: int, lag: int) -> _Op:
        name = type(layer).__name__
        if name == "Snake1d":
            return _Snake(layer, self.snake)
        if name == "Tanh":
            return _Tanh()
        if isinstance(layer, PositionalNoise):
            return _Noise(layer, up, lag)
        if name == "ResidualUnit":
            return _Residual(layer, up, lag, self.snake)
        if isinstance(layer, nn.ConvTranspose1d):
            return _Upsample(layer, up, lag)
        if isinstance(layer, nn.Conv1d):
            return _Pointwise(layer) if layer.kernel_size[0] == 1 else _TemporalConv(layer, up, lag)
        raise TypeError(f"unsupported decoder layer {name}")

    def new_state(self, start_latent: int = 0) -> StreamState:
        return StreamState(history=[h for op in self.ops for h in op.init_history()], start_latent=start_latent)

    @torch.inference_mode()
    def latents(self, frames: np.ndarray) -> torch.Tensor:
        """Frames (n, 7) -> quantized latents (1, 4n, C), time-major, in the codec's dtype."""
        device = self.codec.config.device
        codes = [torch.from_numpy(level).view(1, -1).to(device) for level in frames_to_snac_codes(frames)]
        z = self.codec.model.quantizer.from_codes(codes).to(self.codec.config.dtype)
        return z.transpose(1, 2).contiguous()

    def zero_latents(self, count: int) -> torch.Tensor:
        dim = self.ops[0].channels
        return torch.zeros(1, count, dim, dtype=self.codec.config.dtype, device=self.codec.config.device)

    @torch.inference_mode()
    def step(self, states: list[StreamState], z: torch.Tensor) -> torch.Tensor:
        """Decode latents z (B, n, C), row i continuing ``states[i]``: audio (B, n*512) float32.

        Row i's audio covers positions ``states[i].latents_in*512 - lag`` onwards (as before the
        call); states are advanced in place.
        """
        batch, latents = len(states), z.shape[1]
        ctx = _StepContext(states)
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
        return x[:, :, 0].float().cpu()


@dataclass
class _Emission:
    emitted: int = 0  # samples handed out so far (positions [0, emitted))
    early_samples: int = 0  # of which emitted with partial look-ahead
    frames: list[np.ndarray] = field(default_factory=list)


class IncrementalDecoder:
    """StreamDecoder for one stream: exact audio as soon as its full look-ahead exists.

    First audio goes out once ``first_audio_frames`` frames exist: while the exact path is still
    inside its lag, a fork of the stream's state is ended right there and drained, which is the
    offline decode of the frames so far (zero look-ahead padding) for the cost of the drain; the
    audio of all but the last ``first_audio_frames - 1`` frames is emitted early, once per stream
    (~39 dB against the offline decode of the whole utterance; everything after it is exact).
    Chunks are not frame-aligned: exact audio goes out to the last sample whose look-ahead exists.
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
        """Latents (1, n, C) to step now, or None when no frame came."""
        if self.ended:
            raise RuntimeError("push after flush")
        frames = np.asarray(frames, dtype=np.int64).reshape(-1, 7)
        self._out.frames.extend(frames)
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
        return drain if pending is None else torch.cat([pending, drain], dim=1)

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
        """Audio up to the last ``first_audio_frames - 1`` frames, as if the stream ended here."""
        out = self._out
        until = (len(out.frames) - self.first_audio_frames + 1) * FRAME_SAMPLES
        probe = self.state.fork(end_latent=self._stepped_frames * LATENTS_PER_FRAME)
        first = self.next_position()
        drain = self.snac.zero_latents(math.ceil((until - first) / HOP))
        audio = self.snac.step([probe], drain)[0].numpy()[out.emitted - first:until - first]
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
