"""What admins watch: every agency's open work (overview) and who answered what,
on time or not, month by month (accountability, the basis for sanctions).

Both read bounded sets through indexes: the overview reads each agency's open
complaints' worklist entries by `open_agency` (never the closed complaints),
accountability one month of one region by (region, received_at). The counting
is pure (`overview_rows`, `accountability`), the durations come from the
performance report's own facts (`lapor.report.facts`), so the two can never
judge a complaint differently.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import State
from lapor.contracts.commands import Role
from lapor.report.facts import PROJECTION, ComplaintFacts, facts_from
from lapor.report.fetch import complaint_filter
from lapor.report.period import period_bounds
from lapor.report.stats import median
from lapor.runtime.http import refusals
from services.intake.auth import Principal
from services.intake.callers import AccountsContext
from services.intake.domain import WORKLIST_STATES
from services.intake.repository import ComplaintRepository
from services.intake.worklist import WORKLIST_ENTRIES

Document = dict[str, Any]

# The actions an official is counted for (history entries' `detail.action`).
OFFICIAL_ACTIONS = frozenset({"acknowledge", "ask", "answer", "close", "forward"})
_ANSWERS = frozenset({"answer", "close"})


class OverviewRow(BaseModel):
    agency: str
    open: int = Field(description="Assigned, in progress, waiting for the citizen or answered")
    overdue: int = Field(description="Open with the nearest pending deadline passed")
    urgent_unacknowledged: int = Field(description="Urgent and not yet acknowledged")
    awaiting_citizen: int = Field(description="Waiting for the citizen's reply (needs_info)")


class Overview(BaseModel):
    region: str
    as_of: datetime
    triage: int = Field(description="Complaints waiting for an admin's triage decision")
    agencies: list[OverviewRow]


def overview_rows(agency: str, groups: Iterable[Mapping[str, Any]], overdue: int) -> OverviewRow:
    """One agency's row from its open complaints grouped by (state, priority)."""
    row = OverviewRow(
        agency=agency, open=0, overdue=overdue, urgent_unacknowledged=0, awaiting_citizen=0
    )
    for group in groups:
        key, n = group["_id"] or {}, int(group["n"])
        if key.get("state") not in WORKLIST_STATES:
            continue
        row.open += n
        if key.get("state") == State.NEEDS_INFO.value:
            row.awaiting_citizen += n
        if key.get("state") == State.ASSIGNED.value and key.get("priority") == "urgent":
            row.urgent_unacknowledged += n
    return row


class AccountabilityRow(BaseModel):
    official: str | None = Field(
        description="The actor id (a session's username, a token's name); null: the agency"
    )
    received: int
    acknowledged: int
    asked: int = 0
    answered: int
    answered_on_time: int
    answered_late: int
    median_hours_to_answer: float | None
    open_breaches: int
    forwarded: int = 0


class AgencyAccountability(BaseModel):
    agency: str
    total: AccountabilityRow
    officials: list[AccountabilityRow]


class Accountability(BaseModel):
    region: str
    month: str
    as_of: datetime
    agencies: list[AgencyAccountability]


@dataclass
class _Tally:
    received: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    asked: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    on_time: set[str] = field(default_factory=set)
    hours: list[float] = field(default_factory=list)
    breaches: set[str] = field(default_factory=set)
    forwarded: set[str] = field(default_factory=set)

    def row(self, official: str | None) -> AccountabilityRow:
        return AccountabilityRow(
            official=official,
            received=len(self.received),
            acknowledged=len(self.acknowledged),
            asked=len(self.asked),
            answered=len(self.answered),
            answered_on_time=len(self.on_time),
            answered_late=len(self.answered - self.on_time),
            median_hours_to_answer=_hours(median(self.hours)),
            open_breaches=len(self.breaches),
            forwarded=len(self.forwarded),
        )


