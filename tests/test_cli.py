"""The command line: make-test-model and synth, run as a user would."""

import json
import subprocess
import sys

import pytest
import soundfile

from tests.fixtures.models import ROOT

pytestmark = pytest.mark.engine


def run_agent(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_make_test_model_writes_a_model_transformers_loads_offline(tmp_path):
    result = run_agent("make-test-model", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tmp_path / "m", local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m", local_files_only=True)
    assert config.vocab_size == 156940 and config.tie_word_embeddings
    assert tokenizer.convert_tokens_to_ids(["<|eot_id|>", "<custom_token_2>"]) == [128009, 128258]


def test_synth_reads_stdin_writes_24khz_mono_16bit_wav_and_prints_only_its_report(tiny_model_dir, tmp_path):
    out = tmp_path / "out.wav"
    result = run_agent("synth", "--out", str(out), "--voice", "zoe", "--model", str(tiny_model_dir),
                       "--snac-model", "random", "--kv-cache-gib", "0.25", "--max-model-len", "2048",
                       "--max-tokens", "70", "--top-p", "1.0", "--temperature", "0",  # greedy: exact length
                       stdin="Hello from standard input.")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)  # vLLM's own logs go to stderr, not into the report
    info = soundfile.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert info.frames == report["frames"] * 2048 == 10 * 2048
    assert report["ttfb_ms"] > 0 and report["audio_s"] > 0 and report["rtf"] > 0


def test_synth_refuses_bad_input_before_loading_anything(tmp_path):
    result = run_agent("synth", "--out", str(tmp_path / "x.wav"), "--text", "   ")
    assert result.returncode == 2 and "input is empty" in result.stderr
    result = run_agent("synth", "--out", str(tmp_path / "x.wav"), "--text", "Hi.", "--voice", "bob")
    assert result.returncode == 2 and "unknown voice" in result.stderr
