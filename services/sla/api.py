"""The accountability record over HTTP: breaches per agency and period.

`GET /api/v1/breaches?agency=PUPR&from=2026-11-01&to=2026-12-01`

A period is `[from, to)` over the breached deadline (`due_at`); a bare date is
midnight in the region's time zone, a date-time may carry its own offset. Every
time in the answer is ISO 8601 with the region's offset (Banjar: +08:00). An
open breach (the clock still not stopped) shows how late it is now.

Who reads it (`lapor.audience`, "breaches"): admins every agency's breaches; an
agency's officer only their own agency's (without `agency`, theirs is meant;
another agency's is refused with 403); nobody else (401/403).
"""

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from lapor.calendar import WorkingCalendar
from lapor.contracts import EscalationLevel, Priority, SlaClock
from lapor.runtime.http import refusals
from lapor.tokens import FindToken, Officer, officer_dependency
from services.sla.handlers import SlaDeps

MAX_LIMIT = 10_000


class Breach(BaseModel):
    complaint_id: str
    region: str
    agency: str | None = Field(description="Agency held to the clock when it was breached.")
    official: str | None = Field(description="The assigned official, where one is known.")
    clock: SlaClock
    round: int = Field(
        description="Routing round (first_response); for answer 0 is the first answer and "
        "n the answer owed after the citizen's n-th reopening; 0 for routing."
    )
    priority: Priority
    due_at: datetime = Field(description="The deadline that passed.")
    breached_at: datetime | None = Field(description="When SLA recorded the breach.")
    late_by_s: float = Field(description="Seconds late: until the clock stopped, or until now.")
    late_by: str = Field(description="The same as an ISO 8601 duration, e.g. P2DT3H.")
    level: EscalationLevel | None = Field(description="Highest escalation level reached.")
    escalations: dict[EscalationLevel, datetime] = Field(default_factory=dict)
    resolved_at: datetime | None = Field(description="When the clock finally stopped.")
    open: bool = Field(description="True while the clock still runs past its deadline.")


class BreachReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    region: str
    agency: str | None
    period_from: datetime | None = Field(alias="from")
    period_to: datetime | None = Field(alias="to")
    total: int = Field(description="Breaches in the period (all clocks).")
    counts: dict[SlaClock, int] = Field(description="Breaches in the period per clock.")
    returned: int
    breaches: list[Breach]


def iso_duration(seconds: float) -> str:
    """Whole seconds as an ISO 8601 duration: 93784 -> P1DT2H3M4S, 0 -> PT0S."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    clock = "".join(
        f"{value}{unit}" for value, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if value
    )
    if not days and not clock:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")


def parse_bound(value: str | None, calendar: WorkingCalendar, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, datetime.min.time(), tzinfo=calendar.tz)
        else:
            moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise HTTPException(
            status_code=422, detail=f"{name}: expected YYYY-MM-DD or an ISO 8601 date-time"
        ) from exc
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=calendar.tz)
    try:
        # Stored and shown times are UTC and local: the bound must exist in both
        # (0001-01-01T00:00+14:00 does not).
        moment.astimezone(UTC)
        calendar.local(moment)
    except OverflowError:
        raise HTTPException(status_code=422, detail=f"{name}: outside the calendar") from None
    return moment


def _breach(doc: dict[str, Any], calendar: WorkingCalendar, now: datetime) -> Breach:
    due = doc["due_at"]
    resolved = doc.get("resolved_at")
    late = float(doc.get("late_by_s") or 0.0)
    if resolved is None:
        late = max(late, (now - due).total_seconds())
    else:
        late = (resolved - due).total_seconds()
    rank = int(doc.get("level_rank") or 0)
    escalations = {
        EscalationLevel(level): calendar.local(at)
        for level, at in (doc.get("escalations") or {}).items()
    }
    breached = doc.get("breached_at")
    return Breach(
        complaint_id=doc["complaint_id"],
        region=doc["region"],
        agency=doc.get("agency"),
        official=doc.get("official"),
        clock=SlaClock(doc["clock"]),
        round=int(doc.get("round") or 0),
        priority=Priority(doc["priority"]),
        due_at=calendar.local(due),
        breached_at=calendar.local(breached) if breached else None,
        late_by_s=round(late, 3),
        late_by=iso_duration(late),
        level=list(EscalationLevel)[rank - 1] if rank else None,
        escalations=escalations,
        resolved_at=calendar.local(resolved) if resolved else None,
        open=resolved is None,
    )


def breaches_router(get_deps: Callable[[], SlaDeps], find_token: FindToken) -> APIRouter:
    """`find_token` looks up the stored API token (`lapor.tokens.stored_tokens`)."""
    router = APIRouter(prefix="/api/v1", tags=["accountability"])
    Reader = Annotated[Officer, Depends(officer_dependency(find_token))]

    @router.get(
        "/breaches",
        response_model=BreachReport,
        responses=refusals(
            _401="Missing, unknown, expired or revoked token",
            _403="Not an officer or admin token, or another agency's breaches",
            _404="Unknown region",
            _422="Invalid period, clock or limit",
        ),
        summary="Breached deadlines per agency and period, with counts per clock",
    )
    async def list_breaches(
        reader: Reader,
        agency: Annotated[
            str | None, Query(description="Agency code, e.g. PUPR.", max_length=32)
        ] = None,
        period_from: Annotated[
            str | None,
            Query(alias="from", description="Start (inclusive) of the period, e.g. 2026-11-01."),
        ] = None,
        period_to: Annotated[
            str | None,
            Query(alias="to", description="End (exclusive) of the period, e.g. 2026-12-01."),
        ] = None,
        region: Annotated[
            str | None, Query(description="Region id; the service's default region if absent.")
        ] = None,
        clock: Annotated[SlaClock | None, Query(description="Only this clock.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
    ) -> BreachReport:
        if reader.role != "admin":
            agency = agency or reader.agency
            if not reader.reads_rows_of(agency):
                raise HTTPException(403, detail="an officer reads only their agency's breaches")
        deps = get_deps()
        rules = deps.regions.get(region or deps.default_region)
        if rules is None:
            raise HTTPException(404, detail=f"unknown region {region or deps.default_region!r}")
        start = parse_bound(period_from, rules.calendar, "from")
        end = parse_bound(period_to, rules.calendar, "to")
        if start is not None and end is not None and end <= start:
            raise HTTPException(status_code=422, detail="`to` must be after `from`")
        filters: dict[str, Any] = {"agency": agency, "region": region, "start": start, "end": end}
        return await breach_report(deps, rules.calendar, filters, clock, limit)

    return router


async def breach_report(
    deps: SlaDeps,
    calendar: WorkingCalendar,
    filters: dict[str, Any],
    clock: SlaClock | None,
    limit: int,
) -> BreachReport:
    """The breaches matching `filters` (agency, region, start, end), with counts per clock."""
    store = deps.engine.store
    docs = await store.breaches(clock=clock.value if clock else None, limit=limit, **filters)
    counted = await store.breach_counts(**filters)
    counts = {c: counted.get(c.value, 0) for c in SlaClock}
    now = deps.clock()
    start, end = filters["start"], filters["end"]
    return BreachReport(
        region=filters["region"] or deps.default_region,
        agency=filters["agency"],
        period_from=calendar.local(start) if start else None,
        period_to=calendar.local(end) if end else None,
        total=sum(counts.values()),
        counts=counts,
        returned=len(docs),
        breaches=[_breach(doc, calendar, now) for doc in docs],
    )
