"""Hand-made complaints with known report figures, shared by unit and integration tests.

All times are offsets from T0; the report is taken at AS_OF (T0 + 30 days), so
every 14-day answer deadline has passed.

PUPR / jalan, six complaints (times in hours after receipt):
  p1  assigned 1, ack 3, responded 48                 on time, rated 5
  p2  assigned 1, ack 5, responded 96                 on time
  p3  assigned 1, ack 25, responded 480 (20 days)     late
  p4  assigned 1, nothing since                       late (overdue), first response late
  p5  assigned 2, ack 3, responded 24, reopened 48, responded 72   on time, reopened
  p6  assigned 1, ack 2, responded 120, closed 144    on time, rated 4
  first response hours [2, 4, 24, 1, 1] -> median 2, p90 16
  answer hours [48, 96, 480, 24, 120]  -> median 96, p90 336
  due 6, on time 4; concluded 5, reopened 1; rating 4.5 from 2
DINKES / puskesmas: two on time (too few to rank).
DISDUKCAPIL / ktp: five on time (ranked first).
DP3A: one confidential complaint (counts only).
One complaint rejected by an admin (not counted as received).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from lapor.report import CountRow, RatingRow, ReportData, facts_from

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
AS_OF = T0 + timedelta(days=30)
REGION = "banjar"


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def complaint(
    complaint_id: str,
    agency: str | None,
    category: str | None,
    steps: list[tuple[float, str]],
    *,
    rating: int | None = None,
    confidential: bool = False,
    priority: str = "normal",
) -> dict[str, Any]:
    history = [{"at": T0, "state": "received", "actor": "intake:sms", "reason": "stored"}]
    history += [
        {
            "at": _at(h),
            "state": s,
            "actor": "x",
            "reason": "y",
            "detail": {"text": "detail-pribadi-xyz"},
        }
        for h, s in steps
    ]
    state = steps[-1][1] if steps else "received"
    assigned = next((h for h, s in steps if s == "assigned"), None)
    doc: dict[str, Any] = {
        "_id": complaint_id,
        "region": REGION,
        "channel": "sms",
        "text": f"teks aduan {complaint_id} yang tidak boleh muncul",
        "received_at": T0,
        "state": state,
        "agency": agency,
        "priority": priority,
        "category": category,
        "anonymous": False,
        "confidential": confidential,
        "deadlines": {
            "routing": T0 + timedelta(days=3),
            "first_response": _at(assigned + 120) if assigned is not None else None,
            "answer": T0 + timedelta(days=14),
        },
        "history": history,
        "reporter": {"phone_hash": "hash-" + complaint_id},
    }
    if rating is not None:
        doc["rating"] = {"score": rating, "comment": "komentar", "at": _at(200)}
    return doc


def complaints() -> list[dict[str, Any]]:
    pupr = [
        complaint(
            "P1",
            "PUPR",
            "jalan",
            [(1, "assigned"), (3, "in_progress"), (48, "responded")],
            rating=5,
        ),
        complaint("P2", "PUPR", "jalan", [(1, "assigned"), (5, "in_progress"), (96, "responded")]),
        complaint(
            "P3", "PUPR", "jalan", [(1, "assigned"), (25, "in_progress"), (480, "responded")]
        ),
        complaint("P4", "PUPR", "jalan", [(1, "assigned")]),
        complaint(
            "P5",
            "PUPR",
            "jalan",
            [
                (2, "assigned"),
                (3, "in_progress"),
                (24, "responded"),
                (48, "in_progress"),
                (72, "responded"),
            ],
        ),
        complaint(
            "P6",
            "PUPR",
            "jalan",
            [(1, "assigned"), (2, "in_progress"), (120, "responded"), (144, "closed")],
            rating=4,
        ),
    ]
    on_time = [(1, "assigned"), (2, "in_progress"), (30, "responded")]
    dinkes = [complaint(f"D{i}", "DINKES", "puskesmas", on_time) for i in range(2)]
    disduk = [complaint(f"K{i}", "DISDUKCAPIL", "ktp", on_time) for i in range(5)]
    secret = complaint("S1", "DP3A", "kekerasan_anak", on_time, rating=1, confidential=True)
    rejected = complaint("R1", None, None, [(1, "rejected")])
    return [*pupr, *dinkes, *disduk, secret, rejected]


def breaches() -> list[dict[str, Any]]:
    """`sla_breaches` records: P3 and P4 missed the answer, P4 the first response."""

    def record(complaint_id: str, clock: str, due: datetime) -> dict[str, Any]:
        return {
            "_id": f"{complaint_id}:{clock}",
            "complaint_id": complaint_id,
            "agency": "PUPR",
            "official": None,
            "clock": clock,
            "due_at": due,
            "breached_at": due,
            "late_by": 0.0,
            "level": "liaison",
            "priority": "normal",
            "region": REGION,
        }

    answer_due = T0 + timedelta(days=14)
    return [
        record("P3", "answer", answer_due),
        record("P4", "answer", answer_due),
        record("P4", "first_response", _at(121)),
    ]


def report_data(docs: list[dict[str, Any]], *, with_breaches: bool) -> ReportData:
    """What `fetch_report_data` returns for `docs`, built without a database."""
    counts: Counter[tuple[Any, ...]] = Counter(
        (d["agency"], d["category"], d["state"], d["confidential"]) for d in docs
    )
    public = [d for d in docs if not d["confidential"]]
    ratings: Counter[tuple[Any, ...]] = Counter(
        (d["agency"], d["category"], d["rating"]["score"]) for d in public if "rating" in d
    )
    breach_rows = None
    if with_breaches:
        from lapor.report import BreachRow

        category = {d["_id"]: d["category"] for d in public}
        grouped: Counter[tuple[Any, ...]] = Counter(
            (b["agency"], category.get(b["complaint_id"]), b["clock"]) for b in breaches()
        )
        breach_rows = [BreachRow(*key, n) for key, n in grouped.items()]
    return ReportData(
        region=REGION,
        start=None,
        end=None,
        as_of=AS_OF,
        counts=[CountRow(*key, n) for key, n in counts.items()],
        ratings=[RatingRow(*key, n) for key, n in ratings.items()],
        facts=[facts_from(d) for d in public],
        breaches=breach_rows,
    )
