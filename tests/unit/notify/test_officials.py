"""Who among officials hears what, with which template, and what they may read."""

from datetime import UTC, datetime, timedelta

import pytest

from lapor.contracts import (
    DeadlineAlert,
    Deadlines,
    DeadlinesSet,
    EscalationLevel,
    EscalationRaised,
    InboundRejected,
    Priority,
    SlaClock,
    State,
)
from lapor.directory import Contact, Contacts, load_directory
from lapor.regions import load_regions
from services.notify import domain
from services.notify.catalog import SmsRenderer
from services.notify.templates import TemplateSet
from tests.contacts import sealed
from tools.devstack import ROOT

NOW = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
DIRECTORY = load_directory(ROOT / "data" / "regions" / "banjar")


def deadlines(**overrides: object) -> DeadlinesSet:
    fields: dict[str, object] = {
        "event_id": "deadlines:routed:BJR-1:0",
        "occurred_at": NOW,
        "complaint_id": "BJR-1",
        "region": "banjar",
        "agency": "PUPR",
        "priority": Priority.NORMAL,
        "state": State.ASSIGNED,
        "received_at": NOW,
        "deadlines": Deadlines(
            first_response=NOW + timedelta(days=7), answer=NOW + timedelta(days=14)
        ),
        "cause_event_id": "routed:BJR-1:0",
    }
    return DeadlinesSet.model_validate(fields | overrides)


def alert(kind: str = "warning", agency: str | None = "PUPR") -> DeadlineAlert:
    return DeadlineAlert(
        event_id=f"alert:BJR-1:answer:{kind}",
        occurred_at=NOW,
        complaint_id="BJR-1",
        region="banjar",
        agency=agency,
        priority=Priority.NORMAL,
        clock=SlaClock.ANSWER,
        kind=kind,  # type: ignore[arg-type]
        percent=80 if kind == "warning" else 100,
        due_at=NOW,
    )


def escalation(level: EscalationLevel) -> EscalationRaised:
    return EscalationRaised(
        event_id=f"escalation:BJR-1:answer:{level}",
        occurred_at=NOW,
        complaint_id="BJR-1",
        region="banjar",
        agency="PUPR",
        priority=Priority.NORMAL,
        clock=SlaClock.ANSWER,
        level=level,
        due_at=NOW,
        late_by_s=3600,
    )


FACTS = domain.ComplaintFacts(text="jalan  rusak\ndi desa", category_label="Jalan rusak")


@pytest.mark.parametrize(
    ("priority", "template", "levels"),
    [
        (Priority.NORMAL, "official_assignment", ("liaison",)),
        (Priority.HIGH, "official_assignment", ("liaison",)),
        (Priority.URGENT, "official_assignment_urgent", ("liaison", "head")),
    ],
)
def test_assignment_template_and_audience_follow_priority(
    priority: Priority, template: str, levels: tuple[str, ...]
) -> None:
    notice = domain.assignment_notice(deadlines(priority=priority), "Dinas PUPR", FACTS)
    assert notice is not None
    assert (notice.template, notice.levels, notice.agency) == (template, levels, "PUPR")
    assert notice.values["complaint_text"] == "jalan rusak di desa"
    assert notice.cause_event_id == "deadlines:routed:BJR-1:0"


@pytest.mark.parametrize(
    "overrides",
    [{"state": State.TRIAGE, "agency": None}, {"agency": "OUT_OF_SCOPE"}],
)
def test_no_assignment_notice_without_an_agency(overrides: dict[str, object]) -> None:
    assert domain.assignment_notice(deadlines(**overrides), "-", FACTS) is None


def test_alert_and_breach_templates() -> None:
    warning = domain.alert_notice(alert("warning"), "Dinas PUPR", "DISKOMINFO")
    breach = domain.alert_notice(alert("breach"), "Dinas PUPR", "DISKOMINFO")
    assert (warning.template, warning.values["percent"]) == ("official_warning", "80")
    assert breach.template == "official_breach"
    assert "percent" not in breach.values
    assert warning.values["clock_label"] == "jawaban akhir"


