"""Hotspot use cases: a routed complaint is grouped; officers confirm, split, merge
and answer a hotspot. Every change is stored with its announcement, then published."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel

from lapor.contracts import ComplaintRouted, ComplaintStateChanged, routing_round
from lapor.contracts.commands import Action, Actor, CommandRejected, ComplaintCommand, Role
from lapor.contracts.hotspots import HotspotChange, HotspotChanged, HotspotState
from lapor.tokens import Officer
from services.hotspots import domain
from services.hotspots.domain import Form, Hotspot, Join, Member, Refusal, Refused, Rules
from services.hotspots.lease import Lease
from services.hotspots.metrics import HotspotMetrics
from services.hotspots.repository import HotspotRepository, StateChange

log = logging.getLogger(__name__)
AUTOMATIC = "hotspots"


class Publisher(Protocol):
    async def publish(self, message: BaseModel, msg_id: str) -> bool: ...


@dataclass
class HotspotDeps:
    repo: HotspotRepository
    commands: Publisher
    rules: Rules = field(default_factory=Rules)
    metrics: HotspotMetrics | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # One change at a time: grouping reads candidates and writes hotspots and
    # members, which no single conditional write covers (a complaint that two new
    # ones both pick as partner would form two hotspots). The lock orders this
    # process's handlers, the lease every replica's.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    lease: Lease | None = None
    # A change touched an open hotspot: the gauge is read again on its next round
    # (at most every few seconds, see wiring) rather than after every change.
    gauge_stale: bool = False
    # Complaints whose routing this process is handling (waiting for the lock or
    # holding it): a state change of one waits for it rather than miss its member.
    routing: set[str] = field(default_factory=set)
    # Hotspots as this process last read or wrote them, while it keeps the lease
    # (`known_tenure`): every hotspot write takes the lease, so no other replica
    # changed them meanwhile. Forgotten when the lease was given up or a block failed.
    known: dict[str, Hotspot] = field(default_factory=dict)
    known_tenure: int | None = None


@asynccontextmanager
async def exclusive(deps: HotspotDeps) -> AsyncIterator[None]:
    async with deps.lock:
        if deps.lease is None:
            yield
            return
        async with deps.lease.hold():
            if deps.lease.tenure != deps.known_tenure:
                deps.known.clear()
                deps.known_tenure = deps.lease.tenure
            try:
                yield
            except BaseException:
                deps.known.clear()
                raise


async def _hotspots(deps: HotspotDeps, hotspot_ids: Sequence[str]) -> dict[str, Hotspot]:
    """The hotspots named, those known under the lease kept as they are."""
    wanted = set(hotspot_ids)
    found = {h: deps.known[h] for h in wanted if h in deps.known}
    read = await deps.repo.hotspots([h for h in hotspot_ids if h not in found])
    if deps.known_tenure is not None:
        deps.known |= read
    return found | read


def change_event(
    hotspot: Hotspot,
    change: HotspotChange,
    actor: str,
    now: datetime,
    affected: Sequence[str] = (),
    related: str | None = None,
    answer_round: int | None = None,
) -> HotspotChanged:
    return HotspotChanged(
        event_id=f"hotspot:{hotspot.hotspot_id}:{hotspot.version}",
        occurred_at=now,
        hotspot_id=hotspot.hotspot_id,
        version=hotspot.version,
        change=change,
        region=hotspot.region,
        agency=hotspot.agency,
        kecamatan=hotspot.kecamatan,
        desa=hotspot.desa,
        state=hotspot.state,
        members=list(hotspot.members),
        affected=list(affected),
        related=related,
        actor=actor,
        formed_at=hotspot.formed_at,
        answer_round=answer_round,
    )


def member_from(event: ComplaintRouted, stored: Member | None) -> Member:
    place = event.place
    return Member(
        complaint_id=event.complaint_id,
        region=event.region,
        agency=event.agency,
        received_at=event.received_at,
        keywords=tuple(event.keywords),
        kecamatan=place.kecamatan if place else None,
        desa=place.desa if place else None,
        # Only the first routing carries them (a re-routing comes from intake's forward).
        reporter=event.reporter or (stored.reporter if stored else None),
        confidential=event.confidential or (stored.confidential if stored else False),
        triage=event.triage,
        category=event.category,
        hotspot_id=stored.hotspot_id if stored else None,
        kept_apart=stored.kept_apart if stored else False,
        routed_event_id=event.event_id,
        routed_at=event.occurred_at,
        state=stored.state if stored else None,
        outcome=stored.outcome if stored else None,
        state_event_id=stored.state_event_id if stored else "",
        state_at=stored.state_at if stored else None,
        refusals=stored.refusals if stored else (),
    )


async def _save(deps: HotspotDeps, hotspot: Hotspot, event: HotspotChanged) -> None:
    deps.known.pop(hotspot.hotspot_id, None)
    # Stored as it is, or refused (VersionConflict); a new hotspot's insert may have
    # met one formed before (a redelivery), which is read when needed.
    if await deps.repo.save_hotspot(hotspot, event) and deps.known_tenure is not None:
        deps.known[hotspot.hotspot_id] = hotspot
    if deps.metrics is not None:
        deps.metrics.changes.labels(change=event.change.value).inc()
        if event.change in (HotspotChange.FORMED, HotspotChange.JOINED):
            joined = len(event.affected) if event.change is HotspotChange.JOINED else 2
            deps.metrics.joined.labels(agency=hotspot.agency).inc(joined)


async def _gauge_changed(deps: HotspotDeps) -> None:
    deps.gauge_stale = True


async def handle_routed(event: ComplaintRouted, deps: HotspotDeps) -> None:
    """Group a routed complaint. A redelivery publishes what is still pending."""
    deps.routing.add(event.complaint_id)
    try:
        await _route(event, deps)
    finally:
        deps.routing.discard(event.complaint_id)


async def _route(event: ComplaintRouted, deps: HotspotDeps) -> None:
    touched: list[str] = []
    async with exclusive(deps):
        if routing_round(event.event_id) != 0 or not await _first_routing(event, deps, touched):
            await _routing_again(event, deps, touched)
    for hotspot_id in touched:
        await deps.repo.announce(hotspot_id)
    if touched:
        await _gauge_changed(deps)


async def _first_routing(event: ComplaintRouted, deps: HotspotDeps, touched: list[str]) -> bool:
    """A complaint's first routing: grouped, then its member stored whole in one insert,
    then its hotspot. The member is new unless this is a redelivery or a late
    decision, which the insert refuses before anything else is written (False: go
    the other way). After a crash between the member and its hotspot, the
    redelivery finds the member in a hotspot that does not list it, and groups it."""
    new = member_from(event, None)
    now = deps.clock()
    grouping = None
    if domain.groupable(new) and not new.kept_apart:
        grouping = await _grouping(deps, new)
    hotspot_id = grouping.hotspot_id(new) if grouping is not None else None
    if not await deps.repo.add_member(replace(new, hotspot_id=hotspot_id)):
        return False
    if grouping is not None:
        raced: list[str] = []
        grouped = await _join_or_form(deps, new, grouping, now, touched, raced)
        if raced:
            await _follow_member(deps, grouping.hotspot_id(new), grouped)
    return True


async def _routing_again(event: ComplaintRouted, deps: HotspotDeps, touched: list[str]) -> None:
    """A re-routing, or a first routing heard again: from the member as stored."""
    stored = await deps.repo.member(event.complaint_id)
    if stored is not None and _already_applied(stored, event):
        if stored.hotspot_id is None or await _grouped(deps, stored):
            if stored.hotspot_id:
                await deps.repo.announce(stored.hotspot_id)
            return
        stored = replace(stored, hotspot_id=None, routed_event_id="")  # to group again
    new = member_from(event, stored)
    now = deps.clock()
    if stored is not None and stored.hotspot_id and _moved(stored, new):
        touched.append(stored.hotspot_id)
        await _leave(deps, stored.hotspot_id, [new.complaint_id], AUTOMATIC, now)
        new = replace(new, hotspot_id=None)
    raced: list[str] = []
    if new.hotspot_id is None and domain.groupable(new) and not new.kept_apart:
        grouping = await _grouping(deps, new)
        if grouping is not None:
            new = await _join_or_form(deps, new, grouping, now, touched, raced)
    saved = await deps.repo.save_member(new)
    if saved.state_event_id != new.state_event_id:
        raced.append(saved.complaint_id)
    if raced and saved.hotspot_id is not None:
        # A state change of a complaint in no hotspot is stored without the lease
        # (handle_state_changed): one landed on a member this grouping read, and
        # the hotspot it now belongs to follows it as if it came right after.
        await _follow_member(deps, saved.hotspot_id, saved)


async def _grouped(deps: HotspotDeps, member: Member) -> bool:
    """Whether the member's grouping was stored whole: its hotspot lists it and, for
    the hotspot it formed, lists a partner that is stored in it (each is written after
    the hotspot: a crash may have come in between, which is mended here)."""
    assert member.hotspot_id is not None
    hotspot = (await _hotspots(deps, [member.hotspot_id])).get(member.hotspot_id)
    if hotspot is None or member.complaint_id not in hotspot.members:
        return False
    if hotspot.hotspot_id == domain.formed_id(member.complaint_id):
        others = [c for c in hotspot.members if c != member.complaint_id]
        for other in await deps.repo.members(others):
            if other.hotspot_id is None:
                await deps.repo.save_member(replace(other, hotspot_id=hotspot.hotspot_id))
    return True


def _already_applied(stored: Member, event: ComplaintRouted) -> bool:
    """This decision, or a later round's, is what the member already reflects."""
    if stored.routed_event_id == event.event_id:
        return True
    return stored.routed_at is not None and event.occurred_at < stored.routed_at


