"""vLLM V1 logits processor: every generated token stays inside its SNAC slot's code range.

Token k of a request (k = number of tokens generated so far) must be an audio token of slot
k mod 7; end-of-speech is allowed only on a frame boundary, so every frame is whole. Requests opt
in with ``SamplingParams(extra_args={SLOT_CONSTRAINT_ARG: True})``. The engine may run in a spawned
process, so this module is imported there by name (``tts_plugin.engine.logits:SlotConstraint``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from .profiles import AUDIO_TOKEN_BASE, CODEBOOK_SIZE, END_OF_SPEECH, FRAME_TOKENS

SLOT_CONSTRAINT_ARG = "orpheus_slot_constraint"
QUALNAME = "tts_plugin.engine.logits:SlotConstraint"


def slot_masks(vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(7, vocab) bool: which tokens each slot may emit."""
    allowed = torch.zeros(FRAME_TOKENS, vocab_size, dtype=torch.bool, device=device)
    for slot in range(FRAME_TOKENS):
        start = AUDIO_TOKEN_BASE + CODEBOOK_SIZE * slot
        allowed[slot, start:start + CODEBOOK_SIZE] = True
    allowed[0, END_OF_SPEECH] = True
    return allowed


class SlotConstraint(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.device = device
        self.outputs: dict[int, Sequence[int]] = {}  # batch row -> live list of output token ids
        self.allowed: torch.Tensor | None = None

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        def opted_in(params, _prompt_ids, output_ids):
            extra = params.extra_args or {}
            return output_ids if extra.get(SLOT_CONSTRAINT_ARG) else None

        process_dict_updates(self.outputs, batch_update, opted_in)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.outputs:
            return logits
        if self.allowed is None or self.allowed.shape[1] != logits.shape[1]:
            self.allowed = slot_masks(logits.shape[1], logits.device)
        rows = torch.tensor(list(self.outputs), dtype=torch.long, device=logits.device)
        slots = torch.tensor([len(out) % FRAME_TOKENS for out in self.outputs.values()],
                             dtype=torch.long, device=logits.device)
        logits[rows] = logits[rows].masked_fill(~self.allowed[slots], float("-inf"))
        return logits
