"""Model profiles: how a SNAC-emitting LM wants its prompt, which voices and tags it knows.

Orpheus is the default. Another checkpoint (e.g. Veena with speaker tags) is one more profile:
its prompt layout (ids around the text, the text template), voices and voice aliases live here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Token ids shared by Orpheus-style models (Llama 3 tokenizer + custom tokens).
START_OF_TEXT = 128000  # Llama 3 <|begin_of_text|> (BOS)
END_OF_TEXT = 128009  # <|eot_id|>
START_OF_SPEECH = 128257
END_OF_SPEECH = 128258  # the stop token (fixed by the shared audio-token layout, like the ids below)
START_OF_HUMAN = 128259
END_OF_HUMAN = 128260
START_OF_AI = 128261
CUSTOM_TOKEN_BASE = 128256  # <custom_token_N> is CUSTOM_TOKEN_BASE + N
AUDIO_TOKEN_BASE = 128266  # audio token = AUDIO_TOKEN_BASE + CODEBOOK_SIZE * slot + code
CODEBOOK_SIZE = 4096
FRAME_TOKENS = 7
VOCAB_SIZE = 156940
# Every id from here up is a special or control token: none may ever come from a client's text.
FIRST_CONTROL_ID = START_OF_TEXT

# OpenAI's voice names (what the OpenAI SDK and LiveKit's OpenAI plugin send by default) mapped to
# the English finetune's voices by character: lighter voices to tara/leah/jess/mia/zoe, deeper to leo/dan/zac.
OPENAI_VOICE_ALIASES: Mapping[str, str] = {
    "alloy": "tara", "coral": "leah", "nova": "jess", "shimmer": "mia", "sage": "zoe", "marin": "tara",
    "ash": "leo", "echo": "zac", "onyx": "dan", "fable": "leo", "ballad": "dan", "verse": "zac",
    "cedar": "leo",
}


@dataclass(frozen=True)
class ModelProfile:
    name: str
    voices: tuple[str, ...]
    default_voice: str
    tags: tuple[str, ...]  # emotion tags the finetune acts on; other <tags> are read aloud
    voice_aliases: Mapping[str, str] = field(default_factory=dict)
    # Prompt layout: prefix ids, then the template tokenized as plain text, then suffix ids.
    text_template: str = "{voice}: {text}"
    prefix_ids: tuple[int, ...] = ()
    suffix_ids: tuple[int, ...] = ()

    def prompt_text(self, text: str, voice: str) -> str:
        return self.text_template.format(voice=voice, text=text)


ORPHEUS = ModelProfile(
    name="orpheus",
    voices=("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"),
    default_voice="tara",
    tags=("<laugh>", "<chuckle>", "<sigh>", "<cough>", "<sniffle>", "<groan>", "<yawn>", "<gasp>"),
    voice_aliases=OPENAI_VOICE_ALIASES,
    # The layout the finetune was trained on, as every public reference builds it: canopyai/Orpheus-TTS
    # `_format_prompt` tokenizes "{voice}: {text}" with BOS added, then wraps it in
    # [start_of_human] ... [eot, end_of_human, start_of_ai, start_of_speech]; Baseten's truss and
    # orpheus-streaming write the same sequence as a string (pinned by tests/test_prompt.py).
    prefix_ids=(START_OF_HUMAN, START_OF_TEXT),
    suffix_ids=(END_OF_TEXT, END_OF_HUMAN, START_OF_AI, START_OF_SPEECH),
)

PROFILES: dict[str, ModelProfile] = {p.name: p for p in (ORPHEUS,)}


def get_profile(name: str) -> ModelProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; known: {', '.join(PROFILES)}") from None
