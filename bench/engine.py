"""End-to-end engine benchmark on the tiny model: the pipeline against raw vLLM in the same run.

    python bench/engine.py [--streams 1,4] [--frames 60]

Prints one JSON object. `raw` is `AsyncLLM.generate` with the same prompt ids and sampling (slot
constraint included) and nothing downstream; `pipeline` is `engine.synthesize` (frames, SNAC decode,
PCM). Both with N concurrent streams. The model is random: this measures speed, not speech.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from contextlib import aclosing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# vLLM logs to stdout by default: keep stdout for the JSON report.
os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")

from tests.fixtures.engine import tiny_settings  # noqa: E402
from tts_plugin.engine.engine import OrpheusEngine  # noqa: E402
from tts_plugin.engine.generator import SamplingOptions  # noqa: E402

TEXT = "Benchmark sentence for the streaming pipeline."


async def raw_run(engine: OrpheusEngine, streams: int, options: SamplingOptions) -> dict:
    prompt = engine.prompts.build(TEXT, engine.default_voice)

    async def one(i: int) -> tuple[int, float]:
        start, count, first = time.perf_counter(), 0, None
        async with aclosing(engine.generator.generate(prompt, options, f"raw-{i}-{time.time_ns()}")) as gen:
            async for batch in gen:
                first = first or time.perf_counter() - start
                count += len(batch)
        return count, first

    start = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(streams)))
    elapsed = time.perf_counter() - start
    tokens = sum(c for c, _ in results)
    return {"tokens_per_s": tokens / elapsed, "first_token_ms": 1000 * max(f for _, f in results)}


async def pipeline_run(engine: OrpheusEngine, streams: int, options: SamplingOptions) -> dict:
    busy_before = engine.decode_pool.busy_s
    start = time.perf_counter()
    cpu_before = time.process_time()

    async def one() -> dict:
        stream = engine.synthesize(TEXT, options=options)
        async with aclosing(stream):
            async for _ in stream:
                pass
        return stream.metrics

    metrics = await asyncio.gather(*(one() for _ in range(streams)))
    elapsed = time.perf_counter() - start
    frames = sum(m.frames for m in metrics)
    audio_s = sum(m.audio_s for m in metrics)
    return {
        "tokens_per_s": 7 * frames / elapsed,
        "ttfb_ms_max": 1000 * max(m.ttfb_s for m in metrics),
        "first_audio_tokens": max(m.tokens_at_first_audio for m in metrics),
        "first_audio_ms_after_first_token": 1000 * max(m.first_audio_after_token_s for m in metrics),
        "decode_ms_per_frame": 1000 * (engine.decode_pool.busy_s - busy_before) / frames,
        "rtf_per_stream": max(m.rtf for m in metrics),
        "audio_s_per_wall_s": audio_s / elapsed,
        "main_process_cpu_s_per_audio_s": (time.process_time() - cpu_before) / audio_s,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", default="1,4")
    parser.add_argument("--frames", type=int, default=60, help="frames generated per stream")
    parser.add_argument("--top-p", type=float, default=1.0)
    args = parser.parse_args()
    settings = tiny_settings(top_p=args.top_p)
    engine = await OrpheusEngine.start(settings)
    await engine.warmup()
    options = SamplingOptions(max_tokens=7 * args.frames, seed=1).resolved(settings)
    report = {"model": "tiny random (hidden 64, 2 layers)", "frames_per_stream": args.frames,
              "top_p": args.top_p, "cores": os.cpu_count(), "runs": []}
    try:
        for streams in [int(s) for s in args.streams.split(",")]:
            raw = await raw_run(engine, streams, options)
            pipe = await pipeline_run(engine, streams, options)
            report["runs"].append({"streams": streams, "raw": raw, "pipeline": pipe,
                                   "pipeline_vs_raw_tokens_per_s": pipe["tokens_per_s"] / raw["tokens_per_s"]})
    finally:
        await engine.aclose()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
