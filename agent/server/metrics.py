"""Prometheus metrics for the server, and ``observe()``, which wraps every speech stream with them.

A registry per app (not the global one) so two apps in one process never collide.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tts_plugin.protocol import ErrorCode

if TYPE_CHECKING:  # annotations only: the engine module imports vLLM
    from tts_plugin.engine.engine import OrpheusEngine, SpeechStream

TTFB_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, engine: Callable[[], OrpheusEngine | None]) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("orpheus_speech_requests", "Speech streams started", ["transport"], registry=r)
        self.ttfb = Histogram("orpheus_ttfb_seconds", "Request to first audio", ["transport"],
                              buckets=TTFB_BUCKETS, registry=r)
        self.audio_seconds = Counter("orpheus_audio_seconds", "Seconds of audio generated", ["transport"],
                                     registry=r)
        self.tokens = Counter("orpheus_tokens", "Audio tokens generated", registry=r)
        self.frames = Counter("orpheus_frames", "Audio frames (7 tokens) generated", registry=r)
        self.tokens_per_second = Histogram("orpheus_stream_tokens_per_second", "Token rate of finished streams",
                                           buckets=(10, 25, 50, 82, 100, 150, 250, 500, 1000, 2500), registry=r)
        self.rtf = Histogram("orpheus_stream_rtf", "Wall time per second of audio, finished streams",
                             buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0), registry=r)
        self.errors = Counter("orpheus_errors", "Rejected requests and failed streams", ["transport", "code"],
                              registry=r)
        self.cancellations = Counter("orpheus_cancellations", "Streams stopped early (cancel or disconnect)",
                                     ["transport"], registry=r)
        self.rtc_listeners = Gauge("orpheus_rtc_listeners", "Connected WebRTC listeners", registry=r)
        # Admission control (admission.py)
        self.stream_limit = Gauge("orpheus_stream_limit", "Speech streams admitted at once", registry=r)
        self.streams_admitted_now = Gauge("orpheus_streams_in_progress", "Admitted speech streams holding a slot",
                                          registry=r)
        self.queue_depth = Gauge("orpheus_queue_depth", "Speech streams waiting for a slot", registry=r)
        self.admitted = Counter("orpheus_streams_admitted", "Speech streams given a slot", ["transport"], registry=r)
        self.refused = Counter("orpheus_streams_refused", "Speech streams refused busy after the wait",
                               ["transport"], registry=r)
        active = Gauge("orpheus_active_streams", "Speech streams in progress", registry=r)
        active.set_function(lambda: engine().active_streams if engine() else 0)
        running = Gauge("orpheus_running_requests", "vLLM requests in progress", registry=r)
        running.set_function(lambda: engine().running_requests if engine() else 0)
        decode = Gauge("orpheus_decode_busy_seconds", "Wall time SNAC decode workers spent decoding", registry=r)
        decode.set_function(lambda: engine().decode_busy_s if engine() else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def error(self, transport: str, code: ErrorCode) -> None:
        self.errors.labels(transport, code).inc()

    async def observe(self, stream: SpeechStream, transport: str) -> AsyncIterator[bytes]:
        """Yield the stream's chunks; record TTFB, audio, tokens, cancellation or error; always
        close the stream (that aborts the vLLM request when the consumer stops early)."""
        self.requests.labels(transport).inc()
        first = True
        finished = cancelled = False
        try:
            async for chunk in stream:
                if first and stream.metrics.ttfb_s is not None:
                    self.ttfb.labels(transport).observe(stream.metrics.ttfb_s)
                    first = False
                yield chunk
            finished = True
        except (asyncio.CancelledError, GeneratorExit):
            cancelled = True
            raise
        except Exception:
            self.error(transport, ErrorCode.ENGINE_ERROR)
            raise
        finally:
            await stream.aclose()
            m = stream.metrics
            if cancelled:
                self.cancellations.labels(transport).inc()
            self.audio_seconds.labels(transport).inc(m.audio_s)
            self.tokens.inc(m.tokens)
            self.frames.inc(m.frames)
            if finished and m.tokens and m.elapsed_s > 0:
                self.tokens_per_second.observe(m.tokens / m.elapsed_s)
            if finished and m.rtf is not None:
                self.rtf.observe(m.rtf)
