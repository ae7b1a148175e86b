"""What notify says when the citizen withdraws, replies or reopens: to the citizen and
to the agency holding the complaint."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lapor.contracts import (
    CitizenCommandAnswered,
    ComplaintStateChanged,
    Deadlines,
    DeadlinesSet,
    Priority,
    State,
)
from lapor.regions import load_regions
from services.notify import domain
from services.notify.catalog import SmsRenderer
from services.notify.templates import TemplateSet
from tools.devstack import ROOT

NOW = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
ID = "LPR-2611-7K3M9QX2"
RENDERER = SmsRenderer(TemplateSet.load(), load_regions(ROOT / "data"))


def changed(**fields: Any) -> ComplaintStateChanged:
    base: dict[str, Any] = {
        "event_id": "state:command:c1",
        "occurred_at": NOW,
        "complaint_id": ID,
        "region": "banjar",
        "state": State.IN_PROGRESS,
        "previous_state": State.NEEDS_INFO,
        "actor": "citizen:sms:abc",
        "reason": "citizen added information",
        "agency": "PUPR",
        "action": "reply",
        "message": "RT 05, hubungi 081234567890",
        "officer": "budi",
        "cause_event_id": "command:c1",
    }
    return ComplaintStateChanged.model_validate(base | fields)


@pytest.mark.parametrize(
    ("action", "state", "label"),
    [
        ("reply", State.IN_PROGRESS, "menjawab pertanyaan instansi"),
        ("reopen", State.IN_PROGRESS, "membuka kembali laporan"),
        ("withdraw", State.CLOSED, "mencabut laporan"),
    ],
)
def test_the_holding_agency_hears_what_the_citizen_did(
    action: str, state: State, label: str
) -> None:
    notice = domain.citizen_action_notice(
        changed(action=action, state=state), "Dinas PUPR", domain.ComplaintFacts(), "DISKOMINFO"
    )
    assert notice is not None
    assert (notice.template, notice.agency, notice.levels) == (
        "official_citizen_action",
        "PUPR",
        ("liaison",),
    )
    rendered = RENDERER.render_official(notice.template, notice.values, "banjar")
    assert label in rendered.subject and "Petugas: budi." in rendered.body
    assert "RT 05" in rendered.body


def test_an_anonymous_reporters_number_is_masked_and_triage_goes_to_diskominfo() -> None:
    facts = domain.ComplaintFacts(anonymous=True)
    notice = domain.citizen_action_notice(
        changed(agency=None, officer=None, action="withdraw", state=State.CLOSED),
        "Diskominfo",
        facts,
        "DISKOMINFO",
    )
    assert notice is not None and notice.agency == "DISKOMINFO"
    body = RENDERER.render_official(notice.template, notice.values, "banjar").body
    assert "081234567890" not in body and "belum ditunjuk" in body


@pytest.mark.parametrize("action", [None, "acknowledge", "answer", "rate"])
def test_other_changes_are_not_the_citizens_news(action: str | None) -> None:
    assert (
        domain.citizen_action_notice(
            changed(action=action), "Dinas PUPR", domain.ComplaintFacts(), "DISKOMINFO"
        )
        is None
    )


def answered(**fields: Any) -> CitizenCommandAnswered:
    base: dict[str, Any] = {
        "event_id": "command:sms:gw-1",
        "occurred_at": NOW,
        "command": "withdraw",
        "found": True,
        "tracking_id": ID,
        "region": "banjar",
        "state": State.CLOSED,
    }
    return CitizenCommandAnswered.model_validate(base | fields)


def test_batal_is_confirmed_or_refused_in_the_citizens_terms() -> None:
    done = domain.command_reply(answered(), "Dinas PUPR")
    assert done.template == "withdrawn"
    assert "telah dicabut" in RENDERER.render_sms(done.template, done.values, "banjar")
    refused = domain.command_reply(answered(refused="cannot withdraw a closed one"), "-")
    text = RENDERER.render_sms(refused.template, refused.values, "banjar")
    assert "tidak dapat dicabut" in text and "Selesai" in text and "cannot" not in text
    assert domain.command_reply(answered(found=False), "-").template == "status_not_found"


def test_a_withdrawal_sends_no_closing_sms_of_its_own() -> None:
    event = changed(state=State.CLOSED, outcome="withdrawn", action="withdraw")
    assert domain.lifecycle_message(event, "Dinas PUPR", "10 hari kerja") is None


def test_a_reopening_tells_the_citizen_the_new_answer_date() -> None:
    event = DeadlinesSet(
        event_id="deadlines:state:command:reopen",
        occurred_at=NOW,
        complaint_id=ID,
        region="banjar",
        agency="PUPR",
        priority=Priority.NORMAL,
        state=State.IN_PROGRESS,
        received_at=NOW - timedelta(days=20),
        deadlines=Deadlines(answer=NOW + timedelta(days=7)),
        cause_event_id="state:command:reopen",
        answer_round=1,
        reopened=True,
    )
    message = domain.acknowledgement(event, "Dinas PUPR", acknowledged_answer=NOW)
    assert message.template == "reopen_deadline"
    text = RENDERER.render_sms(message.template, message.values, "banjar")
    assert "wajib menjawab lagi" in text and "7 Desember 2026" in text
