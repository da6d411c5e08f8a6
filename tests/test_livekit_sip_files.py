"""sip/*.json are valid LiveKit SIP API requests (as `lk sip ... create` reads them) naming the agent."""

from __future__ import annotations

from pathlib import Path

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
