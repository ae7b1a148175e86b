"""The chaos run's history and its check, Jepsen-style.

The history is what the client saw: every SMS it tried to submit and whether
JetStream acknowledged it (a PubAck). The check compares that history with
what the system stored and sent, read back at the end from the database and
from the streams themselves (a core subscription would miss messages
published while the test client was reconnecting):

- lost: an accepted SMS without a complaint, or a complaint of ours without an
  acknowledgement (notification or SMS on the bus);
- duplicated: more than one complaint for one SMS, more than one
  acknowledgement notification, more than one acknowledgement SMS on the bus,
  or one event id stored twice in LAPOR_EVENTS;
- unexpected: a complaint or acknowledgement for an SMS nobody sent;
- unrouted: a complaint of ours whose routing is not stored (no agency, not in
  triage, not closed as out of scope) or not announced (no
  `lapor.event.complaint.routed` for it in LAPOR_EVENTS);
- no_deadlines: a complaint of ours, not out of scope, without a stored answer
  deadline or without a `lapor.event.complaint.deadlines` for it;
- invalid_history: a stored complaint whose history is not a path through the
  state machine (`history_problems`).

An SMS whose publish never got a PubAck is indeterminate: it may or may not
have been stored, so it may have zero or one complaint, but never more, and a
complaint it got must be acknowledged, routed and given deadlines like any other.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lapor.contracts import State, subjects
from lapor.contracts.commands import Actor, ComplaintCommand
from services.intake import lifecycle

ACK_TEMPLATES = ("ack", "ack_triage")
ROUTED = subjects.COMPLAINT_ROUTED
DEADLINES = subjects.COMPLAINT_DEADLINES
OUT_OF_SCOPE = "out_of_scope"
# Where a routing decision takes a complaint in `received` (services/intake/domain.py,
# `routed_transition`): to an agency, to Diskominfo's triage, or closed as out of scope.
ROUTED_TO = frozenset({State.ASSIGNED, State.TRIAGE, State.CLOSED})


def _state_changes_of_notes() -> set[tuple[State, State]]:
    """The state changes of actions whose rule keeps the state in general but that move
    it from some states (a citizen's reply resumes `needs_info`): asked of the lifecycle
    itself, with a probe command per action and state."""
    found = set()
    now = datetime.now(UTC)
    for action, rule in lifecycle.RULES.items():
        if rule.to_state is not None:
            continue
        for state in rule.from_states:
            role = sorted(rule.roles)[0]
            command = ComplaintCommand(
                command_id="probe",
                complaint_id="LPR-PROBE",
                action=action,
                actor=Actor(role=role, id="probe"),
                text="probe",
                score=5,
            )
            try:
                decision = lifecycle.decide(
                    {"_id": "LPR-PROBE", "state": state.value}, command, now=now
                )
            except lifecycle.Refused:
                continue
            if decision.state is not None and decision.state is not state:
                found.add((state, decision.state))
    return found


def allowed_transitions() -> frozenset[tuple[State, State]]:
    """Every (from, to) the system may record: the lifecycle's rules, the routing
    decisions and the state changes of the citizen's notes."""
    allowed = {
        (source, rule.to_state)
        for rule in lifecycle.RULES.values()
        if rule.to_state is not None
        for source in rule.from_states
    }
    allowed |= {(source, to) for source in lifecycle.ROUTING_FROM for to in ROUTED_TO}
    return frozenset(allowed | _state_changes_of_notes())


TRANSITIONS = allowed_transitions()


@dataclass
class History:
    """What the client did: gateway ids tried, and those the bus accepted."""

    attempted: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)

    @property
    def indeterminate(self) -> set[str]:
        return self.attempted - self.accepted


