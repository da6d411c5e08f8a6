"""Prompt token layout for the Orpheus finetune."""

from tts_plugin.engine.profiles import ORPHEUS, get_profile
from tts_plugin.engine.prompt import PromptBuilder

import pytest


def test_prompt_is_built_as_ids_around_voice_prefixed_text(tiny_model_dir):
    builder = PromptBuilder.load(str(tiny_model_dir), ORPHEUS)
    ids = builder.build("Hello <laugh> there.", "leo")
    assert ids[0] == 128259 and ids[-4:] == [128009, 128260, 128261, 128257]
    assert builder.tokenizer.decode(ids[1:-4]) == "leo: Hello <laugh> there."


def test_unknown_voice_and_profile_are_rejected_with_the_known_names(tiny_model_dir):
    builder = PromptBuilder.load(str(tiny_model_dir), ORPHEUS)
    with pytest.raises(ValueError, match="tara"):
        builder.check_voice("nobody")
    with pytest.raises(ValueError, match="orpheus"):
        get_profile("veena-typo")
