"""Streaming SNAC decoder benchmark: ours (incremental + cross-stream batcher) vs the baseline.

    python bench/decoder.py            # prints one JSON object
    python bench/decoder.py --quick    # tiny sizes (smoke test)

Everything runs on one model object (SNAC 24 kHz config, seeded random weights, weight norm
folded, positional noise), same dtype and torch threads; the baseline is the common public
4-frame window decoder (bench/baseline_decoder.py). Compute is process CPU time, so other
load on the machine inflates both sides alike; ratios come from interleaved rounds of one run.

Real time: N streams, each fed one frame every 7/82.03 s (a paced token source at 82.03 tok/s,
streams starting at random times within 0.5 s), decoded concurrently; a stream is real time when every 20 ms of its
audio is out before its play-out time, play-out starting ``--startup-buffer-ms`` after its first
audio. ``realtime_streams`` is the largest N (searched) whose streams all stay real time in each
of ``--realtime-trials`` trials (a single trial flips by one stream from run to run), with
``--realtime-workers`` x ``--realtime-threads`` on each side (default 1 x 1, the engine's default);
``*_all_cores`` repeats the search with one worker of every core's threads on each side, where
the baseline can sustain a stream at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline_decoder import BaselineWindowDecoder, ShippedWindowDecoder  # noqa: E402
from tts_plugin.engine.decode_batcher import DecodePool  # noqa: E402
from tts_plugin.engine.decode_stage import DecodeExecutor  # noqa: E402
from tts_plugin.engine.snac_codec import FRAME_SAMPLES, SAMPLE_RATE, CodecConfig, SnacCodec, load_snac  # noqa: E402
from tts_plugin.engine.stream_decoder import IncrementalDecoder, IncrementalSnac  # noqa: E402

TOKENS_PER_S = 82.03
FRAME_PERIOD_S = 7 / TOKENS_PER_S
SEGMENT = SAMPLE_RATE // 50  # 20 ms
START_SPREAD_S = 0.5  # real-time streams start at seeded random times within this window


def snr_db(signal: np.ndarray, reference: np.ndarray) -> float:
    noise = float(np.sum((signal.astype(np.float64) - reference) ** 2))
    power = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(power / noise)


def random_frames(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 4096, size=(count, 7))


# -- fidelity -------------------------------------------------------------------------------
def fidelity(codec: SnacCodec, snac: IncrementalSnac, frames: np.ndarray) -> dict:
    reference = codec.decode(frames)
    ours = IncrementalDecoder(snac)
    audio = np.concatenate([ours.push(f) for f in frames] + [ours.flush()])
    assert len(audio) == len(reference) == FRAME_SAMPLES * len(frames)
    early = ours.early_samples
    base = BaselineWindowDecoder(codec)
    base_audio = np.concatenate([base.push(f) for f in frames] + [base.flush()])
    base_ref = np.concatenate([reference[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES] for k in base.emitted_frames])
    return dict(snr_db=round(snr_db(audio[early:], reference[early:]), 1),
                early_snr_db=round(snr_db(audio[:early], reference[:early]), 1) if early else None,
                early_samples=early,
                baseline_snr_db=round(snr_db(base_audio, base_ref), 1),
                baseline_frames_missing=len(frames) - len(base.emitted_frames))


# -- compute --------------------------------------------------------------------------------
def cpu_ms_per_audio_s(run) -> float:
    start = time.process_time()
    samples = run()
    return 1000 * (time.process_time() - start) / (samples / SAMPLE_RATE)


def run_baseline(decoder, frames: np.ndarray) -> int:
    return sum(len(decoder.push(f)) for f in frames) + len(decoder.flush())


def run_ours_single(snac: IncrementalSnac, frames: np.ndarray) -> int:
    decoder = IncrementalDecoder(snac)
    return sum(len(decoder.push(f)) for f in frames) + len(decoder.flush())


def run_ours_lockstep(snac: IncrementalSnac, frames: np.ndarray, streams: int) -> int:
    """``streams`` decoders, one frame each per batched step (what the batcher does under load)."""
    decoders = [IncrementalDecoder(snac) for _ in range(streams)]

    def step(zs: list) -> int:
        if zs[0] is None:  # same frames everywhere: every stream defers (or not) alike
            return sum(len(d.finish(None, 0)) for d in decoders)
        firsts = [d.next_position() for d in decoders]
        audio = snac.step([d.state for d in decoders], torch.cat(zs))
        return sum(len(d.finish(audio[i], firsts[i])) for i, d in enumerate(decoders))

    total = sum(step([d.prepare_push(f) for d in decoders]) for f in frames)
    return total + step([d.prepare_flush() for d in decoders])


def compute(codec, snac, shipped_model, frames, *, rounds: int, lockstep: int, shipped_frames: int) -> dict:
    results: dict[str, list[float]] = {"baseline": [], "single": [], "batched": [], "shipped": []}
    for _ in range(rounds):  # interleaved, so machine load hits every variant alike
        results["baseline"].append(cpu_ms_per_audio_s(lambda: run_baseline(BaselineWindowDecoder(codec), frames)))
        results["single"].append(cpu_ms_per_audio_s(lambda: run_ours_single(snac, frames)))
        results["batched"].append(cpu_ms_per_audio_s(lambda: run_ours_lockstep(snac, frames, lockstep)))
    results["shipped"].append(cpu_ms_per_audio_s(
        lambda: run_baseline(ShippedWindowDecoder(shipped_model), frames[:shipped_frames])))
    med = {k: statistics.median(v) for k, v in results.items()}
    return dict(compute_ratio=round(med["single"] / med["baseline"], 3),
                compute_ratio_batched=round(med["batched"] / med["baseline"], 3),
                cpu_ms_per_audio_s=round(med["single"], 1),
                cpu_ms_per_audio_s_batched=round(med["batched"], 1),
                baseline_cpu_ms_per_audio_s=round(med["baseline"], 1),
                shipped_cpu_ms_per_audio_s=round(med["shipped"], 1),
                shipped_compute_ratio=round(med["single"] / med["shipped"], 3),
                # streams one core could sustain on decode CPU alone (no other load, no jitter)
                capacity_streams_per_core=round(1000 / med["batched"], 2),
                baseline_capacity_streams_per_core=round(1000 / med["baseline"], 2),
                lockstep_streams=lockstep)


# -- contention (vLLM on the same cores) ------------------------------------------------------
COMPETITOR = "import torch\ntorch.set_num_threads({threads})\na = torch.randn(768, 768)\nwhile True:\n    a @ a\n"


def wall_ms_per_frame(run, frames: np.ndarray, threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    run(frames)
    return 1000 * (time.perf_counter() - start) / len(frames)


def contention(codec, snac, frames: np.ndarray, competitor_threads: int, restore_threads: int) -> dict:
    """Wall ms per frame with 1 and 2 decode threads, alone and next to a busy 2-thread process
    (a stand-in for vLLM's CPU forward passes). One thread should degrade gracefully; two
    threads oversubscribe the cores and can collapse."""
    import subprocess

    variants = {"ours": lambda f: run_ours_single(snac, f), "baseline": lambda f: run_baseline(BaselineWindowDecoder(codec), f)}
    out: dict = {}
    for loaded in (False, True):
        proc = None
        if loaded:
            proc = subprocess.Popen([sys.executable, "-c", COMPETITOR.format(threads=competitor_threads)])
            time.sleep(1.0)
        try:
            for name, run in variants.items():
                for threads in (1, 2):
                    key = f"{name}_{threads}t_{'loaded' if loaded else 'alone'}_ms_per_frame"
                    out[key] = round(wall_ms_per_frame(run, frames, threads), 1)
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
    torch.set_num_threads(restore_threads)
    for name in variants:
        for threads in (1, 2):
            out[f"{name}_{threads}t_slowdown"] = round(out[f"{name}_{threads}t_loaded_ms_per_frame"]
                                                      / out[f"{name}_{threads}t_alone_ms_per_frame"], 2)
    return out


# -- real time ------------------------------------------------------------------------------
async def paced_stream(decode_push, decode_flush, frames: np.ndarray, phase_s: float, t0: float) -> dict:
    """Feed frames as a paced token source delivers them; record when audio comes out."""
    start = t0 + phase_s
    emitted, events = 0, []  # (time, cumulative samples)
    first_token_at = start  # the first audio token of the stream
    sent = 0
    while sent < len(frames):
        due = start + (7 * (sent + 1) - 1) / TOKENS_PER_S  # 7th token of the next frame
        now = time.perf_counter()
        if now < due:
            await asyncio.sleep(due - now)
        now = time.perf_counter()
        ready = min(len(frames), int((now - start) * TOKENS_PER_S + 1) // 7)  # frames complete by now
        ready = max(ready, sent + 1)
        audio = await decode_push(frames[sent:ready])
        sent = ready
        if len(audio):
            emitted += len(audio)
            events.append((time.perf_counter(), emitted, sent))
    audio = await decode_flush()
    if len(audio):
        emitted += len(audio)
        events.append((time.perf_counter(), emitted, sent))
    return dict(events=events, first_token_at=first_token_at, samples=emitted)


def stream_realtime(result: dict, buffer_s: float) -> bool:
    events = result["events"]
    if not events:
        return False
    play_start = events[0][0] + buffer_s
    index = 0
    for seg_end in range(SEGMENT, result["samples"] + 1, SEGMENT):
        while events[index][1] < seg_end:
            index += 1
        if events[index][0] > play_start + (seg_end - SEGMENT) / SAMPLE_RATE:
            return False
    return True


async def realtime_trial(make_decoder, streams: int, frames_per_stream: int, rng: np.random.Generator) -> list[dict]:
    t0 = time.perf_counter() + 0.05
    tasks = []
    for _ in range(streams):
        push, flush = make_decoder()
        phase = float(rng.uniform(0, START_SPREAD_S))
        tasks.append(paced_stream(push, flush, random_frames(rng, frames_per_stream), phase, t0))
    return await asyncio.gather(*tasks)


def ours_factory(batcher: DecodePool):
    def make():
        stream = batcher.open_stream()
        return stream.apush, stream.aflush
    return make


def baseline_factory(codec_or_model, executor: DecodeExecutor, shipped: bool = False):
    def make():
        decoder = ShippedWindowDecoder(codec_or_model) if shipped else BaselineWindowDecoder(codec_or_model)

        async def push(frames):
            return await executor.run(decoder.push, frames)

        async def flush():
            return await executor.run(decoder.flush)
        return push, flush
    return make


def max_realtime_streams(make_decoder, *, frames_per_stream: int, buffer_s: float, limit: int, seed: int,
                         trials: int = 1) -> tuple[int, dict]:
    """Largest N that stays real time: doubling, then bisection. Also first-audio figures at N=1."""
    rng = np.random.default_rng(seed)
    details: dict = {}

    def ok(n: int) -> bool:
        for _ in range(trials):  # start phases differ per trial; N counts only if every trial holds
            results = asyncio.run(realtime_trial(make_decoder, n, frames_per_stream, rng))
            if n == 1 and results[0]["events"] and "first_audio_ms" not in details:
                first_time, _, frames_in = results[0]["events"][0]
                details["first_audio_tokens"] = 7 * frames_in
                details["first_audio_ms"] = round(1000 * (first_time - results[0]["first_token_at"]), 1)
            if not all(stream_realtime(r, buffer_s) for r in results):
                return False
        return True

    good, bad = 0, None
    n = 1
    while n <= limit:
        if ok(n):
            good, n = n, n * 2
        else:
            bad = n
            break
    if bad is None:
        return good, details
    while bad - good > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good, details


def realtime(codec, snac, shipped_model, *, workers: int, threads: int, batch_wait_ms: float, common: dict,
             shipped: bool = True) -> dict:
    """Largest real-time N for ours and the baseline with the same decode workers and threads."""
    batcher = DecodePool(snac, workers=workers, threads=threads, max_wait_s=batch_wait_ms / 1000)
    executor = DecodeExecutor(threads, workers=workers)
    try:
        ours_n, ours_first = max_realtime_streams(ours_factory(batcher), **common)
        base_n, base_first = max_realtime_streams(baseline_factory(codec, executor), **common)
        out = dict(realtime_streams=ours_n, baseline_realtime_streams=base_n,
                   realtime_ratio=round(ours_n / base_n, 2) if base_n else None,
                   first_audio_tokens=ours_first.get("first_audio_tokens"),
                   first_audio_ms=ours_first.get("first_audio_ms"),
                   baseline_first_audio_tokens=base_first.get("first_audio_tokens"),
                   baseline_first_audio_ms=base_first.get("first_audio_ms"),
                   batcher_rows_per_call=round(batcher.rows / max(batcher.ticks, 1), 2))
        if shipped:
            out["shipped_realtime_streams"], _ = max_realtime_streams(
                baseline_factory(shipped_model, executor, shipped=True), **{**common, "limit": min(common["limit"], 4)})
        return out
    finally:
        batcher.shutdown()
        executor.shutdown()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every decoder (compute figures)")
    parser.add_argument("--realtime-threads", type=int, default=1,
                        help="torch threads of the decode worker (ours and baseline) in the real-time test")
    parser.add_argument("--realtime-workers", type=int, default=1,
                        help="decode worker threads (ours: batchers in a pool; baseline: executor threads)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--frames", type=int, default=48, help="frames per utterance (compute, fidelity)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lockstep", type=int, default=8, help="streams in the batched compute figure")
    parser.add_argument("--stream-frames", type=int, default=36, help="frames per real-time stream")
    parser.add_argument("--startup-buffer-ms", type=float, default=200.0)
    parser.add_argument("--realtime-trials", type=int, default=2,
                        help="trials (different start phases) every stream count must pass")
    parser.add_argument("--max-streams", type=int, default=64)
    parser.add_argument("--batch-wait-ms", type=float, default=20.0,
                        help="how long the batcher waits for other due streams before a call")
    parser.add_argument("--torch-snake", action="store_true", help="eager torch Snake instead of the compiled kernel")
    parser.add_argument("--skip-realtime", action="store_true")
    parser.add_argument("--skip-all-cores", action="store_true",
                        help="skip the second real-time search with every core (one worker of N threads)")
    parser.add_argument("--skip-compute", action="store_true")
    parser.add_argument("--contention", action="store_true",
                        help="also time decoding next to a busy 2-thread process (a vLLM stand-in)")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.rounds, args.lockstep, args.stream_frames, args.max_streams = 6, 1, 2, 4, 1
        args.realtime_trials = 1

    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    codec = SnacCodec(load_snac("random"), CodecConfig(dtype=dtype))
    shipped_model = load_snac("random").to(dtype)  # same seed: same weights, weight norm kept, RNG noise
    snac = IncrementalSnac(codec, native_snake=not args.torch_snake)
    rng = np.random.default_rng(7)
    frames = random_frames(rng, args.frames)
    run_ours_single(snac, frames[:4])  # warm-up

    report: dict = dict(threads=args.threads, dtype=args.dtype, native_snake=snac.snake.native, frames=args.frames)
    report.update(fidelity(codec, snac, frames))
    if not args.skip_compute:
        report.update(compute(codec, snac, shipped_model, frames, rounds=args.rounds, lockstep=args.lockstep,
                              shipped_frames=min(len(frames), 8)))
    if args.contention:
        report["contention"] = contention(codec, snac, frames[:12], competitor_threads=2, restore_threads=args.threads)
    if not args.skip_realtime:
        common = dict(frames_per_stream=args.stream_frames, buffer_s=args.startup_buffer_ms / 1000,
                      limit=args.max_streams, seed=11, trials=args.realtime_trials)
        report.update(realtime(codec, snac, shipped_model, workers=args.realtime_workers,
                               threads=args.realtime_threads, batch_wait_ms=args.batch_wait_ms, common=common))
        report.update(startup_buffer_ms=args.startup_buffer_ms, stream_frames=args.stream_frames,
                      realtime_trials=args.realtime_trials,
                      realtime_threads=args.realtime_threads, realtime_workers=args.realtime_workers,
                      batch_wait_ms=args.batch_wait_ms)
        cores = os.cpu_count() or 1
        if not args.skip_all_cores and (args.realtime_workers, args.realtime_threads) != (1, cores):
            # the same search with every core on each side: the baseline can then reach 1 stream
            every = realtime(codec, snac, shipped_model, workers=1, threads=cores,
                             batch_wait_ms=args.batch_wait_ms, common=common, shipped=False)
            report.update({f"{key}_all_cores": value for key, value in every.items()
                           if key in ("realtime_streams", "baseline_realtime_streams", "realtime_ratio")})
            report["all_cores_threads"] = cores
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
