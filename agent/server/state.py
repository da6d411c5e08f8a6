"""What the routes share: settings, the engine (None while loading), metrics, the WebRTC listeners."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tts_plugin.engine.engine import OrpheusEngine

from .config import ServerSettings
from .metrics import ServerMetrics

if TYPE_CHECKING:
    from .rtc import RtcListeners


@dataclass
class ServerState:
    settings: ServerSettings
    engine: OrpheusEngine | None = None
    rtc: "RtcListeners | None" = None
    demo: bool = False  # the random-weight demo model: its audio is noise
    metrics: ServerMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ServerMetrics(lambda: self.engine)

    @property
    def ready(self) -> bool:
        return self.engine is not None
