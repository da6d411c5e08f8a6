"""Parameters of other TTS models: refused with the reason, or accepted at their neutral value.

A client written for Spark TTS or Chatterbox sends knobs Orpheus does not have. Silently ignoring a
non-default value would hide a behaviour change, so it is refused naming the parameter and why. The
value the seed server documents as its default asks for nothing special, so it is accepted, which
lets that README's verbatim request work (the same rule as OpenAI's ``speed``: only 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_NO_NEUTRAL = object()


@dataclass(frozen=True)
class ForeignParameter:
    reason: str
    neutral: Any = _NO_NEUTRAL  # the value that asks for nothing special; none: always refused


FOREIGN_PARAMETERS: dict[str, ForeignParameter] = {
    "speaker_id": ForeignParameter("Spark TTS speaker ids do not exist here; pass a voice name from GET /v1/voices"),
    "audio_prompt": ForeignParameter("voice cloning from a reference clip is not supported by Orpheus; "
                                     "pick a voice from GET /v1/voices"),
    "audio_prompt_path": ForeignParameter("voice cloning from a reference clip is not supported by Orpheus"),
    "exaggeration": ForeignParameter("Chatterbox's emotion intensity has no Orpheus equivalent; "
                                     "use emotion tags such as <laugh> in the text", 0.5),
    "cfg_weight": ForeignParameter("Chatterbox's classifier-free guidance weight has no Orpheus equivalent", 0.5),
    "chunk_size": ForeignParameter("Orpheus streams each 7-token frame (85 ms of audio) as soon as it is decoded; "
                                   "the chunk size is not adjustable", (25, 50)),
    "context_window": ForeignParameter("Orpheus decodes overlapping SNAC windows itself; not adjustable", 50),
    "min_new_tokens": ForeignParameter("Orpheus cannot force a minimum length; speech ends when the model ends it", 0),
    "enable_alignment_monitoring": ForeignParameter("Chatterbox's alignment monitor has no Orpheus equivalent",
                                                    (True, False)),
    "alignment_window_size": ForeignParameter("Chatterbox's alignment monitor has no Orpheus equivalent", 50),
    "alignment_threshold": ForeignParameter("Chatterbox's alignment monitor has no Orpheus equivalent", 0.15),
    "enable_fade_in": ForeignParameter("Orpheus audio needs no fade-in between chunks (one continuous decode)",
                                       (True, False)),
    "fade_in_duration_ms": ForeignParameter("Orpheus audio needs no fade-in between chunks", 20),
}


def describe(name: str) -> str | None:
    """``"<name>: not supported: <why>"`` for a known foreign parameter, else None."""
    foreign = FOREIGN_PARAMETERS.get(name)
    return None if foreign is None else f"{name}: not supported: {foreign.reason}"


def drop_neutral(data: dict) -> dict:
    """``data`` without the foreign parameters sent at their neutral value (the rest stay, to be refused)."""
    return {k: v for k, v in data.items() if not _is_neutral(k, v)}


def _is_neutral(name: str, value: Any) -> bool:
    foreign = FOREIGN_PARAMETERS.get(name)
    if foreign is None or foreign.neutral is _NO_NEUTRAL or isinstance(value, (dict, list)):
        return False
    neutral = foreign.neutral if isinstance(foreign.neutral, tuple) else (foreign.neutral,)
    # Form fields arrive as strings ("0.5"): compare as the neutral value's type.
    return any(_same(value, n) for n in neutral)


def _same(value: Any, neutral: Any) -> bool:
    if isinstance(neutral, bool):
        return value is neutral or (isinstance(value, str) and value.lower() == str(neutral).lower())
    try:
        return float(value) == float(neutral)
    except (TypeError, ValueError):
        return False
