"""LLM tokens in, complete sentences out, as soon as each one is known to be complete.

A sentence is complete when text after it has started another one (the splitter is the engine's,
so the client and the engine cut text the same way). The last piece waits for more text or for
``flush()``. A piece holding only emotion tags waits for the words it belongs to.
"""

from __future__ import annotations

from ..engine.text import TAG, normalize, split_sentences


def _has_words(text: str) -> bool:
    return bool(TAG.sub("", text).strip())


class SentenceBuffer:
    def __init__(self) -> None:
        self._text = ""

    def push(self, token: str) -> list[str]:
        """Add text; return the sentences it completed (maybe none)."""
        self._text += token
        if not normalize(self._text):
            return []
        pieces = split_sentences(self._text)
        if len(pieces) < 2:
            return []
        done = [p for p in pieces[:-1] if _has_words(p)]
        pending = pieces[-1]
        # Keep the raw tail (with its trailing space) so the next token joins it correctly.
        start = self._text.rfind(pending)
        self._text = self._text[start:] if start >= 0 else pending + " "
        if len(done) < len(pieces) - 1:  # lone tags stay with the text that follows
            tags = " ".join(p for p in pieces[:-1] if not _has_words(p))
            self._text = f"{tags} {self._text}"
        return done

    def flush(self) -> list[str]:
        """End of input: whatever remains, if it has anything to say."""
        text, self._text = self._text, ""
        if not normalize(text):
            return []
        return [p for p in split_sentences(normalize(text)) if _has_words(p)]
