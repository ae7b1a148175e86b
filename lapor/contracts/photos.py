"""Photos attached to complaints: what intake announces when it keeps or refuses one.

No event carries image bytes or anything read from them beyond their size and
dimensions: the stored photo has no metadata left (no EXIF, no GPS), and the
bus is read by services that have no business seeing the picture.
"""

from enum import StrEnum
from typing import Literal

from pydantic import Field

from lapor.contracts.events import Channel, Event

PhotoType = Literal["image/jpeg", "image/png", "image/webp"]
Uploader = Literal["citizen", "agency", "admin", "partner"]


class PhotoRefusal(StrEnum):
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    TOO_MANY_PIXELS = "too_many_pixels"
    UNREADABLE = "unreadable"
    TOO_MANY_PHOTOS = "too_many_photos"
    COMPLAINT_CLOSED = "complaint_closed"


class PhotoAttached(Event):
    """A photo was stored with a complaint, its metadata stripped; announced once per
    photo and complaint (`event_id` is `photo-attached:<complaint>:<sha256 prefix>`)."""

    complaint_id: str
    region: str
    photo_id: str = Field(pattern=r"^ph_[0-9a-f]{20}$")
    content_type: PhotoType
    size: int = Field(ge=1, description="Bytes of the stored (re-encoded) image.")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Of the stored bytes.")
    channel: Channel
    uploaded_by: Uploader


class PhotoRefused(Event):
    """An upload that was not kept as a photo, with the reason the uploader was given.
    The refusal record keeps its size, declared type and hash, never its bytes."""

    refusal_id: str
    complaint_id: str | None = Field(
        default=None, description="None for an Open311 request refused before it was stored."
    )
    channel: Channel
    reason: PhotoRefusal
    detail: str = ""
    size: int = Field(ge=0, description="Bytes received.")
    uploaded_by: Uploader
