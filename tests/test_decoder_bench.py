"""Smoke test: the decoder benchmark runs at tiny sizes and prints the agreed JSON keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"compute_ratio", "snr_db", "baseline_snr_db", "early_snr_db", "realtime_streams",
        "baseline_realtime_streams", "first_audio_tokens", "first_audio_ms", "cpu_ms_per_audio_s",
        "realtime_streams_all_cores", "baseline_realtime_streams_all_cores"}


def test_decoder_bench_quick_prints_one_json_object():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "decoder.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert KEYS <= report.keys()
    assert report["first_audio_tokens"] <= 14
    assert report["snr_db"] >= 60