@dataclass
class Observed:
    """What the system holds at the end."""

    # source_key of every stored complaint, with the complaint id: (source_key, id)
    complaints: list[tuple[str, str]]
    # acknowledgement notifications: (notification id, complaint id)
    ack_notifications: list[tuple[str, str]]
    # SMS in the LAPOR_OUTBOUND stream: (notification id, complaint id or None)
    outbound: list[tuple[str, str | None]]
    # every stored complaint by id: state, agency, outcome, deadlines, history, version
    records: Mapping[str, Mapping[str, Any]]
    # routing and deadline announcements in LAPOR_EVENTS: (subject, event id, complaint id)
    events: list[tuple[str, str, str]]


@dataclass
class Verdict:
    accepted: int
    indeterminate: int
    complaints: int
    acknowledged: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    unrouted: list[str] = field(default_factory=list)
    no_deadlines: list[str] = field(default_factory=list)
    invalid_history: list[str] = field(default_factory=list)
    # complaints whose history failed a check (one complaint may fail several)
    invalid_histories: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.unexpected
            or self.unrouted
            or self.no_deadlines
            or self.invalid_history
        )

    def counts(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unexpected": len(self.unexpected),
            "invalid_history": self.invalid_histories,
            "unrouted": len(self.unrouted),
            "no_deadlines": len(self.no_deadlines),
        }

    def summary(self) -> str:
        counts = " ".join(f"{name}={n}" for name, n in self.counts().items())
        return (
            f"accepted={self.accepted} indeterminate={self.indeterminate} "
            f"complaints={self.complaints} acknowledged={self.acknowledged} {counts}"
        )


def gateway_id(source_key: str) -> str | None:
    return source_key.removeprefix("sms:") if source_key.startswith("sms:") else None


def check(history: History, observed: Observed) -> Verdict:
    by_gateway: dict[str, list[str]] = defaultdict(list)
    unexpected: list[str] = []
    for source_key, complaint_id in observed.complaints:
        gid = gateway_id(source_key)
        if gid is None or gid not in history.attempted:
            unexpected.append(f"complaint {complaint_id} from {source_key}")
            continue
        by_gateway[gid].append(complaint_id)
    ours = {cid for ids in by_gateway.values() for cid in ids}

    notes = _distinct_per_complaint(observed.ack_notifications)
    ack_ids = {nid for nid, _cid in observed.ack_notifications}
    sent = Counter(cid for nid, cid in observed.outbound if nid in ack_ids and cid is not None)
    for nid, cid in observed.ack_notifications:
        if cid not in ours:
            unexpected.append(f"acknowledgement {nid} for unknown complaint {cid}")

    lost: list[str] = []
    duplicated: list[str] = []
    for gid in sorted(history.attempted):
        ids = by_gateway.get(gid, [])
        if not ids:
            if gid in history.accepted:
                lost.append(f"sms {gid}: accepted, no complaint")
            continue
        if len(ids) > 1:
            duplicated.append(f"sms {gid}: {len(ids)} complaints {sorted(ids)}")
        for cid in ids:
            lost += _missing_ack(cid, notes.get(cid, set()), sent.get(cid, 0))
            duplicated += _extra_ack(cid, notes.get(cid, set()), sent.get(cid, 0))

    announced: dict[str, set[str]] = defaultdict(set)
    for (subject, event_id), n in Counter((s, e) for s, e, _c in observed.events).items():
        if n > 1:
            duplicated.append(f"event {event_id} ({subject}) {n} times in LAPOR_EVENTS")
    for subject, _event_id, cid in observed.events:
        announced[subject].add(cid)

    unrouted: list[str] = []
    no_deadlines: list[str] = []
    invalid: list[str] = []
    invalid_complaints = 0
    for cid in sorted(ours):
        record = observed.records.get(cid)
        if record is None:
            lost.append(f"complaint {cid}: not read back")
            continue
        unrouted += routing_problems(record, cid in announced[ROUTED])
        no_deadlines += deadline_problems(record, cid in announced[DEADLINES])
    for cid in sorted(observed.records):
        problems = history_problems(observed.records[cid])
        invalid += problems
        invalid_complaints += bool(problems)
    return Verdict(
        accepted=len(history.accepted),
        indeterminate=len(history.indeterminate),
        complaints=len(observed.complaints),
        acknowledged=sum(1 for cid in ours if notes.get(cid) and sent.get(cid)),
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        unrouted=unrouted,
        no_deadlines=no_deadlines,
        invalid_history=invalid,
        invalid_histories=invalid_complaints,
    )