def _moved(before: Member, after: Member) -> bool:
    """Re-routed to another agency or place, or no longer groupable."""
    return (
        not domain.groupable(after)
        or before.agency != after.agency
        or before.kecamatan != after.kecamatan
        or (before.desa is not None and after.desa is not None and before.desa != after.desa)
    )


@dataclass(frozen=True)
class _Grouping:
    """What the grouping decided for a new member, and what it read to decide it."""

    decision: Join | Form
    candidates: list[Member]
    hotspots: dict[str, Hotspot]

    def hotspot_id(self, new: Member) -> str:
        if isinstance(self.decision, Join):
            return self.decision.hotspot_id
        return domain.formed_id(new.complaint_id)


async def _grouping(deps: HotspotDeps, new: Member) -> _Grouping | None:
    assert new.agency is not None and new.kecamatan is not None
    window = deps.rules.window
    found = await deps.repo.candidates(
        new.region,
        new.agency,
        new.kecamatan.code,
        new.received_at - window,
        new.received_at + window,
    )
    # A member stored before (a redelivery) is among them: not a candidate for itself.
    candidates = [c for c in found if c.complaint_id != new.complaint_id]
    hotspots = await _hotspots(deps, [c.hotspot_id for c in candidates if c.hotspot_id])
    decision = domain.decide(new, candidates, hotspots, deps.rules)
    return None if decision is None else _Grouping(decision, candidates, hotspots)


