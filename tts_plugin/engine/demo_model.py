"""The demo model: a tiny random-weight LM with the exact Orpheus token layout.

The server falls back to it on a first run without the real weights (``model_source``); tests and
benchmarks run on it. Llama architecture, vocab 156940, tied embeddings, hidden 64, 2 layers; a
byte-level BPE tokenizer built here (no download) whose ids 128000.. are Llama 3's special tokens,
with BOS added the way Llama 3's post-processor adds it, and 128256 + N is ``<custom_token_N>``.
Its audio is noise: use it to measure correctness and speed, never as speech.
"""

from __future__ import annotations

from pathlib import Path

from .profiles import CUSTOM_TOKEN_BASE, START_OF_TEXT, VOCAB_SIZE

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello there, how are you doing today? I am fine, thank you!",
    "tara: leah: jess: leo: dan: mia: zac: zoe:",
    "Real-time speech for voice agents, streamed sentence by sentence.",
    "Numbers like 1, 2, 3 and 42; punctuation: commas, colons; quotes \"like this\".",
] * 20
_LLAMA3_SPECIALS = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 9: "<|eot_id|>"}
DEMO_MARKER = "orpheus-rtc-demo.txt"  # in the model directory: its weights are random, its audio noise


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    learner.train_from_iterator(_CORPUS, trainer)
    vocab = learner.get_vocab()
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in _merges_of(learner)]
    # Pad the regular vocabulary to 128000 entries with unreachable fillers so that the special
    # tokens land on Llama 3's ids.
    for i in range(len(vocab), START_OF_TEXT):
        vocab[f"<|filler_{i}|>"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [_LLAMA3_SPECIALS.get(i, f"<|reserved_special_token_{i}|>") for i in range(CUSTOM_TOKEN_BASE - START_OF_TEXT)]
    specials += [f"<custom_token_{n}>" for n in range(VOCAB_SIZE - CUSTOM_TOKEN_BASE)]
    tok.add_special_tokens(specials)
    # Like Llama 3's tokenizer.json: encoding with special tokens on puts BOS first.
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                                       special_tokens=[("<|begin_of_text|>", START_OF_TEXT)])
    assert tok.token_to_id("<|eot_id|>") == 128009 and tok.token_to_id("<custom_token_1>") == 128257
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                   eos_token="<|eot_id|>", pad_token="<custom_token_7>")


def _merges_of(tokenizer) -> list:
    import json

    return json.loads(tokenizer.to_str())["model"]["merges"]


def make_test_model(out_dir: str | Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
        tie_word_embeddings=True, bos_token_id=START_OF_TEXT, eos_token_id=128009,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    (out / "README.md").write_text("Tiny random-weight Orpheus-layout model for tests. Its audio is noise.\n")
    (out / DEMO_MARKER).write_text("orpheus-rtc demo model: random weights, its audio is noise, not speech.\n")
    return out
