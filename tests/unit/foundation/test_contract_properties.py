"""Properties of the inbound payload models for arbitrary input from outside channels.

A gateway, a partner system or an agency client may publish anything on
`lapor.inbound.*` and `lapor.command.*`: parsing either yields a model or raises
`ValidationError` (which the broker turns into a kept dead letter), never another
exception; and what a model writes it reads back unchanged.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from lapor.contracts import InboundSms, InboundWeb
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Outcome, Role

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS: tuple[type[BaseModel], ...] = (InboundSms, InboundWeb, ComplaintCommand)
FIELDS = sorted(
    {"from", *(name for model in MODELS for name in model.model_fields)}
    | {"role", "id", "lat", "lon", "address"}
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["2026-11-28T09:15:00+08:00", "2026-11-28T09:15:00", "+6281234567890"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# Objects that mostly use the models' own field names, with any value in them.
payloads = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=len(FIELDS)
)
offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
moments = st.datetimes(timezones=st.just(UTC) | offsets)
short = st.text(min_size=1, max_size=32)


def only_validation_errors(model: type[BaseModel], raw: str | bytes) -> None:
    try:
        model.model_validate_json(raw)
    except ValidationError:
        pass


@SETTINGS
@given(payload=payloads)
def test_any_json_object_is_a_model_or_a_validation_error(payload: dict[str, Any]) -> None:
    raw = json.dumps(payload)
    for model in MODELS:
        only_validation_errors(model, raw)


@SETTINGS
@given(raw=st.binary(max_size=200) | json_values.map(json.dumps))
def test_any_bytes_are_a_model_or_a_validation_error(raw: bytes | str) -> None:
    for model in MODELS:
        only_validation_errors(model, raw)


sms = st.builds(
    InboundSms,
    sender=st.text(min_size=3, max_size=32),
    to=st.text(max_size=32),
    text=st.text(max_size=500),
    gateway_id=st.text(min_size=1, max_size=128),
    received_at=moments,
)
location = st.none() | st.fixed_dictionaries(
    {
        "lat": st.none() | st.floats(min_value=-90, max_value=90),
        "lon": st.none() | st.floats(min_value=-180, max_value=180),
        "address": st.none() | st.text(max_size=300),
    }
)
web = st.builds(
    InboundWeb,
    source=st.text(min_size=1, max_size=64),
    message_id=st.text(min_size=1, max_size=128),
    region=st.from_regex(r"[a-z0-9_-]{1,16}", fullmatch=True),
    text=st.text(min_size=1, max_size=500),
    name=st.none() | st.text(max_size=120),
    phone=st.none() | st.text(max_size=32),
    email=st.none() | st.text(max_size=254),
    category=st.none() | st.text(max_size=64),
    location=location,
    anonymous=st.booleans(),
    confidential=st.booleans(),
    received_at=moments,
)
commands = st.builds(
    ComplaintCommand,
    command_id=st.text(min_size=1, max_size=128),
    complaint_id=st.text(min_size=4, max_size=32),
    action=st.sampled_from(Action),
    actor=st.builds(
        Actor,
        role=st.sampled_from(Role),
        id=st.text(min_size=1, max_size=64),
        agency=st.none() | short,
    ),
    text=st.none() | st.text(max_size=400),
    outcome=st.none() | st.sampled_from(Outcome),
    agency=st.none() | short,
    duplicate_of=st.none() | short,
    score=st.none() | st.integers(min_value=1, max_value=5),
)


@SETTINGS
@given(model=st.one_of(sms, web, commands))
def test_what_a_model_writes_it_reads_back(model: BaseModel) -> None:
    kind = type(model)
    again = kind.model_validate_json(model.model_dump_json(by_alias=True))
    assert again == model
    received = getattr(model, "received_at", None)
    if received is not None:  # the instant and its offset survive, not only the instant
        assert again.received_at.utcoffset() == received.utcoffset()  # type: ignore[attr-defined]