async def _join_or_form(
    deps: HotspotDeps,
    new: Member,
    grouping: _Grouping,
    now: datetime,
    touched: list[str],
    raced: list[str],
) -> Member:
    """Store the hotspot the decision leads to (and a new hotspot's partner); the new
    member as it is in it."""
    hotspot_id = grouping.hotspot_id(new)
    joined = replace(new, hotspot_id=hotspot_id)
    touched.append(hotspot_id)
    if isinstance(grouping.decision, Join):
        hotspot = grouping.hotspots[hotspot_id]
        if new.complaint_id not in hotspot.members:
            others = await _members(deps, hotspot.members, grouping.candidates)
            after = domain.with_members(hotspot, [*others, joined], now)
            event = change_event(after, HotspotChange.JOINED, AUTOMATIC, now, [new.complaint_id])
            await _save(deps, after, event)
        log.info("complaint joined a hotspot", extra={"complaint_id": new.complaint_id})
        return joined
    partner_id = grouping.decision.partner
    partner = next(c for c in grouping.candidates if c.complaint_id == partner_id)
    formed = domain.form(hotspot_id, partner, new, now)
    event = change_event(
        formed, HotspotChange.FORMED, AUTOMATIC, now, [partner_id, new.complaint_id]
    )
    await _save(deps, formed, event)
    saved = await deps.repo.save_member(replace(partner, hotspot_id=hotspot_id))
    if saved.state_event_id != partner.state_event_id:
        raced.append(partner_id)
    log.info("complaints formed a hotspot", extra={"complaint_id": new.complaint_id})
    return joined


