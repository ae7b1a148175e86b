"""What one complaint contributes to the report, derived from its stored history.

Only timings, flags and codes leave this module: never the text, the
reporter or the tracking id.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lapor.contracts import State
from lapor.contracts.commands import Outcome

# States a complaint can be sent back to by a reopening (anything still open
# before an answer).
_REOPENED_TO = frozenset(
    s.value
    for s in (State.RECEIVED, State.TRIAGE, State.ASSIGNED, State.IN_PROGRESS, State.NEEDS_INFO)
)
_CONCLUDED = frozenset({State.RESPONDED.value, State.CLOSED.value})

# The only fields the report reads from a complaint (a projection).
PROJECTION: dict[str, int] = {
    "agency": 1,
    "category": 1,
    "priority": 1,
    "state": 1,
    "received_at": 1,
    "deadlines.first_response": 1,
    "deadlines.answer": 1,
    "deadlines.first_answer": 1,
    "outcome": 1,
    "closed_at": 1,
    "history.state": 1,
    "history.at": 1,
    "place.kecamatan": 1,
    "confidential": 1,
}


@dataclass(frozen=True)
class ComplaintFacts:
    agency: str | None
    category: str | None
    priority: str | None
    received_at: datetime
    assigned_at: datetime | None
    acknowledged_at: datetime | None
    answered_at: datetime | None
    first_response_due: datetime | None
    answer_due: datetime | None
    concluded: bool
    reopened: bool
    rejected: bool
    # The kecamatan the complaint is about (Kemendagri code and name), if known.
    kecamatan: str | None = None
    kecamatan_name: str | None = None
    confidential: bool = False
    # Withdrawn by the citizen: the agency's clocks are judged up to that moment only.
    withdrawn_at: datetime | None = None

    def _until(self, as_of: datetime) -> datetime:
        return min(as_of, self.withdrawn_at) if self.withdrawn_at is not None else as_of

    @property
    def first_response_s(self) -> float | None:
        """Assignment to the agency's first response (entering `in_progress`)."""
        if self.acknowledged_at is None or self.assigned_at is None:
            return None
        return max(0.0, (self.acknowledged_at - self.assigned_at).total_seconds())

    @property
    def answer_s(self) -> float | None:
        """Receipt to the answer: the 14-day promise is counted from receipt."""
        if self.answered_at is None:
            return None
        return max(0.0, (self.answered_at - self.received_at).total_seconds())

    def answer_judgeable(self, as_of: datetime) -> bool:
        """Answered, or its answer deadline has passed: the on-time share can count it."""
        if self.rejected or self.answer_due is None:
            return False
        return self.answered_at is not None or self.answer_due <= self._until(as_of)

    def answered_on_time(self) -> bool:
        return (
            self.answered_at is not None
            and self.answer_due is not None
            and self.answered_at <= self.answer_due
        )

    def late_clocks(self, as_of: datetime) -> list[str]:
        """Clocks this complaint missed, judged from its own record (no SLA data)."""
        as_of = self._until(as_of)
        late = []
        if self.first_response_due is not None and _missed(
            self.acknowledged_at, self.first_response_due, as_of
        ):
            late.append("first_response")
        if self.answer_due is not None and _missed(self.answered_at, self.answer_due, as_of):
            late.append("answer")
        return [] if self.rejected else late


def _missed(done_at: datetime | None, due: datetime, as_of: datetime) -> bool:
    return done_at > due if done_at is not None else due <= as_of


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _steps(history: Sequence[Mapping[str, Any]]) -> list[tuple[datetime, str]]:
    steps = [(_aware(h["at"]), str(h["state"])) for h in history if h.get("state") and h.get("at")]
    return sorted(steps, key=lambda step: step[0])


def _first_after(
    steps: list[tuple[datetime, str]], states: frozenset[str], after: datetime
) -> datetime | None:
    return next((at for at, state in steps if state in states and at >= after), None)


def facts_from(doc: Mapping[str, Any]) -> ComplaintFacts:
    """Derive the report's facts from a complaint projected with `PROJECTION`."""
    withdrawn_at = (
        _optional(doc.get("closed_at")) if doc.get("outcome") == Outcome.WITHDRAWN else None
    )
    # The citizen's withdrawal is no answer of the agency's.
    steps = [
        step
        for step in _steps(doc.get("history") or [])
        if not (step[1] == State.CLOSED.value and step[0] == withdrawn_at)
    ]
    deadlines = doc.get("deadlines") or {}
    kecamatan = (doc.get("place") or {}).get("kecamatan") or {}
    received_at = _aware(doc["received_at"])
    first_assigned = next((at for at, state in steps if state == State.ASSIGNED), None)
    acknowledged_at = assigned_at = answered_at = None
    if first_assigned is not None:
        acknowledged_at = _first_after(steps, frozenset({State.IN_PROGRESS.value}), first_assigned)
        # Measured from the assignment the agency answered to (after any re-routing).
        cutoff = acknowledged_at or steps[-1][0]
        assigned_at = max(at for at, s in steps if s == State.ASSIGNED and at <= cutoff)
        # An agency that closes without a separate answer (resolved, duplicate)
        # has answered too.
        answered_at = _first_after(steps, _CONCLUDED, first_assigned)
    return ComplaintFacts(
        agency=doc.get("agency"),
        category=doc.get("category"),
        priority=doc.get("priority"),
        received_at=received_at,
        assigned_at=assigned_at,
        acknowledged_at=acknowledged_at,
        answered_at=answered_at,
        first_response_due=_optional(deadlines.get("first_response")),
        # The first answer is judged against its own deadline, not a reopening's.
        answer_due=_optional(deadlines.get("first_answer") or deadlines.get("answer")),
        concluded=any(state in _CONCLUDED for _, state in steps),
        reopened=_reopened(steps),
        rejected=doc.get("state") == State.REJECTED.value,
        kecamatan=kecamatan.get("code"),
        kecamatan_name=kecamatan.get("name"),
        confidential=bool(doc.get("confidential")),
        withdrawn_at=withdrawn_at,
    )


def _optional(value: Any) -> datetime | None:
    return _aware(value) if isinstance(value, datetime) else None


def _reopened(steps: list[tuple[datetime, str]]) -> bool:
    states = [state for _, state in steps]
    return any(
        before in _CONCLUDED and after in _REOPENED_TO
        for before, after in itertools.pairwise(states)
    )
