"""deploy/livekit-node-b.yaml, the second LiveKit node of the scale-out tests, is livekit-redis.yaml
(node A) with its own ports and nothing else, so the two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def ports_of(config: dict) -> tuple[int, int, int]:
    """Remove and return (signalling, ICE/TCP, ICE/UDP)."""
    return config.pop("port"), config["rtc"].pop("tcp_port"), config["rtc"].pop("udp_port")


def test_node_b_is_the_redis_node_config_on_ports_of_its_own():
    node_a = yaml.safe_load((ROOT / "livekit-redis.yaml").read_text())
    node_b = yaml.safe_load((ROOT / "deploy" / "livekit-node-b.yaml").read_text())
    ports_a, ports_b = ports_of(node_a), ports_of(node_b)
    assert not set(ports_a) & set(ports_b)  # both fit on one host
    assert node_b == node_a  # same keys, Redis, node_ip, loopback binding, room settings
    assert node_b["redis"]["address"] and node_b["rtc"]["node_ip"] == "127.0.0.1"