async def _members(
    deps: HotspotDeps, complaint_ids: Sequence[str], known: Sequence[Member]
) -> list[Member]:
    """The members named, in order: those among `known` (just read, as the candidates
    are) as they are, the others read; most of a hotspot's members are candidates."""
    named = set(complaint_ids)
    found = {m.complaint_id: m for m in known if m.complaint_id in named}
    missing = [c for c in complaint_ids if c not in found]
    found |= {m.complaint_id: m for m in await deps.repo.members(missing)}
    return [found[c] for c in complaint_ids if c in found]


async def _leave(
    deps: HotspotDeps, hotspot_id: str, leaving: Sequence[str], actor: str, now: datetime
) -> Hotspot | None:
    hotspot = await deps.repo.hotspot(hotspot_id)
    if hotspot is None:
        return None
    staying = [c for c in hotspot.members if c not in leaving]
    after = domain.with_members(hotspot, await deps.repo.members(staying), now)
    await _save(deps, after, change_event(after, HotspotChange.LEFT, actor, now, leaving))
    return after


# --- the members' lives ---------------------------------------------------------------


async def handle_state_changed(event: ComplaintStateChanged, deps: HotspotDeps) -> None:
    """Keep a member's state (closed, withdrawn, merged as a duplicate...); a hotspot
    whose members are all closed is closed, and opens again when one is reopened."""
    if event.follows_routing:
        return  # the routing decision, heard on its own, says it (Member.current_state)
    change = StateChange(
        complaint_id=event.complaint_id,
        state=event.state.value,
        outcome=event.outcome,
        event_id=event.event_id,
        at=event.occurred_at,
    )
    # Most complaints are in no hotspot: one conditional write, no lease. The
    # grouping notices one that lands while it works (handle_routed).
    routing = event.complaint_id in deps.routing
    if not routing and await deps.repo.record_state(change):
        return
    touched: str | None = None
    async with exclusive(deps):
        if routing and await deps.repo.record_state(change):
            return  # written once the routing before it stored the member
        while True:
            stored = await deps.repo.member(event.complaint_id)
            if stored is None:
                return  # never routed here: no hotspot holds it
            if not change.applies_to(stored):
                if stored.hotspot_id:  # a redelivery: publish what may still be pending
                    await deps.repo.announce(stored.hotspot_id)
                return
            if stored.hotspot_id is None:
                if await deps.repo.record_state(change):
                    return
                continue  # another state change came in between: decide again
            new = replace(stored, **change.fields())
            touched = stored.hotspot_id
            await _follow_member(deps, touched, new)
            # Stored last: a crash before it replays the event, which finds the hotspot done.
            await deps.repo.save_state(new)
            break
    if touched is not None:
        await deps.repo.announce(touched)
        await _gauge_changed(deps)


