"""Photos of a complaint, the pure part: limits, type detection, metadata stripping,
and the rule that attaches a photo to the complaint record.

The type is what Pillow finds in the bytes, never the client's header or file
name; only JPEG, PNG and WebP decoders are ever asked. Dimensions are checked
from the header before a pixel is decoded, so a small file that claims a huge
canvas (a decompression bomb) is refused without being expanded.

Stripping: the pixels are decoded, turned upright by the EXIF orientation,
brought to sRGB when an ICC profile says otherwise, and copied into a fresh
image that has no `info` at all; that image is encoded anew. Nothing of the
original container survives: no EXIF (GPS, camera, owner), no XMP, no ICC
profile, no PNG text chunks, no comments. Only the first frame of an animated
image is kept.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from lapor.contracts import Channel, State
from lapor.contracts.photos import PhotoAttached, PhotoRefusal, PhotoType, Uploader
from services.intake.domain import Change, Transition

MAX_BYTES = 5 * 1024 * 1024
MAX_SIDE = 4000
MAX_PER_COMPLAINT = 3
# Pillow's own guard, for any decoder it runs: beyond this it warns, beyond twice
# this it refuses. Ours is stricter (MAX_SIDE on each side) and checked first.
Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE

FORMATS: dict[str, PhotoType] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS: dict[str, str] = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
# States in which a complaint still takes photos: not once it is closed or archived.
CLOSED = frozenset({State.CLOSED.value, State.REJECTED.value})


@dataclass(frozen=True)
class PhotoLimits:
    max_bytes: int = MAX_BYTES
    max_side: int = MAX_SIDE
    max_per_complaint: int = MAX_PER_COMPLAINT


class PhotoRefused(Exception):
    """An upload that is not kept as a photo; `reason` and `detail` are the answer."""

    def __init__(self, reason: PhotoRefusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# The HTTP answer of each refusal.
STATUS: dict[PhotoRefusal, int] = {
    PhotoRefusal.EMPTY: 422,
    PhotoRefusal.TOO_LARGE: 413,
    PhotoRefusal.UNSUPPORTED_TYPE: 415,
    PhotoRefusal.TOO_MANY_PIXELS: 422,
    PhotoRefusal.UNREADABLE: 422,
    PhotoRefusal.TOO_MANY_PHOTOS: 409,
    PhotoRefusal.COMPLAINT_CLOSED: 409,
}


@dataclass(frozen=True)
class CleanPhoto:
    """A photo as it is stored: re-encoded, without metadata."""

    data: bytes
    content_type: PhotoType
    width: int
    height: int
    sha256: str


def detect(data: bytes) -> PhotoType:
    """The type of `data` as Pillow reads it from the bytes (JPEG, PNG, WebP only)."""
    try:
        with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
            return FORMATS[str(image.format)]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _unsupported() from None


def _unsupported() -> PhotoRefused:
    return PhotoRefused(PhotoRefusal.UNSUPPORTED_TYPE, "only JPEG, PNG or WebP images are accepted")


def clean(data: bytes, limits: PhotoLimits = PhotoLimits()) -> CleanPhoto:
    """`data` checked against `limits` and re-encoded without any metadata.

    Raises `PhotoRefused` for an empty or too large upload, anything that is not
    a JPEG, PNG or WebP image, an image larger than `max_side` on a side, and
    one that does not decode (damaged, truncated).
    """
    if not data:
        raise PhotoRefused(PhotoRefusal.EMPTY, "the file is empty")
    if len(data) > limits.max_bytes:
        raise PhotoRefused(
            PhotoRefusal.TOO_LARGE, f"a photo may have at most {limits.max_bytes} bytes"
        )
    with warnings.catch_warnings():
        # A canvas over MAX_IMAGE_PIXELS is a bomb even below Pillow's hard limit.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels(limits) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise _unsupported() from None
        with image:
            content_type = FORMATS[str(image.format)]
            width, height = image.size
            if width > limits.max_side or height > limits.max_side:
                raise _too_many_pixels(limits)
            try:
                image.load()
                pixels = _fresh(_upright(image))
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise _too_many_pixels(limits) from None
            except Exception:  # any decoder error on untrusted bytes: damaged or incomplete
                raise PhotoRefused(
                    PhotoRefusal.UNREADABLE, "the image is damaged or incomplete"
                ) from None
    encoded = _encode(pixels, content_type)
    return CleanPhoto(
        data=encoded,
        content_type=content_type,
        width=pixels.width,
        height=pixels.height,
        sha256=hashlib.sha256(encoded).hexdigest(),
    )


def _too_many_pixels(limits: PhotoLimits) -> PhotoRefused:
    side = limits.max_side
    return PhotoRefused(
        PhotoRefusal.TOO_MANY_PIXELS, f"a photo may be at most {side} x {side} pixels"
    )


def _upright(image: Image.Image) -> Image.Image:
    """The first frame, turned as its EXIF orientation says, in sRGB."""
    profile = image.info.get("icc_profile")
    # In place: a 4000 x 4000 photo is 48 MB decoded, and intake runs in 512 MB.
    upright = ImageOps.exif_transpose(image, in_place=True) or image
    mode = _plain_mode(upright)
    if upright.mode != mode:
        upright = upright.convert(mode)
    if profile and mode in ("RGB", "RGBA"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(
                upright, source, ImageCms.createProfile("sRGB"), outputMode=mode
            )
            if converted is not None:
                upright = converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unreadable profile: the pixels as they are, the profile dropped
    return upright


def _plain_mode(image: Image.Image) -> str:
    if image.mode in ("L", "RGB", "RGBA"):
        return image.mode
    transparent = "A" in image.getbands() or "transparency" in image.info
    return "RGBA" if transparent else "RGB"


def _fresh(image: Image.Image) -> Image.Image:
    """The same pixels in a new image: no `info`, no EXIF, nothing of the container."""
    fresh = Image.new(image.mode, image.size)
    fresh.paste(image)
    return fresh


def _encode(image: Image.Image, content_type: PhotoType) -> bytes:
    out = io.BytesIO()
    if content_type == "image/jpeg":
        rgb = image if image.mode in ("L", "RGB") else image.convert("RGB")
        rgb.save(out, "JPEG", quality=88, optimize=True)
    elif content_type == "image/png":
        image.save(out, "PNG")
    else:
        image.save(out, "WEBP", quality=88)
    return out.getvalue()


def new_photo_id() -> str:
    """Random, never derived from the content: two uploads never share a stored file."""
    return "ph_" + secrets.token_hex(10)


def photo_url(tracking_id: str, photo_id: str) -> str:
    return f"/api/v1/complaints/{tracking_id}/photos/{photo_id}"


def attached(doc: dict[str, Any], sha256: str) -> dict[str, Any] | None:
    """The complaint's photo with these bytes, if it has one."""
    return next((p for p in doc.get("photos") or [] if p.get("sha256") == sha256), None)


