"""Photos of a complaint over HTTP, and the use cases the web API and Open311 share.

Upload (`POST /api/v1/complaints/{id}/photos`, multipart `file`): the reporter
(secret link), an officer of the holding agency or an admin. Download
(`GET .../photos/{photo_id}`): whoever `lapor.audience.POLICY` lets see the
part `photos`; outside a confidential complaint's circle the photo does not
exist (404), as the complaint does not.

A photo is kept in two writes: its bytes in the photo store, then its record in
the complaint, with the `PhotoAttached` announcement in the same write (the
outbox). It is accepted (201) only after both. A refused upload is kept as a
record (reason, size, declared type, hash, never the bytes) and announced as
`PhotoRefused`.
"""

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Path, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field

from lapor.audience import Audience, access
from lapor.contracts import Channel
from lapor.contracts.photos import PhotoRefused as PhotoRefusedEvent
from lapor.contracts.photos import PhotoType, Uploader
from lapor.runtime.http import refusals
from services.intake.auth import (
    Principal,
    caller_dependency,
)
from services.intake.callers import (
    CallerDependency,
    CitizenKey,
    CitizenLinks,
    TrackingId,
    complaint_for,
    identified,
)
from services.intake.photo_store import PhotoStore
from services.intake.photos import (
    EXTENSIONS,
    STATUS,
    PhotoLimits,
    PhotoRefused,
    attach_change,
    attached,
    check_attachable,
    clean,
    new_photo_id,
    photo_record,
    photo_url,
)
from services.intake.repository import ComplaintRepository

log = logging.getLogger(__name__)

# Decoding a 4000 x 4000 photo takes about 100 MB at its peak and a core: one at a time.
DECODERS = 1


class PhotoMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "lapor_photos_accepted_total",
            "Photos stored with a complaint (a resent one counts once), by channel",
            ["channel"],
            registry=registry,
        )
        self.refused = Counter(
            "lapor_photos_refused_total",
            "Uploads refused as photos and kept as refusal records, by channel and reason",
            ["channel", "reason"],
            registry=registry,
        )


class PhotoView(BaseModel):
    id: str
    content_type: PhotoType
    size: int
    width: int
    height: int
    uploaded_at: datetime
    url: str = Field(
        description="Where the image is served, to the same credentials (bearer token, or "
        "the reporter's `?key=`)."
    )


def photo_view(tracking_id: str, record: dict[str, Any]) -> PhotoView:
    return PhotoView(
        id=record["id"],
        content_type=record["content_type"],
        size=record["size"],
        width=record["width"],
        height=record["height"],
        uploaded_at=record["uploaded_at"],
        url=photo_url(tracking_id, record["id"]),
    )


def photo_views(doc: dict[str, Any], audience: Audience) -> list[PhotoView]:
    """The complaint's photos as `audience` may see them: all, or none."""
    if not access(audience, "photos").shown:
        return []
    return [photo_view(doc["_id"], record) for record in doc.get("photos") or []]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class PhotoDeps:
    repository: Callable[[], ComplaintRepository]
    store: Callable[[], PhotoStore]
    metrics: PhotoMetrics | None = None
    limits: PhotoLimits = field(default_factory=PhotoLimits)
    clock: Callable[[], datetime] = _utcnow
    decoders: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(DECODERS))


@dataclass(frozen=True)
class Upload:
    data: bytes
    declared_type: str | None
    channel: Channel
    uploader: Principal


def _uploaded_by(principal: Principal) -> Uploader:
    return principal.role.value  # type: ignore[return-value]


async def clean_upload(deps: PhotoDeps, upload: Upload, complaint_id: str | None) -> Any:
    """The upload stripped and checked, or `PhotoRefused` after keeping the refusal."""
    try:
        async with deps.decoders:
            return await asyncio.to_thread(clean, upload.data, deps.limits)
    except PhotoRefused as refused:
        await keep_refusal(deps, refused, upload, complaint_id)
        raise


