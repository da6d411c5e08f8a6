"""Names the plugin accepts, as Literal types (editors complete them; any str still works)."""

from __future__ import annotations

from typing import Literal

from .engine.profiles import ORPHEUS

# The default profile's voices (declared there, checked by the engine's VoiceCatalog); the server's
# profile decides what it accepts, so any str still goes through.
TTSVoices = Literal[ORPHEUS.voices]  # type: ignore[valid-type]

# Checkpoints with the Orpheus prompt layout; the model itself is chosen where the engine runs
# (the TTS server's ORPHEUS_MODEL, or the in-process engine's settings).
TTSModels = Literal[
    "canopylabs/orpheus-3b-0.1-ft",
    "canopylabs/orpheus-tts-0.1-finetune-prod",
]

# Emotion tags the finetune acts on; write them inline: "That's funny <laugh> really."
TTSTags = Literal["<laugh>", "<chuckle>", "<sigh>", "<cough>", "<sniffle>", "<groan>", "<yawn>", "<gasp>"]

DEFAULT_VOICE: TTSVoices = ORPHEUS.default_voice
