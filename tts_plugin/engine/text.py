"""Text before the LM: normalisation, validation, sentence splitting, and an audio budget.

Sentences come from pysbd; a sentence longer than ``max_chunk_chars`` is cut further at clause
punctuation, then at spaces. Emotion tags (``<laugh>``) stay attached to their words: a chunk that
would hold only tags joins its neighbour.

pysbd's cost grows much faster than its input on some texts (``"a) b) " * 400``: 20 s for 2,400
characters), so it only ever sees windows of ``SPLIT_WINDOW_CHARS``: splitting is linear in the
input. Callers on an event loop run ``split_sentences`` in a thread.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache

from ..protocol import SAMPLE_RATE
from .profiles import FRAME_TOKENS

TAG = re.compile(r"<[a-z_]+>")
_ONLY_TAGS = re.compile(r"^\s*(?:<[a-z_]+>\s*)+$")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:\u2014])\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
# Characters that take no space and make no sound (zero-width spaces and joiners, BOM, bidi and
# variation selectors, tag characters): removed, so text made only of them counts as empty.
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff]")
# Lone UTF-16 surrogates (JSON allows "\ud800"): not Unicode text; the tokenizer cannot encode them.
_SURROGATE = re.compile("[\ud800-\udfff]")
SPLIT_WINDOW_CHARS = 300  # pysbd never sees more at once (~0.13 s for the worst text measured)

TOKENS_PER_SECOND = SAMPLE_RATE / 2048 * FRAME_TOKENS  # 82.03 audio tokens per second of speech


class TextError(ValueError):
    """Input text the engine refuses, with a reason fit for the client."""


def normalize(text: str) -> str:
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def validate(text: object, max_chars: int) -> str:
    if not isinstance(text, str):
        raise TextError("input must be a string")
    if (bad := _SURROGATE.search(text)) is not None:
        raise TextError(f"input holds a lone UTF-16 surrogate (U+{ord(bad.group()):04X}) at position {bad.start()}: "
                        "send valid Unicode text")
    clean = normalize(text)
    if not clean:
        raise TextError("input is empty")
    if len(clean) > max_chars:
        raise TextError(f"input is {len(clean)} characters; the limit is {max_chars}")
    if not TAG.sub("", clean).strip():
        raise TextError("input holds only tags; nothing to say")
    return clean


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def split_sentences(text: str, max_chunk_chars: int = 280) -> list[str]:
    """Sentences (and clauses of over-long sentences), tags kept with their words."""
    chunks: list[str] = []
    for piece in _pysbd_sentences(text, max(SPLIT_WINDOW_CHARS, max_chunk_chars)):
        chunks.extend(_cut_long(piece, max_chunk_chars))
    return _attach_lone_tags(chunks)


def _pysbd_sentences(text: str, window: int) -> list[str]:
    """pysbd over windows of at most ``window`` characters, cut at a space. The last sentence of a
    window may be unfinished, so it starts the next window; a window holding one sentence is cut
    where it ends (the sentence is too long for one chunk anyway)."""
    sentences: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + window)
        if end < len(text):
            space = text.rfind(" ", start + 1, end)
            end = space if space > start else end
        pieces = [p.strip() for p in _segmenter().segment(text[start:end]) if p.strip()]
        if end == len(text) or len(pieces) <= 1:
            sentences.extend(pieces)
            start = end
            continue
        sentences.extend(pieces[:-1])
        start = text.rfind(pieces[-1], start, end)  # the last piece, again, at the next window's head
    return sentences


def _cut_long(sentence: str, limit: int) -> list[str]:
    if len(sentence) <= limit:
        return [sentence]
    out: list[str] = []
    current = ""
    for clause in _CLAUSE_BREAK.split(sentence):
        for part in _cut_at_spaces(clause, limit):
            if current and len(current) + 1 + len(part) > limit:
                out.append(current)
                current = part
            else:
                current = f"{current} {part}" if current else part
    if current:
        out.append(current)
    return out


def _cut_at_spaces(clause: str, limit: int) -> list[str]:
    if len(clause) <= limit:
        return [clause]
    parts, current = [], ""
    for word in clause.split(" "):
        if current and len(current) + 1 + len(word) > limit:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return parts + ([current] if current else [])


def _attach_lone_tags(chunks: list[str]) -> list[str]:
    out: list[str] = []
    pending = ""  # leading tags waiting for words
    for chunk in chunks:
        if _ONLY_TAGS.match(chunk):
            if out:
                out[-1] = f"{out[-1]} {chunk.strip()}"
            else:
                pending = f"{pending} {chunk.strip()}".strip()
            continue
        out.append(f"{pending} {chunk}".strip() if pending else chunk)
        pending = ""
    if pending:
        out.append(pending)
    return out


def audio_token_budget(text: str, *, seconds_per_char: float = 0.1, base_seconds: float = 3.0,
                       cap: int | None = None) -> int:
    """Max audio tokens for a chunk: generous for its length (speech runs ~0.07 s a character),
    bounded so a model that never says end-of-speech stops. Whole frames only."""
    spoken = TAG.sub("", text)
    seconds = base_seconds + seconds_per_char * len(spoken) + 1.0 * len(TAG.findall(text))
    tokens = math.ceil(seconds * TOKENS_PER_SECOND / FRAME_TOKENS) * FRAME_TOKENS
    if cap is not None:
        tokens = min(tokens, cap // FRAME_TOKENS * FRAME_TOKENS)
    return max(tokens, FRAME_TOKENS)