def _out_of_scope(record: Mapping[str, Any]) -> bool:
    return record.get("state") == State.CLOSED and record.get("outcome") == OUT_OF_SCOPE


def routing_problems(record: Mapping[str, Any], announced: bool) -> list[str]:
    """Routing stored (an agency, or triage, or closed as out of scope) and announced."""
    cid = record["_id"]
    found = []
    if not (record.get("agency") or record.get("state") == State.TRIAGE or _out_of_scope(record)):
        found.append(f"complaint {cid}: no routing stored (state {record.get('state')})")
    if not announced:
        found.append(f"complaint {cid}: no {ROUTED} in LAPOR_EVENTS")
    return found


def deadline_problems(record: Mapping[str, Any], announced: bool) -> list[str]:
    """Deadlines stored (the answer deadline) and announced, unless out of scope."""
    if _out_of_scope(record):
        return []
    cid = record["_id"]
    found = []
    if not (record.get("deadlines") or {}).get("answer"):
        found.append(f"complaint {cid}: no answer deadline stored")
    if not announced:
        found.append(f"complaint {cid}: no {DEADLINES} in LAPOR_EVENTS")
    return found


def history_problems(
    record: Mapping[str, Any], allowed: frozenset[tuple[State, State]] = TRANSITIONS
) -> list[str]:
    """Why the complaint's history is not a path through the state machine (empty if it is).

    The entries in the order they were appended: the first is `received`; every
    entry with a state moves there from the state before by an allowed
    transition; no event id twice; `version` (where present) counts the
    entries; the stored state is the last one in the history.
    """
    cid = record["_id"]
    history = list(record.get("history") or [])
    if not history:
        return [f"complaint {cid}: empty history"]
    found = []
    if history[0].get("state") != State.RECEIVED:
        found.append(f"complaint {cid}: history starts in {history[0].get('state')!r}")
    repeated = [e for e, n in Counter(h.get("event_id") for h in history).items() if n > 1]
    if repeated:
        found.append(
            f"complaint {cid}: event ids twice in the history: {sorted(map(str, repeated))}"
        )
    state: State | None = None
    for position, entry in enumerate(history):
        if entry.get("state") is None:
            continue
        try:
            to = State(entry["state"])
        except ValueError:
            found.append(f"complaint {cid}: entry {position} has unknown state {entry['state']!r}")
            continue
        if state is not None and (state, to) not in allowed:
            found.append(
                f"complaint {cid}: entry {position} ({entry.get('event_id')}) "
                f"{state.value} -> {to.value} is no transition of the lifecycle"
            )
        state = to
    version = record.get("version")
    if version is not None and version != len(history):
        found.append(f"complaint {cid}: version {version} but {len(history)} history entries")
    last = state.value if state is not None else None
    if record.get("state") != last:
        found.append(
            f"complaint {cid}: stored state {record.get('state')!r}, history ends {last!r}"
        )
    return found


def _distinct_per_complaint(pairs: Iterable[tuple[str, str]]) -> Mapping[str, set[str]]:
    result: dict[str, set[str]] = defaultdict(set)
    for nid, cid in pairs:
        result[cid].add(nid)
    return result


def _missing_ack(cid: str, notes: set[str], sent: int) -> list[str]:
    if not notes:
        return [f"complaint {cid}: no acknowledgement notification"]
    if not sent:
        return [f"complaint {cid}: acknowledgement {sorted(notes)} never on the bus"]
    return []


def _extra_ack(cid: str, notes: set[str], sent: int) -> list[str]:
    found = []
    if len(notes) > 1:
        found.append(f"complaint {cid}: {len(notes)} acknowledgements {sorted(notes)}")
    if sent > 1:
        found.append(f"complaint {cid}: {sent} acknowledgement SMS on the bus")
    return found
