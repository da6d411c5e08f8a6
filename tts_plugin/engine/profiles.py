"""Model profiles: how a SNAC-emitting LM wants its prompt, which voices and tags it knows.

Orpheus is the default. Another checkpoint (e.g. Veena with speaker tags) is one more profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Token ids shared by Orpheus-style models (Llama 3 tokenizer + custom tokens).
START_OF_TEXT = 128000
END_OF_TEXT = 128009  # <|eot_id|>
START_OF_SPEECH = 128257
END_OF_SPEECH = 128258  # the stop token
START_OF_HUMAN = 128259
END_OF_HUMAN = 128260
START_OF_AI = 128261
END_OF_AI = 128262
PAD = 128263
CUSTOM_TOKEN_BASE = 128256  # <custom_token_N> is CUSTOM_TOKEN_BASE + N
AUDIO_TOKEN_BASE = 128266  # audio token = AUDIO_TOKEN_BASE + CODEBOOK_SIZE * slot + code
CODEBOOK_SIZE = 4096
FRAME_TOKENS = 7
VOCAB_SIZE = 156940


@dataclass(frozen=True)
class ModelProfile:
    name: str
    voices: tuple[str, ...]
    default_voice: str
    tags: tuple[str, ...]  # emotion tags the finetune acts on; other <tags> are read aloud
    text_template: str = "{voice}: {text}"
    prefix_ids: tuple[int, ...] = (START_OF_HUMAN,)
    suffix_ids: tuple[int, ...] = (END_OF_TEXT, END_OF_HUMAN, START_OF_AI, START_OF_SPEECH)
    stop_token_ids: tuple[int, ...] = (END_OF_SPEECH,)
    extra: dict = field(default_factory=dict)

    def prompt_text(self, text: str, voice: str) -> str:
        return self.text_template.format(voice=voice, text=text)


ORPHEUS = ModelProfile(
    name="orpheus",
    voices=("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"),
    default_voice="tara",
    tags=("<laugh>", "<chuckle>", "<sigh>", "<cough>", "<sniffle>", "<groan>", "<yawn>", "<gasp>"),
)

PROFILES: dict[str, ModelProfile] = {p.name: p for p in (ORPHEUS,)}


def get_profile(name: str) -> ModelProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; known: {', '.join(PROFILES)}") from None
