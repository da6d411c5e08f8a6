"""The wire protocol (tts_plugin/protocol.py) is the one vocabulary of server and plugin: every error
code the server sends is in its table, and the plugin turns each into the LiveKit exception it means."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from livekit.agents import APIConnectionError, APIStatusError

from tts_plugin.backends.remote import server_error
from tts_plugin.engine.engine import SpeechMetrics
from tts_plugin.protocol import SAMPLE_RATE, ErrorCode, metrics_payload

SERVER = Path(__file__).resolve().parents[1] / "agent" / "server"

# What a client must make of each code, written out rather than derived from the table, so a wrong
# entry there fails here: (exception, HTTP status, retryable). A new code needs a line here too.
EXPECTED = {
    "bad_request": (APIStatusError, 400, False),
    "invalid_request": (APIStatusError, 400, False),
    "bad_json": (APIStatusError, 400, False),
    "unknown_type": (APIStatusError, 400, False),
    "bad_offer": (APIStatusError, 400, False),
    "invalid_api_key": (APIStatusError, 401, False),
    "origin_not_allowed": (APIStatusError, 403, False),
    "room_not_allowed": (APIStatusError, 403, False),
    "unknown_segment": (APIStatusError, 404, False),
    "closing": (APIStatusError, 409, False),
    "too_large": (APIStatusError, 413, False),
    "slow_consumer": (APIConnectionError, None, True),
    "busy": (APIStatusError, 429, True),
    "too_many_segments": (APIStatusError, 429, True),
    "rate_limited": (APIStatusError, 429, True),
    "internal_error": (APIStatusError, 500, True),
    "engine_error": (APIStatusError, 500, True),
    "not_ready": (APIStatusError, 503, True),
    "draining": (APIStatusError, 503, True),
    "shutting_down": (APIStatusError, 503, True),
    "engine_failed": (APIStatusError, 503, True),
    "vllm_unreachable": (APIStatusError, 503, True),
}

# Where the server's code names an error code: the position of the code among these calls' arguments
# (and any ``code=`` keyword, any ``"code":`` dict entry). A snake_case literal there is a stray code.
CODE_ARGUMENT = {"ApiError": 0, "ClientError": 0, "send_error": 0, "_error": 0, "_error_message": 0, "_refuse": 2,
                 "error": 1}  # metrics.error(transport, code)
CODE_SHAPE = re.compile(r"^[a-z]+(?:_[a-z0-9]+)*$")


def test_every_code_in_the_table_has_an_expected_client_meaning():
    assert set(EXPECTED) == {code.value for code in ErrorCode}


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_server_error_code_becomes_the_right_livekit_exception(code):
    exception, status, retryable = EXPECTED[code]
    error = server_error({"type": "error", "segment_id": "s1", "code": code.value, "message": "why"})
    assert type(error) is exception
    assert error.retryable is retryable is code.retryable  # livekit-agents' own 4xx rule agrees with the table
    assert "why" in error.message and code.value in error.message
    if exception is APIStatusError:
        assert error.status_code == status == code.status and error.body["code"] == code.value


def test_a_code_the_plugin_does_not_know_is_a_retryable_server_error():
    error = server_error({"type": "error", "code": "from_a_newer_server", "message": "?"})
    assert isinstance(error, APIStatusError) and error.status_code == 500 and error.retryable


def _server_sources() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(SERVER.rglob("*.py"))}


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef
                                                                  | ast.ClassDef))]
    return {id(n.body[0].value) for n in nodes if n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _code_literals(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, literal) of error codes written out instead of named by an ``ErrorCode`` member."""
    codes = {code.value for code in ErrorCode}
    docstrings = _docstrings(tree)
    candidates = []  # expressions standing where a code goes
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and node.value in codes:
            candidates.append(node)  # a known code spelled out, wherever it is
        elif isinstance(node, ast.Call):
            candidates += [k.value for k in node.keywords if k.arg == "code"]
            position = CODE_ARGUMENT.get(_call_name(node))
            if position is not None and len(node.args) > position:
                candidates.append(node.args[position])
        elif isinstance(node, ast.Dict):
            candidates += [v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and k.value == "code"]
    return sorted({(c.lineno, ast.unparse(c).strip("'\"")) for c in candidates if isinstance(c, ast.JoinedStr)
                   or (isinstance(c, ast.Constant) and isinstance(c.value, str) and CODE_SHAPE.match(c.value))})


def test_the_server_writes_no_error_code_outside_the_protocol_table():
    stray = {f"{path.relative_to(SERVER.parents[1])}:{line}": literal
             for path, tree in _server_sources().items() for line, literal in _code_literals(tree)}
    assert stray == {}, "error codes belong in tts_plugin.protocol.ErrorCode"


def test_the_scan_finds_a_code_written_as_a_literal():
    planted = ast.parse('raise ClientError("made_up_code", "why")\n'
                        'send({"type": "error", "code": "busy"})\n'
                        'raise ApiError(ErrorCode.BUSY, "why", status=503)\n'
                        'self.state.metrics.error("ws", "some_code")\n')
    assert _code_literals(planted) == [(1, "made_up_code"), (2, "busy"), (4, "some_code")]


def test_every_code_in_the_table_is_one_the_server_sends():
    used = {node.attr for tree in _server_sources().values() for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ErrorCode"}
    assert used == {code.name for code in ErrorCode}


def test_metrics_payload_reports_a_finished_stream_in_milliseconds_and_seconds():
    m = SpeechMetrics(request_id="r1", started_at=10.0, first_audio_at=10.25, finished_at=12.0,
                      audio_samples=SAMPLE_RATE * 4, tokens=330, sentences=2, prompt_tokens=40, invalid_tokens=1)
    assert metrics_payload(m) == {"ttfb_ms": 250.0, "audio_s": 4.0, "elapsed_s": 2.0, "rtf": 0.5, "tokens": 330,
                                  "prompt_tokens": 40, "sentences": 2, "invalid_tokens": 1}
    silent = metrics_payload(SpeechMetrics(request_id="r2", started_at=1.0, finished_at=1.5))
    assert silent["ttfb_ms"] is None and silent["rtf"] is None and silent["audio_s"] == 0


def test_segment_metrics_add_up_the_streams_spoken_in_it():
    segment = SpeechMetrics(request_id="seg", started_at=0.0)
    for first_audio, samples in ((0.5, 2048), (3.0, 4096)):
        segment.add(SpeechMetrics(request_id="part", first_audio_at=first_audio, audio_samples=samples,
                                  tokens=7, sentences=1, prompt_tokens=5))
    assert (segment.first_audio_at, segment.audio_samples, segment.tokens, segment.sentences,
            segment.prompt_tokens) == (0.5, 6144, 14, 2, 10)