async def _follow_member(deps: HotspotDeps, hotspot_id: str, member: Member) -> None:
    hotspot = await deps.repo.hotspot(hotspot_id)
    if hotspot is None or member.complaint_id not in hotspot.members:
        return
    others = await deps.repo.members([c for c in hotspot.members if c != member.complaint_id])
    now = deps.clock()
    after = domain.after_member_states(hotspot, [*others, member], now)
    if after is None:
        return
    change = HotspotChange.CLOSED if after.state is HotspotState.CLOSED else HotspotChange.REOPENED
    await _save(deps, after, change_event(after, change, AUTOMATIC, now, [member.complaint_id]))


async def handle_command_rejected(event: CommandRejected, deps: HotspotDeps) -> None:
    """Intake refused one of a hotspot's answers: kept with the member, shown to officers."""
    command = domain.answer_command_of(event.command_id)
    if command is None:
        return  # another sender's command
    hotspot_id, round_, complaint_id = command
    async with exclusive(deps):
        stored = await deps.repo.member(complaint_id)
        if stored is None or any(r.command_id == event.command_id for r in stored.refusals):
            return
        refusal = Refusal(
            command_id=event.command_id,
            hotspot_id=hotspot_id,
            round=round_,
            reason=event.reason,
            at=event.occurred_at,
        )
        kept = (*stored.refusals, refusal)[-domain.KEPT_REFUSALS :]
        await deps.repo.save_member(replace(stored, refusals=kept))


# --- officers' actions ---------------------------------------------------------------


def actor_of(officer: Officer) -> str:
    return f"{officer.role}:{officer.name or officer.agency or 'unknown'}"


async def visible(deps: HotspotDeps, hotspot_id: str, officer: Officer) -> Hotspot:
    """The hotspot if this officer may see it; another agency's looks like none."""
    hotspot = await deps.repo.hotspot(hotspot_id)
    if hotspot is None or not officer.reads_rows_of(hotspot.agency):
        raise Refused(f"no hotspot {hotspot_id}", status=404)
    return hotspot


async def confirm(deps: HotspotDeps, hotspot_id: str, officer: Officer) -> Hotspot:
    async with exclusive(deps):
        hotspot = await visible(deps, hotspot_id, officer)
        if hotspot.state is HotspotState.CONFIRMED:
            return hotspot
        if hotspot.state is not HotspotState.SUGGESTED:
            raise Refused(f"hotspot is {hotspot.state.value}")
        now = deps.clock()
        after = domain.changed(hotspot, now, state=HotspotState.CONFIRMED)
        await _save(
            deps, after, change_event(after, HotspotChange.CONFIRMED, actor_of(officer), now)
        )
    await deps.repo.announce(hotspot_id)
    return after


async def split(
    deps: HotspotDeps, hotspot_id: str, leaving: Sequence[str], together: bool, officer: Officer
) -> tuple[Hotspot, Hotspot | None]:
    """Move `leaving` out: into a new hotspot of their own (`together`, two or more),
    or each alone. Either way the automatic grouping leaves them alone afterwards."""
    actor = actor_of(officer)
    async with exclusive(deps):
        hotspot = await visible(deps, hotspot_id, officer)
        domain.check_split(hotspot, leaving)
        now = deps.clock()
        moved = [m for m in await deps.repo.members(list(dict.fromkeys(leaving)))]
        new: Hotspot | None = None
        if together and len(moved) >= domain.MIN_MEMBERS:
            new_id = domain.split_id(hotspot, moved[0].complaint_id)
            new = domain.form(new_id, moved[0], moved[1], now)
            new = domain.with_members(new, moved, now)
            new = replace(new, version=1, state=HotspotState.CONFIRMED)
        staying = await deps.repo.members([c for c in hotspot.members if c not in leaving])
        after = domain.with_members(hotspot, staying, now)
        event = change_event(
            after,
            HotspotChange.SPLIT,
            actor,
            now,
            [m.complaint_id for m in moved],
            related=new.hotspot_id if new else None,
        )
        await _save(deps, after, event)
        if new is not None:
            formed = change_event(
                new, HotspotChange.FORMED, actor, now, list(new.members), related=hotspot_id
            )
            await _save(deps, new, formed)
        for member in moved:
            target = new.hotspot_id if new is not None else None
            await deps.repo.save_member(replace(member, hotspot_id=target, kept_apart=True))
    await deps.repo.announce(hotspot_id)
    if new is not None:
        await deps.repo.announce(new.hotspot_id)
    await _gauge_changed(deps)
    return after, new


