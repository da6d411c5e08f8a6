"""Admission control: at most ``limit`` speech streams at once, every transport together.

A stream takes a slot before it starts (before the HTTP response, before WebSocket ``start``);
when all are taken it waits in line for at most ``wait_s``, then is refused with ``Busy`` (HTTP 429,
WebSocket/data channel ``error`` code ``busy``). Queued streams never reach vLLM, so the engine's
``running_requests`` counts running ones only.
"""

from __future__ import annotations

import asyncio
import math

from .metrics import ServerMetrics


class Busy(Exception):
    """Every slot stayed taken for the whole wait."""

    def __init__(self, limit: int, wait_s: float) -> None:
        super().__init__(f"the server is busy: {limit} speech streams are running and none ended within "
                         f"{wait_s:g} s; retry later")
        self.retry_after_s = max(1, math.ceil(wait_s))


class Slot:
    """One admitted stream; ``release()`` is idempotent."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission._release()


class Admission:
    def __init__(self, limit: int, wait_s: float, metrics: ServerMetrics) -> None:
        self.limit, self.wait_s, self.metrics = limit, wait_s, metrics
        self._free = asyncio.Semaphore(limit)
        self.in_use = 0
        self.queued = 0
        metrics.stream_limit.set(limit)
        metrics.queue_depth.set_function(lambda: self.queued)
        metrics.streams_admitted_now.set_function(lambda: self.in_use)

    async def acquire(self, transport: str) -> Slot:
        """A slot, after waiting at most ``wait_s`` in line; raises ``Busy``."""
        self.queued += 1
        try:
            async with asyncio.timeout(self.wait_s):
                await self._free.acquire()
        except TimeoutError:
            self.metrics.refused.labels(transport).inc()
            raise Busy(self.limit, self.wait_s) from None
        finally:
            self.queued -= 1
        self.in_use += 1
        self.metrics.admitted.labels(transport).inc()
        return Slot(self)

    def _release(self) -> None:
        self.in_use -= 1
        self._free.release()