def check_attachable(doc: dict[str, Any], limits: PhotoLimits) -> None:
    """Raises `PhotoRefused` when the complaint takes no further photo."""
    if doc.get("state") in CLOSED:
        raise PhotoRefused(
            PhotoRefusal.COMPLAINT_CLOSED, "a closed or archived complaint takes no photos"
        )
    if len(doc.get("photos") or []) >= limits.max_per_complaint:
        raise PhotoRefused(
            PhotoRefusal.TOO_MANY_PHOTOS,
            f"a complaint has at most {limits.max_per_complaint} photos",
        )


def photo_record(
    photo: CleanPhoto, photo_id: str, *, uploaded_at: datetime, uploaded_by: Uploader
) -> dict[str, Any]:
    """What the complaint keeps of one photo (the bytes are in the photo store)."""
    return {
        "id": photo_id,
        "content_type": photo.content_type,
        "size": len(photo.data),
        "width": photo.width,
        "height": photo.height,
        "sha256": photo.sha256,
        "uploaded_at": uploaded_at,
        "uploaded_by": uploaded_by,
    }


def attach_change(
    doc: dict[str, Any],
    record: dict[str, Any],
    *,
    actor: str,
    channel: Channel,
    limits: PhotoLimits,
) -> Change | None:
    """The change that attaches `record` to the complaint and announces it; None when
    the complaint already has a photo with the same bytes. Raises `PhotoRefused`
    when it takes no further photo."""
    if attached(doc, record["sha256"]) is not None:
        return None
    check_attachable(doc, limits)
    key = f"{doc['_id']}:{record['sha256'][:32]}"
    transition = Transition(
        event_id=f"photo:{key}",
        at=record["uploaded_at"],
        actor=actor,
        state=None,
        reason="photo attached",
        fields={"photos": [*(doc.get("photos") or []), record]},
        detail={"action": "attach_photo", "photo_id": record["id"]},
    )

    def announce(after: dict[str, Any]) -> list[Any]:
        return [
            PhotoAttached(
                event_id=f"photo-attached:{key}",
                occurred_at=record["uploaded_at"],
                complaint_id=after["_id"],
                region=after["region"],
                photo_id=record["id"],
                content_type=record["content_type"],
                size=record["size"],
                width=record["width"],
                height=record["height"],
                sha256=record["sha256"],
                channel=channel,
                uploaded_by=record["uploaded_by"],
            )
        ]

    return Change(transition, announce)
