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
