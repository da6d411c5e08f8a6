"""Text normalisation, validation, sentence splitting with tags (whole and streamed), audio budget."""

import re

import pysbd
import pytest

from tts_plugin.engine.text import (
    SPLIT_WINDOW_CHARS,
    SentenceSplitter,
    TextError,
    audio_token_budget,
    normalize,
    split_sentences,
    validate,
)


def test_normalize_collapses_whitespace_and_control_characters():
    assert normalize("  Hello\x00\tworld \n\n again\u00a0!  ") == "Hello world again !"


@pytest.mark.parametrize("bad, reason", [
    ("", "empty"), ("   \n\t ", "empty"), (None, "string"), (42, "string"),
    ("x" * 101, "limit is 100"), ("<laugh> <sigh>", "only tags"),
])
def test_validate_rejects_with_a_clear_reason(bad, reason):
    with pytest.raises(TextError, match=reason):
        validate(bad, max_chars=100)


def test_sentences_split_and_tags_stay_with_their_words():
    text = "Hello there! <laugh> That was funny. I am tired <yawn>. Good night. <sigh>"
    assert split_sentences(text) == [
        "Hello there!", "<laugh> That was funny.", "I am tired <yawn>.", "Good night. <sigh>",
    ]


def test_leading_lone_tag_joins_the_first_sentence():
    assert split_sentences("<gasp> Oh no. It broke.") == ["<gasp> Oh no.", "It broke."]


def test_long_sentence_is_cut_at_clauses_then_spaces_within_the_limit():
    sentence = ", ".join(f"clause number {i} goes here" for i in range(30)) + "."
    chunks = split_sentences(sentence, max_chunk_chars=80)
    assert all(len(c) <= 80 for c in chunks)
    assert " ".join(chunks) == sentence
    words = split_sentences("word " * 100, max_chunk_chars=50)
    assert all(len(c) <= 50 for c in words) and " ".join(words).split() == ["word"] * 100


def test_audio_budget_grows_with_text_is_whole_frames_and_capped():
    short, long = audio_token_budget("Hi."), audio_token_budget("Hi. " * 50)
    assert short % 7 == 0 and long % 7 == 0 and long > short
    assert audio_token_budget("Hi. " * 50, cap=100) == 98
    # ~0.07 s of speech per character: the budget leaves room for the whole text to be spoken
    text = "A sentence of ordinary length, spoken at an ordinary pace."
    assert audio_token_budget(text) / 82.03 > 0.07 * len(text) * 1.3


def test_splitting_is_linear_on_text_that_makes_pysbd_super_linear():
    # pysbd alone: 600 characters of this take ~0.5 s, 2,400 ~20 s; windows keep it linear.
    import time

    small, large = "a) b) " * 100, "a) b) " * 400
    started = time.process_time()
    split_sentences(small)
    small_s = time.process_time() - started
    started = time.process_time()
    chunks = split_sentences(large)
    large_s = time.process_time() - started
    assert " ".join(chunks).split() == large.split()
    assert large_s < 4 * small_s * 4 + 1.0, (small_s, large_s)  # 4x the text: far from pysbd's 40x


def test_window_cuts_keep_sentences_whole():
    text = " ".join(f"Dr. Smith met Mr. Jones at {i} p.m. on Main St. and left." for i in range(40))
    chunks = split_sentences(text)
    assert all(c.startswith("Dr. Smith") and c.endswith("left.") for c in chunks), chunks
    assert len(chunks) == 40


@pytest.mark.parametrize("text", ["Hi \ud800 there.", "\udfff", "ok \udc00\ud800"])
def test_lone_surrogates_are_refused_with_a_reason(text):
    with pytest.raises(TextError, match="surrogate"):
        validate(text, max_chars=100)


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c\u200d", "\ufeff", "\u2060\u200b\u00ad", "\u200e\u200f"])
def test_input_of_only_zero_width_characters_is_empty(invisible):
    with pytest.raises(TextError, match="empty"):
        validate(invisible * 3, max_chars=100)
    assert validate(f"hel{invisible}lo", max_chars=100) == "hello"


STREAMED_TEXTS = [
    "Hello there! <laugh> That was funny. I am tired <yawn>. Good night. <sigh>",
    "<gasp> Oh no. It broke.",
    'Dr. Smith met Mr. Jones at 5 p.m. on Main St. and left. Then he said "Hi." Then left. 3.14 is pi.',
    "\u4f60\u597d\u3002\u6211\u5f88\u597d\uff01\u4f60\u5462\uff1f\u597d\u7684\u3002",  # CJK sentence ends
    ", ".join(f"clause number {i} goes here" for i in range(30)) + ". And a tail.",
    "Here is a list:\n- apples\n- pears\nDone.",
    "First sentence. <laugh> Second one, with a tag! Third? " + "More words, " * 40 + "end.",
]


