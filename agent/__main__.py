"""python -m agent serve | synth | make-test-model | phone | dev | start | console | connect"""

from __future__ import annotations

import os
import sys

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import CliApp, CliSubCommand, SettingsConfigDict

from tts_plugin.settings import invalid_settings

from .make_test_model import MakeTestModel
from .phone import PhoneSettings
from .server.config import ServerSettings
from .synth import SynthCommand

WORKER_COMMANDS = {"dev", "start", "console", "connect", "download-files"}


class AgentCommands(BaseModel):
    """
    Orpheus speech for real-time voice agents. Also: dev|start|console|connect, the LiveKit agent
    worker (livekit-agents' own command line; `python -m agent start --help`).
    """

    model_config = SettingsConfigDict(cli_prog_name="python -m agent", cli_kebab_case=True)

    serve: CliSubCommand[ServerSettings] = Field(description="TTS server: HTTP/WebSocket API, WebRTC listener, web page")
    synth: CliSubCommand[SynthCommand] = Field(description="text -> WAV file, prints latency and real-time factor")
    make_test_model: CliSubCommand[MakeTestModel] = Field(
        description="write the tiny random-weight Orpheus-layout model (tests)")
    phone: CliSubCommand[PhoneSettings] = Field(
        description="Redis, LiveKit with Redis, the SIP bridge, the trunk and its dispatch rule")


def parse(argv: list[str]) -> AgentCommands:
    """Flags over ORPHEUS_ variables over defaults; ``--help`` (of any command) lists every setting and exits."""
    return CliApp.run(AgentCommands, cli_args=argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # vLLM logs to stdout by default, where `synth` prints its JSON report: logs belong on stderr.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    # LiveKit's commands go to livekit-agents' CLI untouched: pydantic-settings would parse (and refuse) their flags.
    if argv and argv[0] in WORKER_COMMANDS:
        from .worker import main as worker

        return worker(argv)
    try:
        commands = parse(argv or ["--help"])
    except ValidationError as exc:
        print(f"error: {invalid_settings(exc)}", file=sys.stderr)
        return 2
    if commands.serve:
        from .server.main import serve

        return serve(commands.serve)
    if commands.synth:
        from .synth import synth

        return synth(commands.synth)
    if commands.make_test_model:
        from .make_test_model import make

        return make(commands.make_test_model)
    if commands.phone:
        from .phone import phone

        return phone(commands.phone)
    print("error: name a command (python -m agent --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
