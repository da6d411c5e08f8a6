"""What the routes share: settings, the engine (None outside the app's lifespan), metrics, admission, the WebRTC
listeners, the connections in progress, and whether the server still takes new streams."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tts_plugin.engine.engine import OrpheusEngine
from tts_plugin.protocol import ErrorCode

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
            return ErrorCode.ENGINE_FAILED
        if self.draining:
            return ErrorCode.DRAINING
        # The engine loads in the lifespan, before uvicorn accepts connections, and is gone only
        # after it stops taking them: "stopped" is a guard, not a state clients wait out.
        if self.engine is None:
            return "stopped"
        return ErrorCode.VLLM_UNREACHABLE if self.engine.unreachable else "ok"

    @property
    def ready(self) -> bool:
        """New speech streams may start."""
        return self.status == "ok"

    def refusal(self) -> tuple[ErrorCode, str] | None:
        """(code, message) saying why no new stream may start now; None when one may."""
        status = self.status
        if status == ErrorCode.ENGINE_FAILED:
            return ErrorCode.ENGINE_FAILED, "the speech engine has stopped; the server is restarting, retry shortly"
        if status == ErrorCode.DRAINING:
            return ErrorCode.DRAINING, "the server is shutting down and takes no new streams; retry shortly"
        if status == "stopped":
            return ErrorCode.NOT_READY, "the speech engine is not running"
        if status == ErrorCode.VLLM_UNREACHABLE:
            return ErrorCode.VLLM_UNREACHABLE, "the language model server (vLLM) is unreachable; retry shortly"
        return None