def test_alerts_before_assignment_go_to_the_administrator() -> None:
    notice = domain.alert_notice(alert(agency=None), "Diskominfo", "DISKOMINFO")
    assert notice.agency == "DISKOMINFO"


def test_escalation_goes_to_its_level_only() -> None:
    notice = domain.escalation_notice(escalation(EscalationLevel.SEKDA), "PUPR", "DISKOMINFO")
    assert notice.levels == ("sekda",)
    assert notice.values["level_label"] == "Sekretaris Daerah"
    found = domain.recipients(DIRECTORY.agency("PUPR").contacts, notice.levels, "PUPR")
    assert [r.address for r in found] == ["sekda@banjarkab.go.id"]


def test_recipients_cover_email_and_webhook_each_once() -> None:
    shared = Contact(name="Admin", email="Admin@x.go.id", webhook="https://x.go.id/hook")
    contacts = Contacts(
        liaison=(shared, Contact(email="admin@x.go.id")),
        head=(Contact(name="Kepala", email="kepala@x.go.id", phone="+62811"),),
    )
    found = domain.recipients(contacts, ("liaison", "head"), "X")
    assert [(r.kind, r.address, r.level) for r in found] == [
        ("email", "Admin@x.go.id", "liaison"),
        ("webhook", "https://x.go.id/hook", "liaison"),
        ("email", "kepala@x.go.id", "head"),
    ]
    assert found[0].key == "email:admin@x.go.id"


def test_a_level_reachable_only_by_phone_is_reported() -> None:
    contacts = Contacts(liaison=(Contact(email="a@x.go.id"),), head=(Contact(phone="+62811"),))
    assert domain.unreachable_levels(contacts, ("liaison", "head", "sekda")) == ["head", "sekda"]


def test_confidential_complaints_stay_inside_the_agency_and_admin_circle() -> None:
    for level in ("liaison", "head", "sekda"):
        assert domain.withheld_reason(level, confidential=True) is None  # type: ignore[arg-type]
    assert domain.withheld_reason("ombudsman", confidential=True)
    assert domain.withheld_reason("ombudsman", confidential=False) is None


def test_anonymous_reporters_number_is_masked_in_the_text_agencies_read() -> None:
    text = "jalan rusak, hubungi saya 081234567890 atau +62 812-3456-7890"
    anonymous = domain.shareable_text(domain.ComplaintFacts(text=text, anonymous=True))
    assert "081234567890" not in anonymous and "3456-7890" not in anonymous
    assert domain.shareable_text(domain.ComplaintFacts(text=text)) == text


def test_official_notices_render_in_local_time_and_never_name_the_reporter() -> None:
    regions = load_regions(ROOT / "data")
    renderer = SmsRenderer(TemplateSet.load(), regions)
    facts = domain.ComplaintFacts(text="jalan rusak", anonymous=True, category_label="Jalan")
    notice = domain.assignment_notice(deadlines(priority=Priority.URGENT), "Dinas PUPR", facts)
    assert notice is not None
    rendered = renderer.render_official(notice.template, notice.values, "banjar")
    assert rendered.subject.startswith("[MENDESAK][LAPOR BJR-1]")
    assert "30 November 2026 pukul 09.00 WITA" in rendered.body  # 01:00 UTC
    assert "Prioritas         : MENDESAK" in rendered.body
    for template, values in [
        ("official_warning", domain.alert_notice(alert(), "PUPR", "DISKOMINFO").values),
        ("official_breach", domain.alert_notice(alert("breach"), "PUPR", "DISKOMINFO").values),
    ]:
        assert renderer.render_official(template, values, "banjar").body


def test_a_duplicate_text_is_answered_with_the_existing_tracking_id() -> None:
    rejected = InboundRejected.model_validate(
        {
            "event_id": "rejected:1",
            "occurred_at": NOW,
            "rejection_id": "R1",
            "channel": "sms",
            "reason": "duplicate",
            "reply_to_sealed": sealed("rejected:1", "reply_to_sealed", "+6281234567890"),
            "complaint_id": "BJR-7",
        }
    )
    message = domain.rejection_reply(rejected)
    assert (message.template, message.values) == ("ack_duplicate", {"tracking_id": "BJR-7"})
