"""What the plugin needs from a place that turns text into speech.

Two implementations: the TTS server over its WebSocket (``remote``) and the engine in this process
(``local``). Both take text as it arrives and yield 24 kHz mono s16le PCM; closing the generator
stops generation at the source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import asdict, dataclass

from livekit.agents import APIConnectOptions


@dataclass
class SpeakOptions:
    """Per-stream options. The TTS snapshots a copy for every stream it creates."""

    voice: str
    # Sampling; None = the engine's defaults (settings of the server or of the in-process engine).
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    max_tokens: int | None = None
    seed: int | None = None

    def sampling(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "voice" and v is not None}


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
