"""Text normalisation, validation, sentence splitting with tags, audio budget."""

import pytest

from tts_plugin.engine.text import TextError, audio_token_budget, normalize, split_sentences, validate


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
