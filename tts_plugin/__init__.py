"""orpheus-rtc: streaming Orpheus (SNAC) speech for LiveKit voice agents.

    from tts_plugin import OrpheusTTS
    session = AgentSession(tts=OrpheusTTS(voice="tara"), ...)

The LiveKit plugin names load on first use, so the engine and the TTS server can import
``tts_plugin.engine`` / ``tts_plugin.settings`` without loading livekit-agents. Loading them
registers the plugin with livekit-agents (on the main thread, as the framework requires).
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .models import TTSModels, TTSTags, TTSVoices
    from .tts import ChunkedStream, OrpheusTTS, SynthesizeStream

_EXPORTS = {
    "OrpheusTTS": ".tts",
    "ChunkedStream": ".tts",
    "SynthesizeStream": ".tts",
    "TTSVoices": ".models",
    "TTSModels": ".models",
    "TTSTags": ".models",
}

__all__ = ["OrpheusTTS", "ChunkedStream", "SynthesizeStream", "TTSVoices", "TTSModels", "TTSTags", "__version__"]

_registered = False


def _register_plugin() -> None:
    global _registered
    if _registered or threading.current_thread() is not threading.main_thread():
        return
    from livekit.agents import Plugin

    from .log import logger

    class OrpheusPlugin(Plugin):
        def __init__(self) -> None:
            super().__init__(__name__, __version__, __package__, logger)

    Plugin.register_plugin(OrpheusPlugin())
    _registered = True


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    _register_plugin()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
