"""Text -> prompt token ids, built as ids (vLLM TokensPrompt) so nothing re-tokenises the markers."""

from __future__ import annotations

from .profiles import ModelProfile


class PromptBuilder:
    def __init__(self, tokenizer, profile: ModelProfile) -> None:
        self.tokenizer = tokenizer
        self.profile = profile

    @classmethod
    def load(cls, name: str, profile: ModelProfile) -> "PromptBuilder":
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(name), profile)

    def check_voice(self, voice: str) -> str:
        if voice not in self.profile.voices:
            raise ValueError(f"unknown voice {voice!r}; voices: {', '.join(self.profile.voices)}")
        return voice

    def build(self, text: str, voice: str) -> list[int]:
        """``[start_of_human] + tok("{voice}: {text}") + [eot, end_of_human, start_of_ai, start_of_speech]``"""
        ids = self.tokenizer.encode(self.profile.prompt_text(text, voice), add_special_tokens=False)
        return [*self.profile.prefix_ids, *ids, *self.profile.suffix_ids]
