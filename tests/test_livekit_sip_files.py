"""sip/*.json are valid LiveKit SIP API requests (as `lk sip ... create` reads them) naming the agent;
the phone path's configs (livekit-redis.yaml, sip/livekit-sip.yaml) agree with livekit.yaml and each other."""

from __future__ import annotations

from pathlib import Path

import yaml
from google.protobuf import json_format
from livekit.protocol import sip

SIP_DIR = Path(__file__).resolve().parents[1] / "sip"


def test_inbound_trunk_file_is_a_create_inbound_trunk_request():
    request = json_format.Parse((SIP_DIR / "inbound-trunk.json").read_text(), sip.CreateSIPInboundTrunkRequest())
    assert request.trunk.name and list(request.trunk.numbers)


def test_dispatch_rule_gives_each_caller_a_room_answered_by_the_orpheus_agent():
    request = json_format.Parse((SIP_DIR / "dispatch-rule.json").read_text(), sip.CreateSIPDispatchRuleRequest())
    rule = request.dispatch_rule
    assert rule.rule.WhichOneof("rule") == "dispatch_rule_individual"
    assert rule.rule.dispatch_rule_individual.room_prefix == "call-"
    assert [agent.agent_name for agent in rule.room_config.agents] == ["orpheus"]


ROOT = SIP_DIR.parent


def test_the_phone_livekit_config_is_livekit_yaml_plus_redis():
    plain = yaml.safe_load((ROOT / "livekit.yaml").read_text())
    with_redis = yaml.safe_load((ROOT / "livekit-redis.yaml").read_text())
    redis = with_redis.pop("redis")
    assert with_redis == plain  # the two files cannot drift apart
    assert redis["address"].startswith("127.0.0.1:")


def test_the_sip_bridge_config_shares_livekits_keys_and_redis_and_binds_loopback():
    livekit = yaml.safe_load((ROOT / "livekit-redis.yaml").read_text())
    bridge = yaml.safe_load((SIP_DIR / "livekit-sip.yaml").read_text())
    assert {bridge["api_key"]: bridge["api_secret"]} == livekit["keys"]
    assert bridge["redis"]["address"] == livekit["redis"]["address"]
    assert bridge["ws_url"] == f"ws://127.0.0.1:{livekit['port']}"
    assert bridge["listen_ip"] == bridge["nat_1_to_1_ip"] == "127.0.0.1" and bridge["use_external_ip"] is False


def test_the_inbound_trunk_admits_only_named_numbers_from_allowed_addresses():
    trunk = json_format.Parse((SIP_DIR / "inbound-trunk.json").read_text(), sip.CreateSIPInboundTrunkRequest()).trunk
    assert list(trunk.numbers) and (list(trunk.allowed_addresses) or trunk.auth_username)
