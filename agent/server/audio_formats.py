"""Streaming encoders: s16le 24 kHz mono PCM chunks in, bytes of the response format out.

Each encoder is fed chunk by chunk and returns whatever encoded bytes are ready, so HTTP responses
stream as audio is generated. Compressed formats are muxed by PyAV (libopus in Ogg, LAME MP3, FLAC,
AAC in ADTS); WAV is the stdlib ``wave`` header (with the "unknown length" size) followed by PCM.
FLAC alone is buffered: its header must carry the total length (libsndfile refuses a FLAC whose
STREAMINFO says 0 samples), which the muxer writes back only into a seekable file at the end.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from tts_plugin.protocol import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH


class PcmEncoder:
    def feed(self, pcm: bytes) -> bytes:
        return pcm

    def finish(self) -> bytes:
        return b""


class WavEncoder:
    """WAV header first, sized 'as large as possible' because the length is not known yet
    (what streaming WAV servers do; players read to the end of the stream)."""

    _UNKNOWN_FRAMES = (0xFFFFFFFF - 36) // SAMPLE_WIDTH

    def __init__(self) -> None:
        self._header_sent = False

    def feed(self, pcm: bytes) -> bytes:
        if self._header_sent:
            return pcm
        self._header_sent = True
        return self.header() + pcm

    def finish(self) -> bytes:
        return b"" if self._header_sent else self.header()

    @classmethod
    def header(cls) -> bytes:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(CHANNELS)
            w.setsampwidth(SAMPLE_WIDTH)
            w.setframerate(SAMPLE_RATE)
            w.setnframes(cls._UNKNOWN_FRAMES)
            w.writeframesraw(b"")  # writes the header with the declared size
            header = buf.getvalue()
            # wave.close() would patch the sizes to 0 frames: stop it from touching our copy.
        return header[:44]


class _Sink(io.RawIOBase):
    """Writable file object PyAV muxes into; ``take()`` drains what was written so far."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self._chunks = b"".join(self._chunks), []
        return out


@dataclass(frozen=True)
class ContainerSpec:
    container: str
    codec: str
    bit_rate: int | None
    options: dict
    buffered: bool = False  # mux into a seekable buffer, all bytes at finish()


class ContainerEncoder:
    """PCM -> a PyAV codec muxed into a streamable container, flushed page by page."""

    def __init__(self, spec: ContainerSpec) -> None:
        self._sink = _Sink()
        self._buffer = io.BytesIO() if spec.buffered else None
        target = self._buffer if self._buffer is not None else self._sink
        self._container = av.open(target, mode="w", format=spec.container, options=spec.options)
        self._stream = self._container.add_stream(spec.codec, rate=SAMPLE_RATE, layout="mono")
        if spec.bit_rate:
            self._stream.bit_rate = spec.bit_rate
        ctx = self._stream.codec_context
        self._frame_size = ctx.frame_size or 1024  # fixed by the codec (opus 20 ms, mp3 1152, ...)
        self._format = ctx.format.name
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0
        self._closed = False

    def feed(self, pcm: bytes) -> bytes:
        self._pending = np.concatenate([self._pending, np.frombuffer(pcm, dtype="<i2")])
        n_full = len(self._pending) // self._frame_size * self._frame_size
        if n_full:
            self._encode(self._pending[:n_full])
            self._pending = self._pending[n_full:]
        return self._sink.take()

    def finish(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        if len(self._pending):
            tail = np.zeros(self._frame_size, dtype=np.int16)  # pad the last frame with silence
            tail[: len(self._pending)] = self._pending
            self._encode(tail)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._buffer.getvalue() if self._buffer is not None else self._sink.take()

    def close(self) -> None:
        """Release the codec when the response is abandoned mid-stream."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - already tearing down
                pass

    def _encode(self, samples: np.ndarray) -> None:
        for start in range(0, len(samples), self._frame_size):
            block = samples[start:start + self._frame_size]
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.time_base = Fraction(1, SAMPLE_RATE)
            frame.pts = self._pts
            self._pts += len(block)
            if self._format != "s16":  # mp3/aac/flac encoders want planar float or s32
                frame = self._resampler().resample(frame)
            else:
                frame = [frame]
            for f in frame:
                for packet in self._stream.encode(f):
                    self._container.mux(packet)

    def _resampler(self):
        if not hasattr(self, "_resample"):
            self._resample = av.AudioResampler(format=self._format, layout="mono", rate=SAMPLE_RATE)
        return self._resample


# Ogg pages of 20 ms so each Opus packet leaves at once instead of after a 1 s page.
_SPECS: dict[str, ContainerSpec] = {
    "opus": ContainerSpec("ogg", "libopus", 32000, {"page_duration": "20000"}),
    "mp3": ContainerSpec("mp3", "libmp3lame", 64000, {}),
    "flac": ContainerSpec("flac", "flac", None, {}, buffered=True),
    "aac": ContainerSpec("adts", "aac", 64000, {}),
}

MEDIA_TYPES = {
    "pcm": "audio/pcm",
    "wav": "audio/wav",
    "opus": "audio/ogg",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}

RESPONSE_FORMATS = tuple(MEDIA_TYPES)


def make_encoder(response_format: str):
    if response_format == "pcm":
        return PcmEncoder()
    if response_format == "wav":
        return WavEncoder()
    if response_format in _SPECS:
        return ContainerEncoder(_SPECS[response_format])
    raise ValueError(f"unsupported response_format {response_format!r}; use one of {', '.join(RESPONSE_FORMATS)}")