async def attach_photo(
    deps: PhotoDeps, complaint_id: str, upload: Upload, photo: Any = None
) -> tuple[dict[str, Any], bool]:
    """Keep `upload` as a photo of the complaint: (its record, whether it is new).

    The same bytes again (a resend) return the photo already attached. Raises
    `PhotoRefused` (after keeping the refusal) for an upload that is no photo or
    a complaint that takes none, and LookupError for no such complaint.
    """
    repo, store = deps.repository(), deps.store()
    photo = photo or await clean_upload(deps, upload, complaint_id)
    doc = await repo.get(complaint_id)
    if doc is None:
        raise LookupError(complaint_id)
    if (known := attached(doc, photo.sha256)) is not None:
        return known, False
    try:
        check_attachable(doc, deps.limits)
    except PhotoRefused as refused:
        await keep_refusal(deps, refused, upload, complaint_id)
        raise
    now = deps.clock()
    photo_id = new_photo_id()
    uploaded_by = _uploaded_by(upload.uploader)
    record = photo_record(photo, photo_id, uploaded_at=now, uploaded_by=uploaded_by)
    metadata = {
        "complaint_id": complaint_id,
        **{k: v for k, v in record.items() if k != "id"},
        "photo_id": photo_id,
    }
    await store.save(photo_id, photo.data, metadata)
    actor = upload.uploader.actor()
    try:
        after, change = await repo.change(
            complaint_id,
            lambda current: attach_change(
                current,
                record,
                actor=f"{actor.role.value}:{actor.id}",
                channel=upload.channel,
                limits=deps.limits,
            ),
        )
    except PhotoRefused as refused:  # another photo took the last place meanwhile
        await store.remove_orphan(photo_id)
        await keep_refusal(deps, refused, upload, complaint_id)
        raise
    if after is None:
        await store.remove_orphan(photo_id)
        raise LookupError(complaint_id)
    if change is None:  # the same bytes attached meanwhile by a concurrent upload
        await store.remove_orphan(photo_id)
        return attached(after, photo.sha256) or record, False
    if deps.metrics is not None:
        deps.metrics.accepted.labels(channel=upload.channel.value).inc()
    try:
        await repo.announce(after)
    except Exception as exc:  # kept with the complaint: the outbox sweeper publishes it
        log.warning("photo announcement left to the sweeper: %s", exc)
    return record, True


async def keep_refusal(
    deps: PhotoDeps, refused: PhotoRefused, upload: Upload, complaint_id: str | None
) -> None:
    now = deps.clock()
    refusal_id = f"PHR-{secrets.token_hex(6)}"
    uploaded_by = _uploaded_by(upload.uploader)
    event = PhotoRefusedEvent(
        event_id=f"photo-refused:{refusal_id}",
        occurred_at=now,
        refusal_id=refusal_id,
        complaint_id=complaint_id,
        channel=upload.channel,
        reason=refused.reason,
        detail=refused.detail,
        size=len(upload.data),
        uploaded_by=uploaded_by,
    )
    record = {
        "_id": refusal_id,
        "complaint_id": complaint_id,
        "channel": upload.channel.value,
        "reason": refused.reason.value,
        "detail": refused.detail,
        "size": len(upload.data),
        # What the client claimed, for whoever looks into a refusal; never trusted.
        "declared_type": (upload.declared_type or "")[:100] or None,
        "sha256": hashlib.sha256(upload.data).hexdigest(),
        "uploaded_by": uploaded_by,
        "stored_at": now,
    }
    store = deps.store()
    stored = await store.add_refusal(record, [event])
    if deps.metrics is not None:
        deps.metrics.refused.labels(channel=upload.channel.value, reason=refused.reason.value).inc()
    try:
        await store.announce_refusal(stored)
    except Exception as exc:
        log.warning("photo refusal announcement left to the sweeper: %s", exc)


def refusal_answer(refused: PhotoRefused) -> HTTPException:
    return HTTPException(
        STATUS[refused.reason], detail={"reason": refused.reason.value, "message": refused.detail}
    )


_IMAGES = {"content": {ct: {} for ct in EXTENSIONS}, "description": "The image, metadata-free"}
# Who may add photos: the complaint's reporter, its holding agency, admins.
UPLOADERS = frozenset({Audience.REPORTER, Audience.AGENCY, Audience.ADMIN})


@dataclass(frozen=True)
class PhotoContext:
    """What the photo routes are built over (see `build_router`)."""

    deps: Callable[[], PhotoDeps]
    links: CitizenLinks

    async def complaint_for(
        self, tracking_id: str, who: Principal | None, key: str | None
    ) -> tuple[str, Principal | None, dict[str, Any], Audience]:
        """The complaint as `who` (or the key's reporter) finds it; 404 outside a
        confidential complaint's circle, as for the complaint itself."""
        return await complaint_for(self.deps().repository(), tracking_id, who, key, self.links)


