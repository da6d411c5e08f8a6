"""Text -> prompt token ids, built as ids (vLLM TokensPrompt) so nothing re-tokenises the markers.

Client text is tokenized as plain text: the tokenizer's added and special tokens (``<|eot_id|>``,
``<custom_token_N>``...) are never parsed out of it, so no text can end the human turn, open the
AI turn or inject audio codes. Every control id comes from the profile's layout.
"""

from __future__ import annotations

from .profiles import FIRST_CONTROL_ID, ModelProfile


def plain_text_ids(tokenizer, text: str) -> list[int]:
    """``text`` through the tokenizer's normalizer, pre-tokenizer and model only.

    That is the pipeline ``encode`` runs on the text between added tokens; skipping the
    added-token pass means a special token's spelling in ``text`` stays ordinary text."""
    backend = tokenizer.backend_tokenizer
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    pieces = backend.pre_tokenizer.pre_tokenize_str(text) if backend.pre_tokenizer is not None else [(text, None)]
    return [token.id for piece, _ in pieces for token in backend.model.tokenize(piece)]


class PromptBuilder:
    def __init__(self, tokenizer, profile: ModelProfile) -> None:
        self.tokenizer = tokenizer
        self.profile = profile

    @classmethod
    def load(cls, name: str, profile: ModelProfile) -> PromptBuilder:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(name), profile)

    def build(self, text: str, voice: str) -> list[int]:
        """Orpheus: ``[start_of_human, BOS] + plain("{voice}: {text}") + [eot, end_of_human, start_of_ai, start_of_speech]``"""
        ids = plain_text_ids(self.tokenizer, self.profile.prompt_text(text, voice))
        if any(i >= FIRST_CONTROL_ID for i in ids):  # a tokenizer whose plain model holds control ids
            raise ValueError("text maps to control tokens of the model")
        return [*self.profile.prefix_ids, *ids, *self.profile.suffix_ids]
