"""The report judges the agency's first answer against its own deadline, also after a
reopening, and never counts a citizen's withdrawal as the agency's answer."""

from datetime import UTC, datetime, timedelta
from typing import Any

from lapor.report.facts import facts_from

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def doc(*steps: tuple[int, str], **extra: Any) -> dict[str, Any]:
    return {
        "agency": "PUPR",
        "received_at": T0,
        "history": [{"at": T0 + timedelta(days=d), "state": s} for d, s in steps],
        **extra,
    }


def test_a_late_first_answer_stays_late_after_a_reopening_moves_the_deadline() -> None:
    facts = facts_from(
        doc(
            (0, "received"),
            (0, "assigned"),
            (20, "responded"),
            (21, "in_progress"),
            deadlines={"first_answer": T0 + timedelta(days=14), "answer": T0 + timedelta(days=28)},
        )
    )
    assert facts.answer_due == T0 + timedelta(days=14)
    assert not facts.answered_on_time() and facts.reopened


def test_a_withdrawal_is_no_answer_and_ends_the_judgement() -> None:
    closed_at = T0 + timedelta(days=3)
    facts = facts_from(
        doc(
            (0, "received"),
            (0, "assigned"),
            (3, "closed"),
            outcome="withdrawn",
            closed_at=closed_at,
            deadlines={"answer": T0 + timedelta(days=14)},
        )
    )
    assert facts.answered_at is None and not facts.concluded
    later = T0 + timedelta(days=30)
    # Withdrawn before the deadline: nothing to judge, nothing late.
    assert not facts.answer_judgeable(later) and facts.late_clocks(later) == []
