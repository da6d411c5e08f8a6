"""Async stage: frame batches -> float32 PCM, decoding off the event loop.

While one batch decodes, vLLM keeps generating; its DELTA outputs merge while we are busy, so a
slow decode naturally takes bigger batches instead of falling further behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch


class StreamDecoder(Protocol):
    def push(self, frames: np.ndarray) -> np.ndarray: ...
    def flush(self) -> np.ndarray: ...


class DecodeExecutor:
    """One worker thread with its own torch thread count: decode calls never block the loop, and
    never oversubscribe the cores that vLLM also uses."""

    def __init__(self, threads: int = 1, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snac-decode",
                                        initializer=torch.set_num_threads, initargs=(threads,))
        self.busy_s = 0.0  # wall time spent decoding (one worker: also its CPU time bound)

    async def run(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, fn, args)

    def _timed(self, fn: Callable, args: tuple):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.busy_s += time.perf_counter() - start

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def pcm_from_frames(frame_batches: AsyncIterator[np.ndarray], decoder: StreamDecoder,
                          executor: DecodeExecutor) -> AsyncIterator[np.ndarray]:
    """Decoders with ``apush``/``aflush`` (the cross-stream batcher) decode on their own worker;
    others run on ``executor``. ``close()``, when the decoder has it, runs however we exit."""
    push = getattr(decoder, "apush", None) or (lambda frames: executor.run(decoder.push, frames))
    flush = getattr(decoder, "aflush", None) or (lambda: executor.run(decoder.flush))
    try:
        async for frames in frame_batches:
            audio = await push(frames)
            if audio.size:
                yield audio
        tail = await flush()
        if tail.size:
            yield tail
    finally:
        close = getattr(decoder, "close", None)
        if close is not None:
            close()


def float_to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
