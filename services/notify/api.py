"""A complaint's delivery log over HTTP: every notification it caused, how each attempt ended.

`GET /api/v1/complaints/{complaint_id}/notifications`

This is where a notification that failed for good shows on its complaint,
with the reason (rejected, exhausted, undeliverable, receipt) and the last
error, next to those that went out. Recipients are shown as the log keeps them
(a citizen's number masked); errors pass through the same masking, because a
gateway may quote the number back. Times are ISO 8601 in the complaint's
region (Banjar: +08:00).

Who reads it (`lapor.audience`, "delivery log"): admins every row; an agency's
officer only the rows addressed to their own agency; nobody else (401/403).
"""

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from lapor.runtime.http import refusals
from lapor.runtime.logs import mask_phones
from lapor.tokens import FindToken, Officer, officer_dependency
from services.notify.repository import NotificationRepository

Status = Literal["pending", "sent", "delivered", "failed", "withheld"]


class Attempt(BaseModel):
    n: int
    transport: str | None
    started_at: datetime
    finished_at: datetime | None = Field(description="None while the attempt is in flight.")
    outcome: str | None = Field(description="sent, temporary, permanent or abandoned.")
    error: str | None


class DeliveryRecord(BaseModel):
    notification_id: str
    cause_event_id: str = Field(description="The event that called for this notification.")
    audience: Literal["citizen", "official"]
    channel: str = Field(description="sms, email or webhook.")
    transport: str | None
    template: str
    recipient: str = Field(description="A citizen's number masked; an official's address.")
    agency: str | None
    level: str | None = Field(description="Escalation level of an official recipient.")
    status: Status
    attempts: int
    last_error: str | None
    failure_reason: str | None = Field(
        description="Why it failed for good: rejected, exhausted, undeliverable or receipt."
    )
    withheld_reason: str | None = Field(description="Why it was not sent (confidentiality).")
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    attempt_log: list[Attempt]


class DeliveryLog(BaseModel):
    complaint_id: str
    total: int
    failed: int = Field(description="Notifications that failed for good.")
    counts: dict[Status, int] = Field(description="Notifications per status.")
    notifications: list[DeliveryRecord] = Field(description="In the order they were created.")


def _local(value: datetime, zone: tzinfo) -> datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(zone)


def _local_or_none(value: datetime | None, zone: tzinfo) -> datetime | None:
    return None if value is None else _local(value, zone)


def _masked(value: str | None) -> str | None:
    return mask_phones(value) if value else value


def delivery_record(
    doc: Mapping[str, Any], attempts: list[dict[str, Any]], zone: tzinfo
) -> DeliveryRecord:
    def at(key: str) -> datetime | None:
        return _local_or_none(doc.get(key), zone)

    return DeliveryRecord(
        notification_id=doc["_id"],
        cause_event_id=doc.get("cause_event_id") or "-",
        audience=doc.get("audience", "citizen"),
        channel=doc.get("channel", "sms"),
        transport=doc.get("transport"),
        template=doc.get("template", "-"),
        recipient=mask_phones(doc.get("recipient") or "-"),
        agency=doc.get("agency"),
        level=doc.get("level"),
        status=doc["status"],
        attempts=int(doc.get("attempts") or 0),
        last_error=_masked(doc.get("last_error")),
        failure_reason=doc.get("failure_reason"),
        withheld_reason=doc.get("withheld_reason"),
        created_at=_local(doc["created_at"], zone),
        updated_at=_local(doc.get("updated_at") or doc["created_at"], zone),
        next_attempt_at=at("next_attempt_at"),
        sent_at=at("sent_at"),
        delivered_at=at("delivered_at"),
        failed_at=at("failed_at"),
        attempt_log=[
            Attempt(
                n=int(a["n"]),
                transport=a.get("transport"),
                started_at=_local(a["started_at"], zone),
                finished_at=_local_or_none(a.get("finished_at"), zone),
                outcome=a.get("outcome"),
                error=_masked(a.get("error")),
            )
            for a in attempts
        ],
    )


def delivery_router(
    get_repo: Callable[[], NotificationRepository],
    zones: Mapping[str, tzinfo],
    default_region: str,
    find_token: FindToken,
) -> APIRouter:
    """`find_token` looks up the stored API token (`lapor.tokens.stored_tokens`)."""
    router = APIRouter(prefix="/api/v1", tags=["delivery"])
    Reader = Annotated[Officer, Depends(officer_dependency(find_token))]

    @router.get(
        "/complaints/{complaint_id}/notifications",
        response_model=DeliveryLog,
        responses=refusals(
            _401="Missing, unknown, expired or revoked token",
            _403="Not an officer or admin token",
            _404="Notify knows nothing of this complaint",
        ),
        summary="Every notification a complaint caused, with its status and attempts",
    )
    async def complaint_notifications(
        complaint_id: Annotated[
            str,
            Path(
                description="Tracking id, e.g. LPR-2611-7K3M9QX2.",
                max_length=64,
                pattern=r"^[A-Za-z0-9_:-]+$",
            ),
        ],
        reader: Reader,
    ) -> DeliveryLog:
        repo = get_repo()
        found = await repo.for_complaint(complaint_id)
        docs = [doc for doc in found if reader.reads_rows_of(doc.get("agency"))]
        region = await repo.region_of(complaint_id)
        if not docs and region is None:
            raise HTTPException(status_code=404, detail=f"no notifications for {complaint_id!r}")
        zone = zones.get(region or default_region) or zones.get(default_region) or UTC
        # A record carries its attempts; one stored before that reads them apart.
        records = [delivery_record(doc, await repo.attempts_of(doc), zone) for doc in docs]
        counts: dict[Status, int] = {}
        for record in records:
            counts[record.status] = counts.get(record.status, 0) + 1
        return DeliveryLog(
            complaint_id=complaint_id,
            total=len(records),
            failed=counts.get("failed", 0),
            counts=counts,
            notifications=records,
        )

    return router
