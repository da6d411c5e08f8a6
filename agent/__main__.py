"""python -m agent serve | synth | make-test-model | phone | dev | start | console | connect"""

from __future__ import annotations

import os
import sys

WORKER_COMMANDS = {"dev", "start", "console", "connect", "download-files"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else "--help"
    # vLLM logs to stdout by default, where `synth` prints its JSON report: logs belong on stderr.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if command == "serve":
        from .server.main import main as serve

        return serve(argv[1:])
    if command == "synth":
        from .synth import main as synth

        return synth(argv[1:])
    if command == "make-test-model":
        from .make_test_model import main as make_test_model

        return make_test_model(argv[1:])
    if command == "phone":
        from .phone import main as phone

        return phone(argv[1:])
    if command in WORKER_COMMANDS:
        from .worker import main as worker

        return worker(argv)
    print(__doc__.strip() + "\n\n"
          "  serve            TTS server: HTTP/WebSocket API, WebRTC listener, web page\n"
          "  synth            text -> WAV file, prints latency and real-time factor\n"
          "  make-test-model  write the tiny random-weight Orpheus-layout model (tests)\n"
          "  phone            Redis, LiveKit with Redis, the SIP bridge, the trunk and its dispatch rule\n"
          "  dev|start|console|connect  LiveKit agent worker (livekit-agents CLI)",
          file=sys.stderr)
    return 0 if command in {"-h", "--help"} else 2


if __name__ == "__main__":
    sys.exit(main())