def _stream(pieces: list[str], splitter: SentenceSplitter | None = None) -> list[str]:
    splitter = splitter or SentenceSplitter()
    out = [sentence for piece in pieces for sentence in splitter.push(piece)]
    return out + splitter.flush()


@pytest.fixture
def pysbd_calls(monkeypatch) -> list[int]:
    """The length of every text pysbd is asked to segment."""
    calls: list[int] = []
    segment = pysbd.Segmenter.segment

    def counting(self, text):
        calls.append(len(text))
        return segment(self, text)

    monkeypatch.setattr(pysbd.Segmenter, "segment", counting)
    return calls


@pytest.mark.parametrize("text", STREAMED_TEXTS)
def test_token_by_token_pushes_give_the_same_sentences_as_one_push(text):
    words = re.findall(r"\S+\s*|\s+", text)
    one_push = _stream([text])
    assert _stream(words) == one_push
    assert _stream(list(text)) == one_push  # even a tag or a word cut in two
    assert one_push == split_sentences(text)  # the engine's whole-text split is the same splitter
    assert "".join(one_push).replace(" ", "") == normalize(text).replace(" ", "")  # nothing lost or added


def test_a_sentence_is_released_as_soon_as_the_next_one_starts_not_at_flush():
    splitter = SentenceSplitter()
    assert [splitter.push(t) for t in ["Hello", " there", "."]] == [[], [], []]  # "." may be "Dr."
    assert splitter.push(" How") == ["Hello there."]
    assert splitter.push(" are you?") == []
    assert splitter.push(" Fine") == ["How are you?"]
    assert splitter.flush() == ["Fine"]
    cjk = SentenceSplitter()
    assert cjk.push("\u4f60\u597d\u3002") == [] and cjk.push("\u6211") == ["\u4f60\u597d\u3002"]


def test_an_abbreviation_is_not_a_sentence_end():
    splitter = SentenceSplitter()
    assert [splitter.push(t) for t in ["I met", " Dr.", " Smith", " today.", " He"]] == [[], [], [], [], ["I met Dr. Smith today."]]


def test_lone_tags_never_leave_alone_and_join_their_words():
    splitter = SentenceSplitter()
    assert splitter.push("<laugh>") == [] and splitter.push(" ") == []
    assert splitter.push("Oh") == [] and splitter.push(" no.") == []
    assert splitter.push(" <sigh>") == []  # a tag after a sentence end is not a new sentence yet
    assert splitter.push(" <la") == [] and splitter.push("ugh>") == []
    assert splitter.push(" Yes") == ["<laugh> Oh no."]
    assert splitter.flush() == ["<sigh> <laugh> Yes"]
    # Trailing tags stay with the sentence before them; text of only tags comes back whole at flush.
    assert _stream(["Good night.", " <sigh>"]) == ["Good night. <sigh>"]
    assert _stream(["<laugh>", " <sigh>"]) == ["<laugh> <sigh>"]
    assert _stream(["  ", "\u200b"]) == []


def test_a_long_run_without_a_sentence_end_is_cut_while_it_streams():
    splitter = SentenceSplitter(max_chunk_chars=50)
    released = [s for _ in range(40) for s in splitter.push("word ")]
    assert len(released) >= 3 and all(len(s) <= 50 for s in released)  # cut before the end
    rest = splitter.flush()
    assert " ".join(released + rest).split() == ["word"] * 40


def test_pieces_without_a_sentence_end_cost_no_pysbd_call(pysbd_calls):
    splitter = SentenceSplitter()
    for _ in range(50):  # 250 characters: under the cut size
        assert splitter.push("word ") == []
    assert pysbd_calls == []
    assert splitter.flush() == [("word " * 50).strip()] and len(pysbd_calls) == 1


def test_pysbd_calls_grow_with_sentences_not_with_tokens_and_see_bounded_text(pysbd_calls):
    text = " ".join(f"Sentence {i} has a few more words in it than most do." for i in range(60))
    text += " " + "and then it runs on without an end " * 30
    tokens = re.findall(r"\S+\s*", text)
    sentences = _stream(tokens)
    assert len(tokens) > 900 and len(sentences) > 60
    assert len(pysbd_calls) <= 2 * len(sentences)  # one per sentence end or cut, not one per token
    assert max(pysbd_calls) <= SPLIT_WINDOW_CHARS  # never the whole buffered text


def test_a_pathological_text_streams_in_bounded_pysbd_windows(pysbd_calls):
    sentences = _stream(["a) b) "] * 400)
    assert " ".join(sentences).split() == ("a) b) " * 400).split()
    assert max(pysbd_calls) <= SPLIT_WINDOW_CHARS
