"""Where speech is made: the TTS server (``ServerBackend``) or the engine in this process (``EngineBackend``)."""

from .base import SpeakOptions, SpeechBackend

__all__ = ["SpeakOptions", "SpeechBackend"]
