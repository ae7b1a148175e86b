from datetime import UTC, datetime

from lapor.contracts import CitizenCommandAnswered, State
from services.notify.domain import command_reply
from services.notify.templates import DEFAULT_TEMPLATE_PATH, TemplateSet

ID = "LPR-2611-7K3M9QX2"


def answered(**fields: object) -> CitizenCommandAnswered:
    base: dict[str, object] = {
        "event_id": "command:sms:gw-1",
        "occurred_at": datetime(2026, 11, 28, 3, 0, tzinfo=UTC),
        "command": "reopen",
        "found": True,
        "tracking_id": ID,
        "region": "banjar",
    }
    return CitizenCommandAnswered.model_validate(base | fields)


def test_reopened_names_the_agency_that_gets_it_again() -> None:
    message = command_reply(answered(state=State.IN_PROGRESS), "Dinas PUPR")
    assert message.template == "reopened"
    text = TemplateSet.load(DEFAULT_TEMPLATE_PATH).render(message.template, **message.values)
    assert ID in text and "Dinas PUPR" in text


def test_a_refused_reopen_says_why_in_the_citizens_terms() -> None:
    message = command_reply(
        answered(state=State.IN_PROGRESS, refused="reopen is not allowed in state in_progress"),
        "Dinas PUPR",
    )
    assert message.template == "reopen_refused"
    text = TemplateSet.load(DEFAULT_TEMPLATE_PATH).render(message.template, **message.values)
    assert ID in text and "tidak dapat dibuka kembali" in text
    assert "not allowed" not in text  # the English reason stays internal


def test_an_unknown_or_foreign_id_reveals_nothing() -> None:
    message = command_reply(answered(found=False), "Dinas PUPR")
    assert message.template == "status_not_found"
