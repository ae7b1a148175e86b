"""The chaos run's history and its check, Jepsen-style.

The history is what the client saw: every SMS it tried to submit and whether
JetStream acknowledged it (a PubAck). The check compares that history with
what the system stored and sent, read back at the end from the database and
from the LAPOR_OUTBOUND stream itself (a core subscription would miss
messages published while the test client was reconnecting):

- lost: an accepted SMS without a complaint, or a complaint of ours without an
  acknowledgement (notification or SMS on the bus);
- duplicated: more than one complaint for one SMS, more than one
  acknowledgement notification, or more than one acknowledgement SMS on the bus;
- unexpected: a complaint or acknowledgement for an SMS nobody sent.

An SMS whose publish never got a PubAck is indeterminate: it may or may not
have been stored, so it may have zero or one complaint, but never more, and a
complaint it got must be acknowledged like any other.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ACK_TEMPLATES = ("ack", "ack_triage")


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


@dataclass
class Verdict:
    accepted: int
    indeterminate: int
    complaints: int
    acknowledged: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def summary(self) -> str:
        return (
            f"accepted={self.accepted} indeterminate={self.indeterminate} "
            f"complaints={self.complaints} acknowledged={self.acknowledged} "
            f"lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"unexpected={len(self.unexpected)}"
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
    return Verdict(
        accepted=len(history.accepted),
        indeterminate=len(history.indeterminate),
        complaints=len(observed.complaints),
        acknowledged=sum(1 for cid in ours if notes.get(cid) and sent.get(cid)),
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
    )


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
