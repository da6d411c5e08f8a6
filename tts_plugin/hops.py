"""Wall-clock marks at each hop of an utterance, for ``bench/latency.py``.

Off unless ``enable()`` is called (the worker does when ``ORPHEUS_AGENT_TRACE_HOPS`` is set). A mark
is one log line ``hop <name> <key> <unix time>``; every process runs on one machine in the bench,
so marks of the listener, the worker's job process and the server compare directly.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("orpheus.hops")
_enabled = False
_awaiting_capture: str | None = None
_marked: set[tuple[str, str]] = set()  # the stream whose first frame the room's audio source has not taken yet


def enable() -> None:
    """Start logging marks, and mark the first frame the room's audio source captures after each
    stream's first push (livekit-agents owns that call, so it is wrapped here)."""
    global _enabled
    if _enabled:
        return
    from livekit import rtc

    original = rtc.AudioSource.capture_frame

    async def capture_frame(self, frame):
        global _awaiting_capture
        if _awaiting_capture is not None:
            key, _awaiting_capture = _awaiting_capture, None
            mark("first_capture", key)
        return await original(self, frame)

    rtc.AudioSource.capture_frame = capture_frame
    _enabled = True


def mark(name: str, key: str = "-") -> None:
    global _awaiting_capture
    if not _enabled:
        return
    log.info("hop %s %s %.6f", name, key, time.time())
    if name == "first_push":
        _awaiting_capture = key


def mark_once(name: str, key: str) -> None:
    """``mark`` the first time this (name, key) comes by; cheap when tracing is off."""
    if _enabled and (name, key) not in _marked:
        _marked.add((name, key))
        mark(name, key)
