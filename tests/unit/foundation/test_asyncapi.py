"""The committed AsyncAPI documents are the public bus contract: they must match the code."""

import yaml

from tools.asyncapi import OUT, SERVICES, render


def test_committed_documents_match_the_code() -> None:
    for service in SERVICES:
        committed = (OUT / f"{service}.yaml").read_text(encoding="utf-8")
        assert committed == render(service), f"run `make asyncapi` ({service} is stale)"


def test_inbound_sms_contract_is_documented_with_its_fields() -> None:
    doc = yaml.safe_load((OUT / "intake.yaml").read_text(encoding="utf-8"))
    channel = next(c for c in doc["channels"].values() if c["address"] == "lapor.inbound.sms")
    assert "BANJAR" in channel["description"]
    schema = doc["components"]["schemas"]["InboundSms"]
    assert set(schema["required"]) >= {"from", "text", "gateway_id", "received_at"}
