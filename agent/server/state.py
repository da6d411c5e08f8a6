"""What the routes share: settings, the engine (None while loading), metrics, admission, the WebRTC
listeners, the connections in progress, and whether the server still takes new streams."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tts_plugin.engine.engine import OrpheusEngine

from .admission import Admission
from .config import ServerSettings
from .metrics import ServerMetrics

if TYPE_CHECKING:
    from .lifecycle import Connection
    from .rtc import RtcListeners
    from .ws_api import SpeechSocket


def _cannot_exit(code: int) -> None:
    logging.getLogger("orpheus.server").error("exit %d requested, but no server runs this app", code)


@dataclass
class ServerState:
    settings: ServerSettings
    engine: OrpheusEngine | None = None
    rtc: RtcListeners | None = None
    demo: bool = False  # the random-weight demo model: its audio is noise
    metrics: ServerMetrics = field(init=False)
    admission: Admission = field(init=False)
    connections: set[Connection] = field(default_factory=set)
    sockets: set[SpeechSocket] = field(default_factory=set)
    draining: bool = False
    failure: str | None = None  # set when the engine died: the server is on its way out
    exit_server: Callable[[int], None] = _cannot_exit  # set by main: stop serving, exit with this code

    def __post_init__(self) -> None:
        self.metrics = ServerMetrics(lambda: self.engine)
        self.admission = Admission(self.settings.stream_limit or self.settings.max_streams,
                                   self.settings.queue_timeout_s, self.metrics)

    @property
    def engine_failed(self) -> bool:
        return self.failure is not None or (self.engine is not None and self.engine.failed)

    @property
    def status(self) -> str:
        if self.engine_failed:
            return "engine_failed"
        if self.draining:
            return "draining"
        if self.engine is None:
            return "loading"
        return "vllm_unreachable" if self.engine.unreachable else "ok"

    @property
    def ready(self) -> bool:
        """New speech streams may start."""
        return self.status == "ok"

    def refusal(self) -> tuple[str, str] | None:
        """(code, message) saying why no new stream may start now; None when one may."""
        status = self.status
        if status == "engine_failed":
            return "engine_failed", "the speech engine has stopped; the server is restarting, retry shortly"
        if status == "draining":
            return "draining", "the server is shutting down and takes no new streams; retry shortly"
        if status == "loading":
            return "not_ready", "model is still loading"
        if status == "vllm_unreachable":
            return "vllm_unreachable", "the language model server (vLLM) is unreachable; retry shortly"
        return None
