"""The complaint lifecycle in one place: who may do what, from which state, to which state.

Pure: given the complaint as stored and a command, either a `Decision` (the state
after, the reason for the history, the fields to set) or `Refused` with a reason
a person can read. Nothing here touches storage or the bus.

Reply window
    Every answer and every closing opens a new window in which the citizen may
    reopen; SLA counts it on the region's working-day calendar and intake stores
    it as `reopen_until` (see `reopen_window_applies`). Until SLA has said,
    nothing limits a reopening: the citizen is not refused on a date nobody has
    computed yet.
Auto-close
    Silence after an answer closes it as `no_reply`. A citizen who reacted was
    not silent: a rating after the latest answer closes it with the citizen's
    verdict (`resolved` for 3-5, `not_resolved` for 1-2); a reply after the
    answer without a rating is not closed by the clock at all, an officer reads
    it and closes or answers again (`auto_close_outcome`).
Withdrawal
    The reporter may withdraw a complaint that is still open (any state before
    closing, an answered one included); it closes as `withdrawn`. A withdrawn
    complaint is not reopened: what was withdrawn is sent again as a new one.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lapor.contracts import State
from lapor.contracts.commands import Action, ComplaintCommand, Outcome, Role

OPEN_AGENCY_STATES = frozenset({State.ASSIGNED, State.IN_PROGRESS, State.NEEDS_INFO})
MAX_BOUNCES = 2


class Refused(Exception):
    """The command is not allowed; nothing changes. `status` follows HTTP (403, 409, 422)."""

    def __init__(self, reason: str, status: int = 409) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]
    from_states: frozenset[State]
    to_state: State | None  # None: the state does not change


def _rule(roles: set[Role], states: set[State], to: State | None) -> Rule:
    return Rule(frozenset(roles), frozenset(states), to)


_ANY_OPEN = {State.RECEIVED, State.TRIAGE, *OPEN_AGENCY_STATES, State.RESPONDED}

RULES: Mapping[Action, Rule] = {
    Action.ACKNOWLEDGE: _rule({Role.AGENCY}, {State.ASSIGNED}, State.IN_PROGRESS),
    Action.ASK: _rule({Role.AGENCY}, {State.ASSIGNED, State.IN_PROGRESS}, State.NEEDS_INFO),
    Action.ANSWER: _rule({Role.AGENCY}, set(OPEN_AGENCY_STATES), State.RESPONDED),
    Action.FORWARD: _rule({Role.AGENCY}, set(OPEN_AGENCY_STATES), State.RECEIVED),
    Action.CLOSE: _rule(
        {Role.AGENCY, Role.ADMIN}, {*OPEN_AGENCY_STATES, State.RESPONDED}, State.CLOSED
    ),
    Action.REPLY: _rule({Role.CITIZEN}, _ANY_OPEN, None),
    Action.RATE: _rule({Role.CITIZEN}, {State.RESPONDED, State.CLOSED}, None),
    Action.REOPEN: _rule({Role.CITIZEN}, {State.RESPONDED, State.CLOSED}, State.IN_PROGRESS),
    Action.DECIDE_TRIAGE: _rule({Role.ADMIN}, {State.TRIAGE, State.RECEIVED}, State.RECEIVED),
    Action.REJECT: _rule(
        {Role.ADMIN}, {State.RECEIVED, State.TRIAGE, *OPEN_AGENCY_STATES}, State.REJECTED
    ),
    Action.MERGE: _rule({Role.ADMIN}, _ANY_OPEN, State.CLOSED),
    Action.AUTO_CLOSE: _rule({Role.SYSTEM}, {State.RESPONDED}, State.CLOSED),
    Action.WITHDRAW: _rule({Role.CITIZEN}, _ANY_OPEN, State.CLOSED),
    Action.NOTE: _rule({Role.AGENCY, Role.ADMIN}, _ANY_OPEN, None),
}

_AGENCY_OUTCOMES = frozenset(
    {Outcome.RESOLVED, Outcome.NOT_RESOLVED, Outcome.DUPLICATE, Outcome.OUT_OF_SCOPE}
)


@dataclass(frozen=True)
class Decision:
    state: State | None
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    reroute: bool = False


@dataclass(frozen=True)
class Known:
    """What the rules need to know beyond the complaint itself.

    `agencies`: the agency codes of the complaint's region directory; a triage
    decision or a forward suggestion naming anything else would send the
    complaint nowhere. `duplicate`: the stored complaint that `duplicate_of`
    names, None if there is none.
    """

    agencies: Collection[str] = ()
    duplicate: Mapping[str, Any] | None = None


NOTHING_KNOWN = Known()


def decide(
    complaint: Mapping[str, Any],
    command: ComplaintCommand,
    *,
    now: datetime,
    known: Known = NOTHING_KNOWN,
) -> Decision:
    """Check `command` against the rules and the complaint; raise `Refused` if not allowed."""
    rule = RULES[command.action]
    state = State(complaint["state"])
    actor = command.actor
    if actor.role not in rule.roles:
        raise Refused(f"{actor.role.value} may not {command.action.value}", status=403)
    if actor.role is Role.AGENCY and actor.agency != complaint.get("agency"):
        raise Refused("this complaint is not assigned to your agency", status=403)
    if state not in rule.from_states:
        allowed = ", ".join(sorted(s.value for s in rule.from_states))
        raise Refused(
            f"cannot {command.action.value} a complaint that is {state.value} (allowed: {allowed})"
        )
    decision = _DECIDERS[command.action](complaint, command, rule, now)
    _check_references(complaint, command, known)
    return decision


def _check_references(c: Mapping[str, Any], cmd: ComplaintCommand, known: Known) -> None:
    """The agency and the complaint a command names must exist, or nothing changes."""
    if cmd.action is Action.DECIDE_TRIAGE or (cmd.action is Action.FORWARD and cmd.agency):
        if cmd.agency not in known.agencies:
            raise Refused(
                f"unknown agency code {cmd.agency!r} in the directory of region "
                f"{c.get('region')!r}",
                status=422,
            )
        if cmd.action is Action.FORWARD and cmd.agency == c.get("agency"):
            raise Refused("a forward suggests another agency than your own", status=422)
    merging = cmd.action is Action.MERGE or (
        cmd.action is Action.CLOSE and cmd.outcome is Outcome.DUPLICATE
    )
    if merging and known.duplicate is None:
        raise Refused(f"duplicate_of names no existing complaint: {cmd.duplicate_of}", status=422)


# Routing answers the question a complaint asks each time it enters `received`
# (stored, forwarded, decided by an admin); each time is a new round.
ROUTING_FROM = frozenset({State.RECEIVED})


def check_routing(complaint: Mapping[str, Any], round_: int) -> None:
    """Raise `Refused` if a routing decision of `round_` no longer applies to the complaint.

    Decisions arrive asynchronously: by the time one lands, an admin may have
    archived, merged or decided the complaint, or an agency forwarded it and a
    newer round is under way. Such a decision must not overwrite what happened since.
    """
    current = int(complaint.get("routing_round", 0))
    if round_ != current:
        raise Refused(f"routing round {round_} does not apply: the complaint is in round {current}")
    state = State(complaint["state"])
    if state not in ROUTING_FROM:
        raise Refused(f"cannot route a complaint that is {state.value}")


def _require_text(command: ComplaintCommand, what: str) -> str:
    if not command.text or not command.text.strip():
        raise Refused(f"{command.action.value} needs {what}", status=422)
    return command.text.strip()


def _acknowledge(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    # The officer who acknowledged holds it: they hear when the citizen acts on it.
    return Decision(rule.to_state, f"acknowledged by {cmd.actor.agency}", {"officer": cmd.actor.id})


def _ask(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    question = _require_text(cmd, "the question for the citizen")
    return Decision(
        rule.to_state, "agency asked the citizen", {"question": question}, {"text": question}
    )


def _answer(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    answer = _require_text(cmd, "the answer")
    fields = {"answer": {"text": answer, "at": now, "by": cmd.actor.id}, "responded_at": now}
    return Decision(rule.to_state, "agency answered", fields, {"text": answer})


def _forward(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    reason = _require_text(cmd, "a reason why it is not your agency's")
    refused = sorted({*c.get("refused_by", []), c.get("agency")} - {None})
    detail = {"text": reason, "refused": refused, "suggested": cmd.agency}
    fields = {
        "refused_by": refused,
        "bounces": int(c.get("bounces", 0)) + 1,
        "routing_round": int(c.get("routing_round", 0)) + 1,
        "agency": None,
        "officer": None,
    }
    return Decision(rule.to_state, f"{c.get('agency')}: not ours", fields, detail, reroute=True)


def _close(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    outcome = cmd.outcome
    if outcome not in _AGENCY_OUTCOMES:
        allowed = ", ".join(sorted(o.value for o in _AGENCY_OUTCOMES))
        raise Refused(f"closing needs an outcome: {allowed}", status=422)
    fields: dict[str, Any] = {"outcome": outcome.value, "closed_at": now}
    if outcome is Outcome.NOT_RESOLVED:
        fields["outcome_note"] = _require_text(cmd, "an explanation why it is not resolved")
    if outcome is Outcome.DUPLICATE:
        if not cmd.duplicate_of or cmd.duplicate_of == c["_id"]:
            raise Refused("a duplicate names the other complaint (duplicate_of)", status=422)
        fields["duplicate_of"] = cmd.duplicate_of
    return Decision(rule.to_state, f"closed: {outcome.value}", fields, dict(fields))


def _reply(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    text = _require_text(cmd, "the citizen's information")
    # An answer to the agency's question resumes its clock; otherwise it is a note.
    to_state = State.IN_PROGRESS if c["state"] == State.NEEDS_INFO else None
    return Decision(to_state, "citizen added information", {"replied_at": now}, {"text": text})


def _rate(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    if cmd.score is None:
        raise Refused("a rating is a score from 1 to 5", status=422)
    if c.get("outcome") == Outcome.WITHDRAWN:
        # It would count in the agency's report for a case the citizen took back.
        raise Refused("the citizen withdrew this complaint: there is no answer to rate")
    rating = {"score": cmd.score, "comment": cmd.text or "", "at": now}
    return Decision(None, f"citizen rated {cmd.score}/5", {"rating": rating}, {"score": cmd.score})


def _reopen(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    reason = _require_text(cmd, "a reason to reopen")
    if c.get("outcome") == Outcome.WITHDRAWN:
        raise Refused("the citizen withdrew this complaint: send it again as a new complaint")
    until = c.get("reopen_until")
    if until is not None and now > until:
        raise Refused(
            "the reply window for reopening has passed: it ended at "
            f"{until.isoformat(timespec='seconds')}"
        )
    # Open again: no closing and no window any more; the next answer opens a new one.
    round_ = int(c.get("reopen_count", 0)) + 1
    fields = {
        "reopen_count": round_,
        "outcome": None,
        "closed_at": None,
        "reopen_until": None,
        "reopen_from": None,
    }
    # The round names the answer the agency owes now (SLA counts a new deadline for it).
    detail = {"text": reason, "round": round_}
    return Decision(rule.to_state, "reopened by the citizen", fields, detail)


def _withdraw(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    # A reason helps the agency but is not required: the citizen owes none.
    fields: dict[str, Any] = {"outcome": Outcome.WITHDRAWN.value, "closed_at": now}
    detail: dict[str, Any] = {"outcome": Outcome.WITHDRAWN.value}
    if cmd.text and cmd.text.strip():
        detail["text"] = cmd.text.strip()
    return Decision(rule.to_state, "withdrawn by the citizen", fields, detail)


def _note(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    # Only the holding agency and admins read it (lapor.audience: internal notes).
    note = _require_text(cmd, "the note's text")
    return Decision(None, "internal note", {}, {"text": note})


def _decide_triage(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    if not cmd.agency or cmd.priority is None:
        raise Refused("a triage decision names the agency and the priority", status=422)
    fields = {"routing_round": int(c.get("routing_round", 0)) + 1}
    detail = {"agency": cmd.agency, "priority": cmd.priority.value}
    return Decision(rule.to_state, f"triage decided by {cmd.actor.id}", fields, detail, True)


def _reject(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    reason = _require_text(cmd, "the reason for archiving")
    return Decision(rule.to_state, f"archived: {reason}", {"rejection_reason": reason})


def _merge(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    if not cmd.duplicate_of or cmd.duplicate_of == c["_id"]:
        raise Refused("merging names the complaint to keep (duplicate_of)", status=422)
    fields: dict[str, Any] = {
        "outcome": Outcome.DUPLICATE.value,
        "duplicate_of": cmd.duplicate_of,
        "closed_at": now,
    }
    return Decision(rule.to_state, f"merged into {cmd.duplicate_of}", fields, dict(fields))


# A rating from this score up says the answer solved it (the middle of 1-5 included:
# "fair" is not a complaint about the answer).
RESOLVED_FROM_SCORE = 3


def auto_close_outcome(c: Mapping[str, Any]) -> tuple[Outcome, str]:
    """How a responded complaint closes when its reply window is over (module docstring).

    Only reactions to the latest answer count: a rating of an earlier answer,
    before a reopening, says nothing about the new one.
    """
    answered = c.get("responded_at")
    rating = c.get("rating") or {}
    if rating.get("at") is not None and (answered is None or rating["at"] >= answered):
        score = int(rating["score"])
        if score >= RESOLVED_FROM_SCORE:
            return Outcome.RESOLVED, f"the citizen rated the answer {score}/5"
        return Outcome.NOT_RESOLVED, f"the citizen rated the answer {score}/5"
    replied = c.get("replied_at")
    if replied is not None and (answered is None or replied >= answered):
        raise Refused(
            "the citizen replied to the answer: an officer closes it or answers again, "
            "it does not close as no_reply"
        )
    return Outcome.NO_REPLY, "no reaction from the citizen"


def _auto_close(c: Any, cmd: ComplaintCommand, rule: Rule, now: datetime) -> Decision:
    outcome, why = auto_close_outcome(c)
    fields: dict[str, Any] = {"outcome": outcome.value, "closed_at": now}
    if outcome is not Outcome.NO_REPLY:
        fields["outcome_note"] = why
    return Decision(rule.to_state, f"closed: {why}", fields, {"outcome": outcome.value})


def reopen_window_applies(c: Mapping[str, Any], cause_event_id: str | None) -> bool:
    """True when SLA's reopen window belongs to the complaint's current answer or closing.

    A window computed for an earlier answer (the citizen reopened, the agency
    answered again) arrives late or again on redelivery; it must not replace
    the window of the latest one.
    """
    state = State(c["state"])
    return (
        state in (State.RESPONDED, State.CLOSED)
        and cause_event_id is not None
        and c.get("reopen_from") == cause_event_id
    )


_DECIDERS = {
    Action.ACKNOWLEDGE: _acknowledge,
    Action.ASK: _ask,
    Action.ANSWER: _answer,
    Action.FORWARD: _forward,
    Action.CLOSE: _close,
    Action.REPLY: _reply,
    Action.RATE: _rate,
    Action.REOPEN: _reopen,
    Action.DECIDE_TRIAGE: _decide_triage,
    Action.REJECT: _reject,
    Action.MERGE: _merge,
    Action.AUTO_CLOSE: _auto_close,
    Action.WITHDRAW: _withdraw,
    Action.NOTE: _note,
}