def build_router(
    deps: Callable[[], PhotoDeps],
    link_secret: bytes,
    old_link_secrets: Sequence[bytes] = (),
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["photos"])
    caller = caller_dependency(lambda: deps().repository(), lambda: deps().clock())
    ctx = PhotoContext(deps, CitizenLinks(link_secret, old_link_secrets))
    _upload_route(router, ctx, caller)
    _download_route(router, ctx, caller)
    return router


def _upload_route(router: APIRouter, ctx: PhotoContext, caller: CallerDependency) -> None:
    Caller = Annotated[Principal | None, Depends(caller)]

    @router.post(
        "/complaints/{tracking_id}/photos",
        status_code=201,
        response_model=PhotoView,
        responses={
            200: {"model": PhotoView, "description": "These bytes were attached before"},
            **refusals(
                _400="The body is not a readable multipart form",
                _401="Neither a valid bearer token nor the complaint's secret link",
                _403="Not the reporter, the holding agency or an admin",
                _404="No complaint with this tracking id (or not yours to see)",
                _409="The complaint has its 3 photos already, or is closed",
                _413="Larger than 5 MB",
                _415="Not a JPEG, PNG or WebP image (whatever the name or header says)",
                _422="Empty, damaged, or larger than 4000 x 4000 pixels",
            ),
        },
        summary="Attach a photo (JPEG, PNG, WebP; metadata and GPS removed)",
    )
    async def upload_photo(
        tracking_id: TrackingId,
        file: Annotated[UploadFile, File(description="The image")],
        who: Caller,
        key: CitizenKey = None,
    ) -> Response:
        current = ctx.deps()
        tracking_id, who, _doc, audience = await ctx.complaint_for(tracking_id, who, key)
        uploader = identified(who)
        if audience not in UPLOADERS:
            raise HTTPException(
                403, detail="photos are added by the reporter, the holding agency or an admin"
            )
        data = await file.read(current.limits.max_bytes + 1)
        upload = Upload(data, file.content_type, Channel.WEB, uploader)
        try:
            record, new = await attach_photo(current, tracking_id, upload)
        except PhotoRefused as refused:
            raise refusal_answer(refused) from None
        except LookupError:
            raise HTTPException(404, detail="complaint not found") from None
        view = photo_view(tracking_id, record)
        return JSONResponse(view.model_dump(mode="json"), status_code=201 if new else 200)


def _download_route(router: APIRouter, ctx: PhotoContext, caller: CallerDependency) -> None:
    Caller = Annotated[Principal | None, Depends(caller)]

    @router.get(
        "/complaints/{tracking_id}/photos/{photo_id}",
        response_class=Response,
        responses={
            200: _IMAGES,
            **refusals(
                _401="A photo needs a bearer token or the complaint's secret link",
                _403="Not shown to this audience (see Who sees what)",
                _404="No such photo or complaint (or not yours to see)",
            ),
        },
        summary="A complaint's photo, as stored without metadata",
    )
    async def get_photo(
        tracking_id: TrackingId,
        photo_id: Annotated[str, Path(max_length=32)],
        who: Caller,
        key: CitizenKey = None,
    ) -> Response:
        current = ctx.deps()
        tracking_id, viewer, doc, audience = await ctx.complaint_for(tracking_id, who, key)
        record = next((p for p in doc.get("photos") or [] if p.get("id") == photo_id), None)
        if record is None:
            raise HTTPException(404, detail="photo not found")
        if not access(audience, "photos").shown:
            identified(viewer)
            raise HTTPException(
                403, detail="photos are shown to the reporter, the holding agency and admins"
            )
        stored = await current.store().open(photo_id)
        if stored is None:
            log.error("photo listed by its complaint but not stored", extra={"event_id": photo_id})
            raise HTTPException(404, detail="photo not found")
        content_type = record["content_type"]
        return StreamingResponse(
            stored.chunks,
            media_type=content_type,
            headers={
                "Content-Length": str(stored.length),
                "Cache-Control": "private",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Content-Disposition": f'inline; filename="{photo_id}.{EXTENSIONS[content_type]}"',
                "ETag": f'"{record["sha256"]}"',
            },
        )
