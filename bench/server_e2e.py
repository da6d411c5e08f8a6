"""End-to-end through the TTS server: K concurrent WebSocket clients on the tiny model.

    python bench/server_e2e.py [--clients 1,2,4] [--frames 40] [--buffer-ms 200] [--rounds 3]

Starts `python -m agent serve` (tiny model, random SNAC) as its own process, then for each K runs K
clients at once, each speaking one segment, ``--rounds`` times (percentiles pool every stream). Per stream: TTFB (request -> first PCM byte), real-time
factor, and underruns: a player that starts `--buffer-ms` after the first byte and plays 24 kHz
s16le in real time counts every 20 ms block not yet received at its play-out time. CPU seconds per
audio second covers the whole server (engine core process included); decode ms a frame is the
decode workers' wall time per frame (server /metrics) while vLLM generates on the same cores. The
same clients run against a server with the window decoder (`--decoder window`) as the baseline, and
against ours with 2 decode threads, which oversubscribes the cores vLLM uses. Prints one JSON object.
The model is random: this measures speed, not speech.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.models import ensure_tiny_model  # noqa: E402
from tts_plugin.protocol import SAMPLE_RATE, SAMPLE_WIDTH, WS_PATH  # noqa: E402

BYTES_PER_S = SAMPLE_RATE * SAMPLE_WIDTH
BLOCK_BYTES = 480 * 2  # 20 ms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "agent", "serve", "--port", str(port), "--model", str(ensure_tiny_model()),
           "--snac-model", "random", "--kv-cache-gib", "0.5", "--max-model-len", "2048", "--top-p", "1.0",
           *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json().get("status") == "ok":
                return proc
        except (httpx.HTTPError, ValueError):
            pass
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not become healthy")


def tree_cpu_s(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def underruns(arrivals: list[tuple[float, int]], first_at: float, buffer_s: float) -> int:
    """20 ms blocks that arrived after their play-out time, for a player started at first + buffer."""
    start, received, count, block = first_at + buffer_s, 0, 0, 0
    for at, size in arrivals:
        received += size
        while (block + 1) * BLOCK_BYTES <= received:
            if at > start + block * BLOCK_BYTES / BYTES_PER_S:
                count += 1
            block += 1
    return count


async def one_client(url: str, index: int, frames: int, buffer_s: float) -> dict:
    async with websockets.connect(url, max_size=None) as ws:
        sent = time.perf_counter()
        await ws.send(json.dumps({"type": "speak", "segment_id": f"b{index}", "seed": index,
                                  "text": "Benchmark sentence for the server.", "max_tokens": 7 * frames}))
        arrivals: list[tuple[float, int]] = []
        async for message in ws:
            if isinstance(message, bytes):
                arrivals.append((time.perf_counter(), len(message)))
            elif json.loads(message).get("type") == "end":
                break
        done = time.perf_counter()
    audio_bytes = sum(size for _, size in arrivals)
    first = arrivals[0][0]
    return {"ttfb_ms": 1000 * (first - sent), "audio_s": audio_bytes / BYTES_PER_S,
            "rtf": (done - sent) / (audio_bytes / BYTES_PER_S),
            "underruns": underruns(arrivals, first, buffer_s)}


def server_counters(base_url: str) -> dict[str, float]:
    """Decode worker time and frames so far, from the server's Prometheus /metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    wanted = {"orpheus_decode_busy_seconds": "decode_s", "orpheus_frames_total": "frames"}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[wanted[name]] = float(value)
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


async def run_server(args, server_flags: list[str]) -> list[dict]:
    port = free_port()
    extra = [*server_flags, *(args.server_args.split() if args.server_args else [])]
    proc = start_server(port, extra)
    server = psutil.Process(proc.pid)
    url = f"ws://127.0.0.1:{port}{WS_PATH}"
    base_url = f"http://127.0.0.1:{port}"
    runs = []
    try:
        await one_client(url, 0, 8, 0.2)  # warm-up
        for k in [int(c) for c in args.clients.split(",")]:
            cpu_before, counters_before = tree_cpu_s(server), server_counters(base_url)
            results = []
            for round_ in range(args.rounds):
                results += await asyncio.gather(*(one_client(url, round_ * k + i, args.frames, args.buffer_ms / 1000)
                                                  for i in range(k)))
            cpu = tree_cpu_s(server) - cpu_before
            counters = server_counters(base_url)
            frames = counters["frames"] - counters_before["frames"]
            decode_s = counters["decode_s"] - counters_before["decode_s"]
            ttfb = [r["ttfb_ms"] for r in results]
            audio = sum(r["audio_s"] for r in results)
            runs.append({
                "clients": k, "streams": len(results), "ttfb_ms_p50": pct(ttfb, 50), "ttfb_ms_p95": pct(ttfb, 95),
                "rtf_max": max(r["rtf"] for r in results), "rtf_mean": statistics.mean(r["rtf"] for r in results),
                "underruns_total": sum(r["underruns"] for r in results),
                "streams_with_underruns": sum(1 for r in results if r["underruns"]),
                "server_cpu_s_per_audio_s": cpu / audio,
                # decode worker wall time a frame, vLLM generating on the same cores meanwhile
                "decode_ms_per_frame": 1000 * decode_s / frames if frames else None,
            })
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return runs


VARIANTS = {  # name -> `agent serve` flags
    "incremental": ["--decoder", "incremental"],
    "window": ["--decoder", "window"],
    # the same decoder with 2 torch threads: oversubscribes the cores vLLM uses (the collapse to avoid)
    "incremental_2_threads": ["--decoder", "incremental", "--decode-threads", "2"],
}


async def run(args) -> dict:
    """Ours (incremental + batching) against the window decoder, same server, same run."""
    report = {"frames_per_stream": args.frames, "buffer_ms": args.buffer_ms, "cores": os.cpu_count()}
    for name in args.variants.split(","):
        report[name] = await run_server(args, VARIANTS[name])
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--buffer-ms", type=float, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="runs of K clients per K")
    parser.add_argument("--variants", default="incremental,window,incremental_2_threads",
                        help=f"servers to compare, from {', '.join(VARIANTS)}")
    parser.add_argument("--server-args", default="", help="extra flags for `agent serve`")
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
