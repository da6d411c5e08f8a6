"""Text before the LM: normalisation, validation, sentence splitting, and an audio budget.

Sentences come from pysbd; a sentence longer than ``max_chunk_chars`` is cut further at clause
punctuation, then at spaces. Emotion tags (``<laugh>``) stay attached to their words: a chunk that
would hold only tags joins its neighbour. ``split_sentences`` splits a whole text (the engine);
``SentenceSplitter`` the same way a text arriving in pieces (the plugin's LLM tokens, the WebSocket's
``continue`` messages).

pysbd's cost grows much faster than its input on some texts (``"a) b) " * 400``: 20 s for 2,400
characters), so it only ever sees windows of ``SPLIT_WINDOW_CHARS``: splitting is linear in the
input. Callers on an event loop run ``split_sentences`` (and a push of a large piece) in a thread.
"""

from __future__ import annotations

import math
import re
import unicodedata

from ..protocol import SAMPLE_RATE
from .profiles import FRAME_TOKENS

TAG = re.compile(r"<[a-z_]+>")
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
MAX_CHUNK_CHARS = 280  # a longer sentence is cut at clauses, then spaces
# A sentence end (pysbd's terminators, the ellipsis, a line break) with a word after it, tags and
# punctuation skipped: only then can pysbd find a new sentence. ``<lau`` at the end may be a tag.
_SENTENCE_END = ".!?\u2026\u3002\uff0e\uff01\uff1f\n"
_END_THEN_WORD = re.compile(rf"[{_SENTENCE_END}](?:<[a-z_]+>|[^\w<]|<(?![a-z_]*(?:>|$)))*\w")
_LAST_SENTENCE_END = re.compile(rf"[{_SENTENCE_END}][^{_SENTENCE_END}]*$")

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
    if not has_words(clean):
        raise TextError("input holds only tags; nothing to say")
    return clean


def has_words(text: str) -> bool:
    """Something to say once emotion tags are set aside."""
    return bool(TAG.sub("", text).strip())


def split_sentences(text: str, max_chunk_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Sentences (and clauses of over-long sentences) of a whole text, tags kept with their words."""
    splitter = SentenceSplitter(max_chunk_chars)
    return splitter.push(text) + splitter.flush()


class SentenceSplitter:
    """Text arriving in pieces (LLM tokens, ``continue`` messages) in, complete sentences out.

    A sentence is complete once text after it starts another one, so the first sentence leaves as
    soon as the next word arrives; the last one waits for more text or for ``flush()``. A sentence
    longer than ``max_chunk_chars`` leaves in pieces as it grows. pysbd runs only when a sentence
    end followed by a word has arrived, or at that size: pieces without one cost no pysbd call, and
    pysbd sees only the unreleased text, in windows.
    """

    def __init__(self, max_chunk_chars: int = MAX_CHUNK_CHARS) -> None:
        self.max_chunk_chars = max_chunk_chars
        self._text = ""  # not released yet, raw: whitespace at its end matters for the next piece
        self._scan_from = 0  # no sentence end followed by a word before here
        self._cut_at = max_chunk_chars + 1  # split at this length even without a sentence end

    def push(self, text: str) -> list[str]:
        """Add text; return the sentences it completed (maybe none)."""
        self._text += text
        if not self._may_end_sentence() and len(self._text) < self._cut_at:
            return []
        done = self._release(final=False)
        # pysbd has judged everything so far: look again only past it
        self._scan_from = _open_sentence_end(self._text)
        n = len(self._text)  # a run the cut leaves whole (one long word) is not split again per piece
        self._cut_at = self.max_chunk_chars + 1 if n <= self.max_chunk_chars else n + self.max_chunk_chars
        return done

    def flush(self) -> list[str]:
        """End of input: the rest, split. Text holding only tags comes back whole: whether that is
        an error (the server) or nothing to say (the plugin) is the caller's call."""
        done = self._release(final=True)
        self._text, self._scan_from, self._cut_at = "", 0, self.max_chunk_chars + 1
        return done

    def _may_end_sentence(self) -> bool:
        if _END_THEN_WORD.search(self._text, self._scan_from):
            return True
        self._scan_from = _open_sentence_end(self._text, self._scan_from)
        return False

    def _release(self, *, final: bool) -> list[str]:
        """Chunks of the sentences known complete (all of them if ``final``); the rest stays.

        pysbd sees windows of ``SPLIT_WINDOW_CHARS``: its cost grows much faster than its input on
        some texts. The last sentence of a window may go on, so it heads the next window; one that
        fills a window leaves in ``max_chunk_chars`` pieces, its last piece heading the next window.
        """
        limit = self.max_chunk_chars
        text, done = self._text, []
        while text:
            end = _window_end(text, max(SPLIT_WINDOW_CHARS, limit))
            last_window = end == len(text)
            spans = [s for s in _pysbd_spans(text[:end]) if s.sent.strip()]
            if final and last_window:
                done += _chunks(spans, limit)
                text = ""
                break
            keep = len(spans) - 1  # the last sentence may go on; tags after it wait with it
            while keep > 0 and not has_words(spans[keep].sent):
                keep -= 1
            if keep > 0 and spans[keep].start > 0:
                done += _chunks(spans[:keep], limit)
                text = text[spans[keep].start:]
            elif spans:  # one sentence so far: pieces of it leave once it is over the limit
                content_end = len(text[:end].rstrip())
                pieces = _cut_long(normalize(text[spans[0].start:content_end]), limit)
                if len(pieces) > 1:
                    done += pieces[:-1]
                    text = pieces[-1] + text[content_end:]
                elif not last_window:  # a window of one unbreakable word, or mostly whitespace
                    done += pieces
                    text = text[end:]
            elif not last_window:
                text = text[end:]
            if last_window:
                break
        self._text = text
        done = _attach_lone_tags([c for c in done if c])
        if done and not final and not has_words(done[0]):  # only tags: they wait for their words
            self._text = f"{done[0]} {self._text}"
            return []
        return done


def _chunks(spans: list, limit: int) -> list[str]:
    return [chunk for span in spans for chunk in _cut_long(normalize(span.sent), limit)]


def _open_sentence_end(text: str, start: int = 0) -> int:
    """Where the last sentence end in ``text[start:]`` is, if no word follows it yet; else the end."""
    last = _LAST_SENTENCE_END.search(text, start)
    if last is None or _END_THEN_WORD.match(text, last.start()):
        return len(text)
    return last.start()


def _window_end(text: str, window: int) -> int:
    """At most ``window`` characters, cut at a space where there is one."""
    if len(text) <= window:
        return len(text)
    space = text.rfind(" ", 1, window)
    return space if space > 0 else window


def _pysbd_spans(text: str) -> list:
    import pysbd

    # One segmenter per call: ``segment`` keeps the text on the instance, and callers run in threads.
    return pysbd.Segmenter(language="en", clean=False, char_span=True).segment(text)


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
        if not has_words(chunk):
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
