"""What the plugin needs from a place that turns text into speech.

Two implementations: the TTS server over its WebSocket (``remote``) and the engine in this process
(``local``). Both take text as it arrives and yield 24 kHz mono s16le PCM; closing the generator
stops generation at the source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass

from livekit.agents import APIConnectOptions

from ..sampling import SamplingOptions


@dataclass(frozen=True)
class SpeakOptions:
    """Per-stream options. The TTS snapshots them for every stream it creates (both parts are frozen)."""

    voice: str
    sampling_options: SamplingOptions = SamplingOptions()  # unset knobs: the engine's defaults

    def sampling(self) -> dict:
        """The knobs this stream sets, as request fields."""
        return self.sampling_options.given()


class SpeechBackend(ABC):
    @property
    @abstractmethod
    def model(self) -> str: ...

    @abstractmethod
    def speak(
        self,
        text: AsyncIterable[str],
        opts: SpeakOptions,
        *,
        segment_id: str,
        conn_options: APIConnectOptions,
        on_text_sent: Callable[[], None],
    ) -> AsyncIterator[bytes]:
        """Speak the text (LLM tokens; the iterable ending ends the utterance) sentence by
        sentence as sentences complete. ``on_text_sent`` runs when the first sentence goes to the
        engine (TTFB starts there). Raises the framework's API errors."""

    def prewarm(self) -> None:
        """Get ready for the first request without waiting for it (connect, start the engine)."""

    async def aclose(self) -> None: ...
