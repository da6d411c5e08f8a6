"""Shared fixtures. One tiny model and one in-process engine per test session (2 cores only).

Every test gets one tier marker, from the heaviest thing it needs (its fixtures, or the module's own
``pytestmark`` where it starts processes itself), so a marker cannot drift from the test:
``pytest -m unit`` runs in seconds; then engine, server, livekit, browser, phone, scaleout (several
replicas behind a balancer).
"""

import pytest

pytest_plugins = ["tests.fixtures.models", "tests.fixtures.engine", "tests.fixtures.server",
                  "tests.fixtures.livekit", "tests.fixtures.vllm_server",
                  "tests.fixtures.secured_server", "tests.fixtures.phone",
                  "tests.fixtures.livekit_cluster", "tests.fixtures.tts_cluster"]

TIERS = ("unit", "engine", "server", "livekit", "browser", "phone", "scaleout")
FIXTURE_TIERS = {  # heaviest first
    "scaleout": {"tts_cluster", "livekit_cluster", "cluster_tts_url"},
    "phone": {"redis_server", "livekit_phone_server", "sip_bridge", "phone_line", "phone_agent_worker", "sip_phone"},
    "livekit": {"livekit_server", "agent_worker"},
    "server": {"tts_server", "secured_server"},
    "engine": {"engine", "vllm_server", "snac_codec"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(tier) for tier in TIERS):
            continue
        needs = set(getattr(item, "fixturenames", ()))
        tier = next((t for t, fixtures in FIXTURE_TIERS.items() if needs & fixtures), "unit")
        item.add_marker(tier)