def _hours(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def _official_actions(doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(action, official, the agency they acted for) of the officers' entries, in order."""
    found = []
    for entry in sorted(doc.get("history") or [], key=lambda h: h["at"]):
        action = (entry.get("detail") or {}).get("action")
        role, _, official = str(entry.get("actor") or "").partition(":")
        if role != Role.AGENCY.value or action not in OFFICIAL_ACTIONS or not official:
            continue
        agency = doc.get("agency")
        if action == "forward":  # the agency that said "not ours", no longer the holder
            agency = str(entry.get("reason") or "").split(":", 1)[0] or agency
        found.append((action, official, agency or ""))
    return found


def accountability(
    docs: Iterable[Mapping[str, Any]],
    as_of: datetime,
    agency_of: Mapping[str, str | None] | None = None,
) -> dict[str, tuple[AccountabilityRow, list[AccountabilityRow]]]:
    """Per agency, its totals and its officials' rows, for complaints `docs` (projected
    with `ACCOUNTABILITY_PROJECTION`). `agency_of`: an account's agency by username,
    which decides where an official is listed; otherwise the agency they acted for.
    The definitions are the README's ("Accountability")."""
    agencies: dict[str, _Tally] = defaultdict(_Tally)
    officials: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    for doc in docs:
        facts = facts_from(doc)
        cid = str(doc["_id"])
        if facts.rejected:
            continue
        if facts.agency:
            _count_agency(agencies[facts.agency], cid, facts, as_of)
        answered_by: str | None = None
        for action, official, acted_for in _official_actions(doc):
            home = (agency_of or {}).get(official) or acted_for
            tally = officials[(home, official)]
            tally.received.add(cid)
            if action == "acknowledge":
                tally.acknowledged.add(cid)
            elif action == "ask":
                tally.asked.add(cid)
            elif action == "forward":
                tally.forwarded.add(cid)
                agencies[home].forwarded.add(cid)
            elif action in _ANSWERS and answered_by is None and facts.answered_at is not None:
                answered_by = official
                tally.answered.add(cid)
                if facts.answered_on_time():
                    tally.on_time.add(cid)
                if facts.answer_s is not None:
                    tally.hours.append(facts.answer_s / 3600)
        holder = doc.get("officer")
        if holder and facts.agency and _breached(facts, as_of):
            officials[((agency_of or {}).get(holder) or facts.agency, holder)].breaches.add(cid)
    result: dict[str, tuple[AccountabilityRow, list[AccountabilityRow]]] = {}
    for agency in sorted(set(agencies) | {home for home, _ in officials}):
        rows = [t.row(name) for (home, name), t in sorted(officials.items()) if home == agency]
        result[agency] = (agencies[agency].row(None), rows)
    return result


def _breached(facts: ComplaintFacts, as_of: datetime) -> bool:
    """The answer deadline has passed and no answer came (still open)."""
    return facts.answered_at is None and "answer" in facts.late_clocks(as_of)


def _count_agency(tally: _Tally, cid: str, facts: ComplaintFacts, as_of: datetime) -> None:
    tally.received.add(cid)
    if facts.acknowledged_at is not None:
        tally.acknowledged.add(cid)
    if facts.answered_at is not None:
        tally.answered.add(cid)
        if facts.answered_on_time():
            tally.on_time.add(cid)
        if facts.answer_s is not None:
            tally.hours.append(facts.answer_s / 3600)
    if _breached(facts, as_of):
        tally.breaches.add(cid)


ACCOUNTABILITY_PROJECTION: dict[str, int] = {
    **PROJECTION,
    "history.actor": 1,
    "history.reason": 1,
    "history.detail.action": 1,
    "officer": 1,
}


def month_bounds(month: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[first moment, first moment of the next month) of `YYYY-MM` in the region's zone."""
    try:
        year, number = (int(part) for part in month.split("-"))
        first = date(year, number, 1)
    except ValueError:
        raise ValueError("month is YYYY-MM, e.g. 2026-11") from None
    following = date(year + number // 12, number % 12 + 1, 1)
    lower, upper = period_bounds(first, following - timedelta(days=1), zone)
    assert lower is not None and upper is not None
    return lower, upper


async def read_overview(
    db: AsyncDatabase[Document], region: str, codes: Iterable[str], now: datetime
) -> Overview:
    # The open complaints' small worklist entries (`repository.WORKLIST_ENTRIES`), by
    # `open_agency` first: the equality the database reads through its index.
    complaints = db[WORKLIST_ENTRIES]
    rows = []
    for code in sorted(codes):
        match = {"open_agency": code, "region": region}
        groups = await (
            await complaints.aggregate(
                [
                    {"$match": match},
                    {
                        "$group": {
                            "_id": {"state": "$state", "priority": "$priority"},
                            "n": {"$sum": 1},
                        }
                    },
                ]
            )
        ).to_list(None)
        late = await (
            await complaints.aggregate(
                [{"$match": {**match, "next_deadline": {"$lt": now}}}, {"$count": "n"}]
            )
        ).to_list(None)
        rows.append(overview_rows(code, groups, int(late[0]["n"]) if late else 0))
    triage = await db["complaints"].count_documents({"state": State.TRIAGE.value, "region": region})
    return Overview(region=region, as_of=now, triage=triage, agencies=rows)


@dataclass(frozen=True)
class OversightContext:
    """What the oversight routes are built over (see `build_oversight_routes`)."""

    accounts: AccountsContext
    principal: Callable[..., Any]
    repository: Callable[[], Any]
    zone_of: Callable[[Document], ZoneInfo]
    clock: Callable[[], datetime]

    def region_of(self, region: str | None) -> str:
        chosen = region or self.accounts.default_region
        if chosen not in self.accounts.agencies:
            raise HTTPException(422, detail=f"unknown region {chosen!r}")
        return chosen


RegionChoice = Annotated[
    str | None, Query(max_length=32, description="Default: the default region")
]


def _officer(caller: Principal | None) -> Principal:
    if caller is None:
        raise HTTPException(401, detail="a bearer token is required")
    if caller.role not in (Role.ADMIN, Role.AGENCY):
        raise HTTPException(403, detail="only officers and admins read this")
    return caller


def build_oversight_routes(
    ctx: AccountsContext,
    principal: Callable[..., Any],
    repository: Callable[[], Any],
    zone_of: Callable[[Document], ZoneInfo],
    clock: Callable[[], datetime],
) -> APIRouter:
    router = APIRouter(tags=["oversight"])
    oversight = OversightContext(ctx, principal, repository, zone_of, clock)
    _overview_route(router, oversight)
    _accountability_route(router, oversight)
    return router


def _overview_route(router: APIRouter, ctx: OversightContext) -> None:
    Caller = Annotated[Principal | None, Depends(ctx.principal)]
    Repo = Annotated[ComplaintRepository, Depends(ctx.repository)]

    @router.get(
        "/overview",
        response_model=Overview,
        responses=refusals(
            _401="Missing or unknown token", _403="Not an admin", _422="An unknown region"
        ),
        summary="Every agency's open, overdue, urgent unacknowledged and waiting complaints, "
        "and the triage queue (admins)",
    )
    async def overview(caller: Caller, repo: Repo, region: RegionChoice = None) -> Overview:
        if _officer(caller).role is not Role.ADMIN:
            raise HTTPException(403, detail="only admins see every agency")
        chosen = ctx.region_of(region)
        return await read_overview(
            repo.database, chosen, ctx.accounts.agencies[chosen], ctx.clock()
        )


def _accountability_route(router: APIRouter, ctx: OversightContext) -> None:
    Caller = Annotated[Principal | None, Depends(ctx.principal)]
    Repo = Annotated[ComplaintRepository, Depends(ctx.repository)]

    @router.get(
        "/accountability",
        response_model=Accountability,
        responses=refusals(
            _401="Missing or unknown token",
            _403="A partner's token",
            _422="Not a month, or an unknown region",
        ),
        summary="Per agency and per official, for complaints received in a month: received, "
        "acknowledged, answered on time or late, median hours to answer, open breaches "
        "(admins: every agency; an officer: their own)",
    )
    async def accountability_report(
        caller: Caller,
        repo: Repo,
        month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
        region: RegionChoice = None,
    ) -> Accountability:
        reader = _officer(caller)
        chosen = ctx.region_of(region)
        now = ctx.clock()
        zone = ctx.zone_of({"region": chosen})
        try:
            start, end = month_bounds(month, zone)
        except ValueError as error:
            raise HTTPException(422, detail=str(error)) from None
        table = await _accountability_table(ctx, repo.database, chosen, start, end, now)
        if reader.role is not Role.ADMIN:
            table = {k: v for k, v in table.items() if k == reader.agency}
        return Accountability(
            region=chosen,
            month=month,
            as_of=now,
            agencies=[
                AgencyAccountability(agency=agency, total=total, officials=rows)
                for agency, (total, rows) in table.items()
            ],
        )


async def _accountability_table(
    ctx: OversightContext,
    db: Any,
    region: str,
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, tuple[AccountabilityRow, list[AccountabilityRow]]]:
    docs = db["complaints"].find(complaint_filter(region, start, end), ACCOUNTABILITY_PROJECTION)
    found = [doc async for doc in docs if isinstance(doc.get("received_at"), datetime)]
    # An official is listed under their account's agency, whatever they acted on.
    homes = {doc["_id"]: doc.get("agency") for doc in await ctx.accounts.store().all()}
    return accountability(found, now, homes)
