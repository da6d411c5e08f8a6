"""python -m agent synth --text "..." [--voice tara] --out out.wav   (text also from stdin)

Writes 24 kHz mono 16-bit WAV as the audio streams in, then prints one JSON line with the
first-audio latency, audio seconds and real-time factor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from contextlib import aclosing
from pathlib import Path

from pydantic import Field

from tts_plugin.protocol import CHANNELS, SAMPLE_RATE, metrics_payload
from tts_plugin.settings import EngineSettings, LogLevel


class SynthCommand(EngineSettings):
    """
    Text (--text or stdin) -> 24 kHz mono 16-bit WAV, written as the audio streams in; then one JSON line
    with the first-audio latency, audio seconds and real-time factor. Engine flags are ORPHEUS_ variables too.
    """

    text: str | None = Field(None, description="text to speak (default: read stdin)")
    out: Path = Field(description="output WAV path")
    log_level: LogLevel = "warning"


async def synthesize_to_wav(settings: SynthCommand, text: str) -> dict:
    import numpy as np
    import soundfile

    from tts_plugin.engine.engine import OrpheusEngine
    from tts_plugin.engine.model_source import choose_models
    from tts_plugin.engine.profiles import get_profile
    from tts_plugin.engine.text import validate
    from tts_plugin.engine.voices import VoiceCatalog

    # Refuse bad input before paying for the engine's start-up.
    validate(text, settings.max_input_chars)
    VoiceCatalog.for_profile(get_profile(settings.profile), default=settings.voice, aliases=settings.voice_aliases)
    choice = choose_models(settings)
    if choice.notice:
        print(choice.notice, file=sys.stderr)
    engine = await OrpheusEngine.start(choice.settings)
    try:
        stream = engine.synthesize(text, voice=settings.voice)
        with soundfile.SoundFile(settings.out, "w", samplerate=SAMPLE_RATE, channels=CHANNELS, subtype="PCM_16") as wav:
            async with aclosing(stream):
                async for pcm in stream:
                    wav.write(np.frombuffer(pcm, dtype="<i2"))
        return {"out": str(settings.out), **metrics_payload(stream.metrics), "frames": stream.metrics.frames,
                "model": choice.settings.model, "demo": choice.demo}
    finally:
        await engine.aclose()


def synth(settings: SynthCommand) -> int:
    from tts_plugin.engine.model_source import ModelUnavailable
    from tts_plugin.engine.text import TextError

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    text = settings.text if settings.text is not None else sys.stdin.read()
    try:
        result = asyncio.run(synthesize_to_wav(settings, text))
    except (TextError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModelUnavailable as e:
        if settings.log_level == "debug":
            logging.getLogger("orpheus").exception("start-up failed")
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
