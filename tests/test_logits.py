"""The slot-constraint logits processor, driven the way vLLM's persistent batch drives it."""

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate

from tts_plugin.engine.frames import token_to_code
from tts_plugin.engine.logits import SLOT_CONSTRAINT_ARG, SlotConstraint
from tts_plugin.engine.profiles import END_OF_SPEECH, VOCAB_SIZE


def test_each_row_may_only_emit_its_slot_codes_and_stop_on_frame_boundaries():
    proc = SlotConstraint(None, torch.device("cpu"), False)
    opted = SamplingParams(extra_args={SLOT_CONSTRAINT_ARG: True})
    plain = SamplingParams()
    outputs = [[], [1] * 3, [1] * 7]  # slots 0, 3, 0 (opted in), plus a row that did not opt in
    added = [(i, opted, None, out) for i, out in enumerate(outputs)] + [(3, plain, None, [])]
    proc.update_state(BatchUpdate(batch_size=4, removed=[], added=added, moved=[]))
    logits = proc.apply(torch.zeros(4, VOCAB_SIZE))
    for row, slot in [(0, 0), (1, 3), (2, 0)]:
        allowed = torch.isfinite(logits[row]).nonzero().flatten().tolist()
        codes = [token_to_code(t, slot) for t in allowed if t != END_OF_SPEECH]
        assert len(codes) == 4096 and None not in codes
        assert (END_OF_SPEECH in allowed) == (slot == 0)
    assert torch.isfinite(logits[3]).all()  # untouched


def test_removed_rows_are_no_longer_constrained():
    proc = SlotConstraint(None, torch.device("cpu"), False)
    opted = SamplingParams(extra_args={SLOT_CONSTRAINT_ARG: True})
    proc.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, opted, None, [])], moved=[]))
    proc.update_state(BatchUpdate(batch_size=0, removed=[0], added=[], moved=[]))
    assert torch.isfinite(proc.apply(torch.zeros(1, VOCAB_SIZE))).all()


def test_requests_opt_in_only_when_the_constraint_is_switched_on():
    from tts_plugin.engine.generator import SamplingOptions, TokenGenerator

    options = SamplingOptions(temperature=0.6, top_p=0.9, repetition_penalty=1.1, max_tokens=70)
    assert TokenGenerator(None, constrain_tokens=True).sampling_params(options).extra_args == {SLOT_CONSTRAINT_ARG: True}
    assert not TokenGenerator(None, constrain_tokens=False).sampling_params(options).extra_args