async def merge(deps: HotspotDeps, hotspot_id: str, other_id: str, officer: Officer) -> Hotspot:
    """`other_id`'s members join `hotspot_id`; `other_id` is dissolved."""
    actor = actor_of(officer)
    async with exclusive(deps):
        keep = await visible(deps, hotspot_id, officer)
        absorbed = await visible(deps, other_id, officer)
        domain.check_merge(keep, absorbed)
        now = deps.clock()
        everyone = await deps.repo.members([*keep.members, *absorbed.members])
        after = domain.with_members(keep, everyone, now)
        after = replace(after, state=HotspotState.CONFIRMED)
        await _save(
            deps,
            after,
            change_event(
                after, HotspotChange.MERGED, actor, now, list(absorbed.members), related=other_id
            ),
        )
        gone = domain.changed(absorbed, now, state=HotspotState.DISSOLVED, merged_into=hotspot_id)
        await _save(
            deps, gone, change_event(gone, HotspotChange.MERGED, actor, now, related=hotspot_id)
        )
        for member in everyone:
            if member.hotspot_id != hotspot_id:
                await deps.repo.save_member(replace(member, hotspot_id=hotspot_id))
    await deps.repo.announce(hotspot_id)
    await deps.repo.announce(other_id)
    await _gauge_changed(deps)
    return after


@dataclass(frozen=True)
class AnswerSent:
    hotspot: Hotspot
    round: int
    command_ids: list[str]


async def answer_all(deps: HotspotDeps, hotspot_id: str, text: str, officer: Officer) -> AnswerSent:
    """One `answer` command per member, in the officer's name: intake decides each
    against the complaint's own state, notify tells each reporter by their channel.
    Only the holding agency answers (the lifecycle's rule); sent again with the same
    text, the same commands go out and intake takes each once."""
    hotspot = await visible(deps, hotspot_id, officer)
    if officer.role != Role.AGENCY.value or officer.agency != hotspot.agency:
        raise Refused("only an officer of the holding agency answers its complaints", 403)
    by = officer.name or f"{officer.agency}"
    async with exclusive(deps):
        hotspot = await visible(deps, hotspot_id, officer)
        if hotspot.state is HotspotState.DISSOLVED:
            raise Refused("hotspot is dissolved: answer the hotspot it went into")
        if hotspot.state is HotspotState.CLOSED:
            raise Refused("hotspot is closed: every member's complaint is closed")
        round_, new = domain.answer_round(hotspot, text, by)
        if new:
            now = deps.clock()
            answer = domain.Answer(round=round_, text=text, by=by, at=now)
            hotspot = domain.changed(
                hotspot, now, state=HotspotState.ANSWERED, answers=(*hotspot.answers, answer)
            )
            event = change_event(
                hotspot, HotspotChange.ANSWERED, actor_of(officer), now, answer_round=round_
            )
            await _save(deps, hotspot, event)
    await deps.repo.announce(hotspot_id)
    actor = Actor(role=Role.AGENCY, id=by[:64], agency=officer.agency)
    ids = []
    for complaint_id in hotspot.members:
        command = ComplaintCommand(
            command_id=domain.answer_command_id(hotspot_id, round_, complaint_id),
            complaint_id=complaint_id,
            action=Action.ANSWER,
            actor=actor,
            text=text,
        )
        await deps.commands.publish(command, msg_id=command.command_id)
        ids.append(command.command_id)
    if deps.metrics is not None and new:
        deps.metrics.answered.labels(agency=hotspot.agency).inc(len(ids))
    await _gauge_changed(deps)
    return AnswerSent(hotspot, round_, ids)
