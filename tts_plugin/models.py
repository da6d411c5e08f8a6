"""Names the plugin accepts, as Literal types (editors complete them; any str still works)."""

from __future__ import annotations

from typing import Literal

# Voices of the English Orpheus finetune (REFERENCE §1). Other profiles may know other names.
TTSVoices = Literal["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]

# Checkpoints with the Orpheus prompt layout; the model itself is chosen where the engine runs
# (the TTS server's ORPHEUS_MODEL, or the in-process engine's settings).
TTSModels = Literal[
    "canopylabs/orpheus-3b-0.1-ft",
    "canopylabs/orpheus-tts-0.1-finetune-prod",
]

# Emotion tags the finetune acts on; write them inline: "That's funny <laugh> really."
TTSTags = Literal["<laugh>", "<chuckle>", "<sigh>", "<cough>", "<sniffle>", "<groan>", "<yawn>", "<gasp>"]

DEFAULT_VOICE: TTSVoices = "tara"
