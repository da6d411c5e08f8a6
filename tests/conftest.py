"""Shared fixtures. One tiny model and one in-process engine per test session (2 cores only)."""

pytest_plugins = ["tests.fixtures.models", "tests.fixtures.engine", "tests.fixtures.server",
                  "tests.fixtures.livekit", "tests.fixtures.vllm_server",
                  "tests.fixtures.secured_server", "tests.fixtures.phone"]
