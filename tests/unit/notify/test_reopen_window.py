"""The answer and closing SMS say how long the citizen may reopen, from the region's policy."""

from datetime import UTC, datetime
from pathlib import Path

import yaml

from lapor.contracts import ComplaintStateChanged, State
from lapor.regions import DEFAULT_REOPEN_WINDOW, reopen_window
from services.notify.domain import lifecycle_message, reopen_phrase
from services.notify.templates import DEFAULT_TEMPLATE_PATH, TemplateSet

ROOT = Path(__file__).resolve().parents[3]
ID = "LPR-2611-7K3M9QX2"


def changed(state: State, **fields: object) -> ComplaintStateChanged:
    base: dict[str, object] = {
        "event_id": f"state:{ID}:3",
        "occurred_at": datetime(2026, 11, 28, 3, 0, tzinfo=UTC),
        "complaint_id": ID,
        "region": "banjar",
        "state": state,
        "previous_state": State.IN_PROGRESS,
        "actor": "agency:PUPR:budi",
        "reason": "agency answered",
        "cause_event_id": "command:http:c-1",
        "agency": "PUPR",
        "message": "Jalan sudah ditambal kemarin.",
    }
    return ComplaintStateChanged.model_validate(base | fields)


def test_banjar_reopens_within_ten_working_days() -> None:
    assert reopen_window(ROOT / "data", "banjar") == ("working_days", 10)


def test_a_region_without_the_block_gets_sla_default(tmp_path: Path) -> None:
    (tmp_path / "regions" / "x").mkdir(parents=True)
    (tmp_path / "regions" / "x" / "sla.yaml").write_text(yaml.safe_dump({"auto_close": {}}))
    assert reopen_window(tmp_path, "x") == DEFAULT_REOPEN_WINDOW
    assert reopen_window(tmp_path, "missing") == DEFAULT_REOPEN_WINDOW


def test_answer_and_closing_sms_name_the_window_never_a_placeholder() -> None:
    templates = TemplateSet.load(DEFAULT_TEMPLATE_PATH)
    within = reopen_phrase("working_days", 10)
    for event in (
        changed(State.RESPONDED),
        changed(State.CLOSED, outcome="resolved", message=None),
    ):
        message = lifecycle_message(event, "Dinas PUPR", within)
        assert message is not None
        text = templates.render(message.template, **message.values)
        assert "10 hari kerja sejak pesan ini" in text and f"BUKA {ID}" in text
        assert "paling lambat -" not in text
