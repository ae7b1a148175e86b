"""The agency performance report as a plain dict: a pure function of fetched data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lapor.contracts import AGENCY_OUT_OF_SCOPE, SlaClock, State
from lapor.report.facts import ComplaintFacts
from lapor.report.stats import median, percentile, share, wilson_interval

UNASSIGNED = "UNASSIGNED"
UNCATEGORISED = "uncategorised"
# The router's category for a complaint none of its vocabularies matched; no
# agency lists it, so the directory gives it no label.
UNCLASSIFIED = "belum_terklasifikasi"
# Names for what the report itself groups under a placeholder, shown to
# citizens and leaders in place of the code.
PLACEHOLDER_AGENCIES = {UNASSIGNED: "Belum ditentukan (triase)"}
PLACEHOLDER_CATEGORIES = {
    UNCATEGORISED: "Belum diklasifikasikan",
    UNCLASSIFIED: "Belum terklasifikasi (triase)",
}
NOT_RANKED = frozenset({UNASSIGNED, AGENCY_OUT_OF_SCOPE})
MIN_VOLUME = 5
WEAK_LIMIT = 5
CLOCKS = tuple(clock.value for clock in SlaClock)


@dataclass(frozen=True)
class CountRow:
    """Complaints per (agency, category, state, confidential), from a `$group`."""

    agency: str | None
    category: str | None
    state: str | None
    confidential: bool
    n: int


@dataclass(frozen=True)
class RatingRow:
    """Ratings per (agency, category, score) of non-confidential complaints."""

    agency: str | None
    category: str | None
    score: int
    n: int


@dataclass(frozen=True)
class BreachRow:
    """Recorded breaches per agency and clock; category None when not attributable."""

    agency: str | None
    category: str | None
    clock: str
    n: int


@dataclass(frozen=True)
class HotspotRow:
    """One hotspot of the period (the hotspots service's record): where and how many,
    never who or which complaints."""

    agency: str
    kecamatan: str | None
    kecamatan_name: str | None
    desa_name: str | None
    size: int
    state: str
    formed_at: datetime


@dataclass(frozen=True)
class ReportData:
    region: str | None
    start: datetime | None
    end: datetime | None
    as_of: datetime
    counts: Sequence[CountRow]
    ratings: Sequence[RatingRow]
    facts: Sequence[ComplaintFacts]
    # None: no `sla_breaches` collection; breaches are then judged from the
    # complaints' own deadlines.
    breaches: Sequence[BreachRow] | None
    # None: no `hotspots` collection (the hotspots service never ran).
    hotspots: Sequence[HotspotRow] | None = None


@dataclass(frozen=True)
class Labels:
    """What a reader sees instead of codes: agency code → name, category id →
    label, the region's name, and the time zone its people read times in."""

    agencies: Mapping[str, str] = field(default_factory=dict)
    categories: Mapping[str, str] = field(default_factory=dict)
    region: str | None = None
    timezone: str | None = None

    def agency(self, code: str) -> str:
        return self.agencies.get(code) or PLACEHOLDER_AGENCIES.get(code, code)

    def category(self, category: str) -> str:
        if label := self.categories.get(category) or PLACEHOLDER_CATEGORIES.get(category):
            return label
        # A category the directory no longer lists: its id, readable.
        return category.replace("_", " ").capitalize()


@dataclass
class _Group:
    received: int = 0
    confidential: int = 0
    first_response: list[float] = field(default_factory=list)
    answer: list[float] = field(default_factory=list)
    due: int = 0
    on_time: int = 0
    breaches: Counter[str] = field(default_factory=Counter)
    rating_sum: int = 0
    rating_n: int = 0
    concluded: int = 0
    reopened: int = 0
    withdrawn: int = 0
    agencies: Counter[str] = field(default_factory=Counter)


def _agency(code: str | None) -> str:
    return code or UNASSIGNED


def _category(category: str | None) -> str:
    return category or UNCATEGORISED


def _add_facts(group: _Group, facts: ComplaintFacts, as_of: datetime) -> None:
    if facts.first_response_s is not None:
        group.first_response.append(facts.first_response_s)
    if facts.answer_s is not None:
        group.answer.append(facts.answer_s)
    if facts.answer_judgeable(as_of):
        group.due += 1
        group.on_time += facts.answered_on_time()
    group.concluded += facts.concluded
    group.reopened += facts.reopened
    group.withdrawn += facts.withdrawn_at is not None


def _collect(data: ReportData) -> tuple[dict[str, _Group], dict[str, _Group], _Group, int]:
    agencies: dict[str, _Group] = {}
    categories: dict[str, _Group] = {}
    total = _Group()
    rejected = 0

    def groups(row: Any, with_category: bool) -> Iterable[_Group]:
        yield agencies.setdefault(_agency(row.agency), _Group())
        yield total
        if with_category:
            yield categories.setdefault(_category(row.category), _Group())

    for row in data.counts:
        if row.state == State.REJECTED:
            rejected += row.n
            continue
        # Confidential complaints are counted for their agency and nothing else.
        for group in groups(row, with_category=not row.confidential):
            group.received += row.n
            group.confidential += row.n if row.confidential else 0
        if not row.confidential:
            categories[_category(row.category)].agencies[_agency(row.agency)] += row.n
    for facts in data.facts:
        if facts.rejected:
            continue
        for group in groups(facts, with_category=True):
            _add_facts(group, facts, data.as_of)
    for rating in data.ratings:
        for group in groups(rating, with_category=True):
            group.rating_sum += rating.score * rating.n
            group.rating_n += rating.n
    _collect_breaches(data, agencies, categories, total)
    return agencies, categories, total, rejected


def _collect_breaches(
    data: ReportData, agencies: dict[str, _Group], categories: dict[str, _Group], total: _Group
) -> None:
    if data.breaches is not None:
        for breach in data.breaches:
            agencies.setdefault(_agency(breach.agency), _Group()).breaches[breach.clock] += breach.n
            total.breaches[breach.clock] += breach.n
            if breach.category is not None:
                group = categories.setdefault(_category(breach.category), _Group())
                group.breaches[breach.clock] += breach.n
        return
    for facts in data.facts:
        for clock in facts.late_clocks(data.as_of):
            agencies.setdefault(_agency(facts.agency), _Group()).breaches[clock] += 1
            categories.setdefault(_category(facts.category), _Group()).breaches[clock] += 1
            total.breaches[clock] += 1


def _hours(seconds: float | None) -> float | None:
    return round(seconds / 3600, 2) if seconds is not None else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return round(value, digits) if value is not None else None


def _durations(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "median_hours": _hours(median(values)),
        "p90_hours": _hours(percentile(values, 90)),
    }


def _figures(group: _Group) -> dict[str, Any]:
    interval = wilson_interval(group.on_time, group.due)
    return {
        "received": group.received,
        "confidential": group.confidential,
        "time_to_first_response": _durations(group.first_response),
        "time_to_answer": _durations(group.answer),
        "answered_within_deadline": {
            "due": group.due,
            "on_time": group.on_time,
            "share": _round(share(group.on_time, group.due)),
            "wilson_lower": _round(interval[0]) if interval else None,
            "wilson_upper": _round(interval[1]) if interval else None,
        },
        "breaches": {
            "total": sum(group.breaches.values()),
            "by_clock": {clock: group.breaches.get(clock, 0) for clock in CLOCKS},
        },
        "rating": {
            "n": group.rating_n,
            "average": _round(share(group.rating_sum, group.rating_n), 2),
        },
        "reopen": {
            "concluded": group.concluded,
            "reopened": group.reopened,
            "rate": _round(share(group.reopened, group.concluded)),
        },
        # Closed by their citizens: no answer of the agency's, nor a breach after it.
        "withdrawn": group.withdrawn,
    }


def _rank(rows: list[dict[str, Any]], min_volume: int) -> list[str]:
    def eligible(row: dict[str, Any]) -> bool:
        return (
            row["agency"] not in NOT_RANKED and row["answered_within_deadline"]["due"] >= min_volume
        )

    ranked = sorted(
        (row for row in rows if eligible(row)),
        key=lambda row: (
            -row["answered_within_deadline"]["wilson_lower"],
            -row["answered_within_deadline"]["due"],
            row["agency"],
        ),
    )
    for position, row in enumerate(ranked, start=1):
        row["rank"] = position
    for row in rows:
        if not eligible(row):
            row["rank"] = None
            row["not_ranked_because"] = (
                "not an agency"
                if row["agency"] in NOT_RANKED
                else f"fewer than {min_volume} complaints due for an answer"
            )
    return [row["agency"] for row in ranked]


def _weak_services(
    categories: list[dict[str, Any]], overall: float | None, min_volume: int, limit: int
) -> list[dict[str, Any]]:
    weak = []
    for row in categories:
        compliance = row["answered_within_deadline"]
        if compliance["due"] < min_volume or compliance["share"] is None:
            continue
        if overall is not None and compliance["share"] >= overall:
            continue
        weak.append(
            {
                "category": row["category"],
                "label": row["label"],
                "agencies": row["agencies"],
                "received": row["received"],
                "due": compliance["due"],
                "missed": compliance["due"] - compliance["on_time"],
                "share": compliance["share"],
                "wilson_upper": compliance["wilson_upper"],
            }
        )
    weak.sort(key=lambda row: (-row["missed"], row["share"], -row["received"], row["category"]))
    return weak[:limit]


# Complaints whose place is not known (none named, or ambiguous).
UNKNOWN_KECAMATAN = "unknown"


def _kecamatan_rows(data: ReportData) -> list[dict[str, Any]]:
    """Per kecamatan: received and answer figures. Confidential complaints are
    left out: their place is a statistic detail."""
    groups: dict[str, _Group] = {}
    names: dict[str, str] = {}
    for facts in data.facts:
        if facts.rejected or facts.confidential:
            continue
        code = facts.kecamatan or UNKNOWN_KECAMATAN
        names.setdefault(code, facts.kecamatan_name or "tidak diketahui")
        group = groups.setdefault(code, _Group())
        group.received += 1
        _add_facts(group, facts, data.as_of)
    order = sorted(groups, key=lambda code: (code == UNKNOWN_KECAMATAN, code))
    return [{"kecamatan": code, "name": names[code], **_figures(groups[code])} for code in order]


HOTSPOT_LIMIT = 10


def _hotspots(data: ReportData, names: Labels, limit: int) -> dict[str, Any] | None:
    """The largest hotspots first, and how many per agency and per kecamatan: where
    many citizens report one problem, the service there is weak."""
    if data.hotspots is None:
        return None
    ranked = sorted(data.hotspots, key=lambda h: (-h.size, h.formed_at))
    by_agency: Counter[str] = Counter(h.agency for h in ranked)
    kecamatan: dict[str, str] = {}
    by_kecamatan: Counter[str] = Counter()
    for h in ranked:
        code = h.kecamatan or UNKNOWN_KECAMATAN
        kecamatan.setdefault(code, h.kecamatan_name or "tidak diketahui")
        by_kecamatan[code] += 1
    return {
        "total": len(ranked),
        "open": sum(h.state in ("suggested", "confirmed") for h in ranked),
        "complaints": sum(h.size for h in ranked),
        "largest": [
            {
                "rank": number,
                "agency": h.agency,
                "agency_name": names.agency(h.agency),
                "kecamatan": h.kecamatan,
                "kecamatan_name": h.kecamatan_name,
                "desa_name": h.desa_name,
                "size": h.size,
                "state": h.state,
                "formed_at": h.formed_at.isoformat(),
            }
            for number, h in enumerate(ranked[:limit], start=1)
        ],
        "by_agency": [
            {"agency": code, "name": names.agency(code), "hotspots": n}
            for code, n in sorted(by_agency.items(), key=lambda item: (-item[1], item[0]))
        ],
        "by_kecamatan": [
            {"kecamatan": code, "name": kecamatan[code], "hotspots": n}
            for code, n in sorted(by_kecamatan.items(), key=lambda item: (-item[1], item[0]))
        ],
    }


def build_report(
    data: ReportData,
    *,
    labels: Labels | None = None,
    min_volume: int = MIN_VOLUME,
    weak_limit: int = WEAK_LIMIT,
) -> dict[str, Any]:
    """Per agency and per category figures, a fair ranking and the weak services."""
    names = labels or Labels()
    agencies, categories, total, rejected = _collect(data)
    agency_rows = [
        {"agency": code, "name": names.agency(code), **_figures(group)}
        for code, group in sorted(agencies.items())
    ]
    ranking = _rank(agency_rows, min_volume)
    category_rows = [
        {
            "category": category,
            "label": names.category(category),
            "agencies": [code for code, _ in group.agencies.most_common()],
            **_figures(group),
        }
        for category, group in sorted(categories.items())
    ]
    totals = {**_figures(total), "rejected": rejected}
    overall = totals["answered_within_deadline"]["share"]
    return {
        "report": "agency_performance",
        "region": data.region,
        "region_name": names.region or data.region,
        "timezone": names.timezone,
        "period": {
            "from": data.start.isoformat() if data.start else None,
            "to": data.end.isoformat() if data.end else None,
        },
        "as_of": data.as_of.isoformat(),
        "method": {
            "ranking": "Wilson score lower bound (95%) of the share answered within the deadline",
            "min_volume": min_volume,
            "breaches_source": "sla_breaches" if data.breaches is not None else "deadlines",
            "time_to_first_response": "assignment to the agency's first response (in_progress)",
            "time_to_answer": "receipt to the answer (responded, or closed by the agency)",
        },
        "totals": totals,
        "agencies": agency_rows,
        "ranking": ranking,
        "categories": category_rows,
        "weak_services": _weak_services(category_rows, overall, min_volume, weak_limit),
        "kecamatan": _kecamatan_rows(data),
        "hotspots": _hotspots(data, names, HOTSPOT_LIMIT),
    }
