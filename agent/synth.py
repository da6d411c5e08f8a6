"""python -m agent synth --text "..." [--voice tara] --out out.wav   (text also from stdin)

Writes 24 kHz mono 16-bit WAV as the audio streams in, then prints one JSON line with the
first-audio latency, audio seconds and real-time factor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from contextlib import aclosing

import numpy as np
import soundfile

from tts_plugin.engine.engine import OrpheusEngine
from tts_plugin.engine.model_source import ModelUnavailable, choose_models
from tts_plugin.engine.profiles import get_profile
from tts_plugin.engine.text import TextError, validate
from tts_plugin.engine.voices import VoiceCatalog
from tts_plugin.protocol import CHANNELS, SAMPLE_RATE, metrics_payload
from tts_plugin.settings import add_settings_arguments, settings_from_args


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", help="text to speak (default: read stdin)")
    parser.add_argument("--out", required=True, help="output WAV path")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    add_settings_arguments(parser)  # --voice, --model, --snac-model, --temperature, ...
    return parser.parse_args(argv)


async def synthesize_to_wav(args: argparse.Namespace, text: str) -> dict:
    settings = settings_from_args(args)
    # Refuse bad input before paying for the engine's start-up.
    validate(text, settings.max_input_chars)
    VoiceCatalog.for_profile(get_profile(settings.profile), default=settings.voice, aliases=settings.voice_aliases)
    choice = choose_models(settings)
    if choice.notice:
        print(choice.notice, file=sys.stderr)
    engine = await OrpheusEngine.start(choice.settings)
    try:
        stream = engine.synthesize(text, voice=settings.voice)
        with soundfile.SoundFile(args.out, "w", samplerate=SAMPLE_RATE, channels=CHANNELS, subtype="PCM_16") as wav:
            async with aclosing(stream):
                async for pcm in stream:
                    wav.write(np.frombuffer(pcm, dtype="<i2"))
        return {"out": args.out, **metrics_payload(stream.metrics), "frames": stream.metrics.frames,
                "model": choice.settings.model, "demo": choice.demo}
    finally:
        await engine.aclose()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    text = args.text if args.text is not None else sys.stdin.read()
    try:
        result = asyncio.run(synthesize_to_wav(args, text))
    except (TextError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModelUnavailable as e:
        if args.log_level == "debug":
            logging.getLogger("orpheus").exception("start-up failed")
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
