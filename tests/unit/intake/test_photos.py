"""Photos, the pure part: the type comes from the bytes, limits hold before any pixel is
decoded, and nothing of the original container (EXIF with GPS, XMP, ICC, PNG text)
survives into the stored bytes."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from lapor.contracts import Channel
from lapor.contracts.photos import PhotoAttached, PhotoRefusal
from services.intake.photos import (
    PhotoLimits,
    PhotoRefused,
    attach_change,
    clean,
    detect,
    photo_record,
)

GPS_IFD = 0x8825
ORIENTATION = 0x0112
NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def picture(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **save: Any) -> bytes:
    image = Image.new(mode, size, (200, 30, 40) if mode == "RGB" else None)
    # Some structure, so that encoders have something to keep.
    for x in range(0, size[0], 8):
        for y in range(size[1]):
            image.putpixel((x, y), (10, 200, 30) if mode == "RGB" else 0)
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def exif_with_gps(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "KameraMerekRahasia"  # Make
    exif[0x013B] = "Budi Santoso"  # Artist
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "S"  # GPSLatitudeRef
    gps[2] = (3.0, 26.0, 12.5)  # GPSLatitude
    gps[3] = "E"
    gps[4] = (114.0, 50.0, 7.25)
    if orientation:
        exif[ORIENTATION] = orientation
    return exif


def gps_of(data: bytes) -> dict[int, Any]:
    with Image.open(io.BytesIO(data)) as image:
        return dict(image.getexif().get_ifd(GPS_IFD))


def test_a_jpeg_with_gps_exif_is_stored_without_any_of_it() -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>Budi Santoso</rdf:RDF></x:xmpmeta>'
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = picture(
        "JPEG", exif=exif_with_gps(), xmp=xmp, icc_profile=icc, comment=b"rumah pak RT"
    )
    assert gps_of(original)[2] == (3.0, 26.0, 12.5)  # the test image does carry GPS

    photo = clean(original)

    assert photo.content_type == "image/jpeg"
    assert gps_of(photo.data) == {}
    with Image.open(io.BytesIO(photo.data)) as stored:
        assert dict(stored.getexif()) == {}
        assert not {"exif", "xmp", "icc_profile", "comment"} & set(stored.info)
    for trace in (b"Exif", b"KameraMerekRahasia", b"Budi Santoso", b"rumah pak RT", b"xmpmeta"):
        assert trace not in photo.data
    assert (photo.width, photo.height) == (64, 48)


def test_the_orientation_is_applied_before_the_exif_goes() -> None:
    original = picture("JPEG", size=(40, 20), exif=exif_with_gps(orientation=6))
    photo = clean(original)
    assert (photo.width, photo.height) == (20, 40)
    assert gps_of(photo.data) == {}


def test_png_text_chunks_are_removed() -> None:
    info = PngInfo()
    info.add_text("Author", "Budi Santoso")
    info.add_text("Comment", "Desa Sungai Tabuk", zip=True)  # zTXt
    info.add_itxt("Description", "Jl. A. Yani km 7", lang="id")
    original = picture("PNG", pnginfo=info, exif=exif_with_gps())
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
        assert chunk in original

    photo = clean(original)

    assert photo.content_type == "image/png"
    for trace in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"Budi", b"Yani"):
        assert trace not in photo.data
    assert gps_of(photo.data) == {}


def test_webp_keeps_its_type_and_loses_its_exif() -> None:
    original = picture("WEBP", exif=exif_with_gps())
    assert gps_of(original)
    photo = clean(original)
    assert photo.content_type == "image/webp"
    assert b"EXIF" not in photo.data and gps_of(photo.data) == {}


@pytest.mark.parametrize(
    ("fmt", "expected"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_the_type_is_read_from_the_bytes(fmt: str, expected: str) -> None:
    assert detect(picture(fmt)) == expected
    assert clean(picture(fmt)).content_type == expected


@pytest.mark.parametrize(
    "data",
    [
        picture("GIF", mode="L"),
        picture("BMP"),
        picture("TIFF"),
        b"<html><script>alert(1)</script></html>",
        b"%PDF-1.7 not a photo",
        b"\xff\xd8\xff" + b"\x00" * 32,  # a JPEG's first bytes, nothing behind them
    ],
    ids=["gif", "bmp", "tiff", "html", "pdf", "jpeg-magic-only"],
)
def test_anything_else_is_refused_whatever_it_claims(data: bytes) -> None:
    with pytest.raises(PhotoRefused) as refused:
        clean(data)
    assert refused.value.reason in (PhotoRefusal.UNSUPPORTED_TYPE, PhotoRefusal.UNREADABLE)


def test_a_truncated_image_is_unreadable() -> None:
    data = picture("JPEG", size=(400, 300))
    with pytest.raises(PhotoRefused) as refused:
        clean(data[: len(data) // 2])
    assert refused.value.reason is PhotoRefusal.UNREADABLE


def test_empty_and_oversized_uploads_are_refused_before_decoding() -> None:
    with pytest.raises(PhotoRefused) as empty:
        clean(b"")
    assert empty.value.reason is PhotoRefusal.EMPTY
    data = picture("PNG")
    with pytest.raises(PhotoRefused) as large:
        clean(data, PhotoLimits(max_bytes=len(data) - 1))
    assert large.value.reason is PhotoRefusal.TOO_LARGE


def bomb_png(width: int, height: int) -> bytes:
    """A few hundred bytes that claim a `width` x `height` 1-bit canvas."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * ((width + 7) // 8 + 1) * 16, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("width", "height"), [(50_000, 50_000), (100_000, 10), (4001, 4000)])
def test_a_decompression_bomb_is_refused_from_its_header(width: int, height: int) -> None:
    data = bomb_png(width, height)
    assert len(data) < 20_000
    with pytest.raises(PhotoRefused) as refused:
        clean(data)
    assert refused.value.reason is PhotoRefusal.TOO_MANY_PIXELS


def test_the_largest_allowed_side_passes() -> None:
    photo = clean(picture("PNG", size=(4000, 2), mode="L"))
    assert (photo.width, photo.height) == (4000, 2)


def test_stripping_is_deterministic_so_a_resend_has_the_same_hash() -> None:
    original = picture("JPEG", exif=exif_with_gps())
    assert clean(original).sha256 == clean(original).sha256


def complaint(**fields: Any) -> dict[str, Any]:
    return {"_id": "LPR-7K3M-9QX2T", "region": "banjar", "state": "assigned", **fields}


def record_of(data: bytes, photo_id: str = "ph_" + "a" * 20) -> dict[str, Any]:
    return photo_record(clean(data), photo_id, uploaded_at=NOW, uploaded_by="citizen")


def test_attaching_records_the_photo_and_announces_it_without_the_image() -> None:
    record = record_of(picture("JPEG", exif=exif_with_gps()))
    doc = complaint()
    change = attach_change(
        doc, record, actor="citizen:web:X", channel=Channel.WEB, limits=PhotoLimits()
    )
    assert change is not None
    assert change.transition.fields["photos"] == [record]
    assert change.transition.state is None
    assert change.transition.reason == "photo attached"
    [event] = change.announce({**doc, "photos": [record]})
    assert isinstance(event, PhotoAttached)
    body = event.model_dump()
    assert body["photo_id"] == record["id"] and body["size"] == record["size"]
    assert not {"data", "gps", "exif"} & set(body)


def test_the_same_bytes_are_attached_once() -> None:
    record = record_of(picture("PNG"))
    doc = complaint(photos=[record])
    again = {**record, "id": "ph_" + "b" * 20}
    assert attach_change(doc, again, actor="a", channel=Channel.WEB, limits=PhotoLimits()) is None


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (complaint(photos=[{"sha256": str(n)} for n in range(3)]), PhotoRefusal.TOO_MANY_PHOTOS),
        (complaint(state="closed"), PhotoRefusal.COMPLAINT_CLOSED),
        (complaint(state="rejected"), PhotoRefusal.COMPLAINT_CLOSED),
    ],
)
def test_a_full_or_closed_complaint_takes_no_photo(
    doc: dict[str, Any], reason: PhotoRefusal
) -> None:
    with pytest.raises(PhotoRefused) as refused:
        attach_change(
            doc, record_of(picture("PNG")), actor="a", channel=Channel.WEB, limits=PhotoLimits()
        )
    assert refused.value.reason is reason


async def test_a_refused_upload_is_kept_counted_and_announced_without_its_bytes() -> None:
    from prometheus_client import CollectorRegistry

    from lapor.contracts.commands import Role
    from lapor.contracts.photos import PhotoRefused as PhotoRefusedEvent
    from services.intake.auth import Principal
    from services.intake.photo_api import PhotoDeps, PhotoMetrics, Upload, clean_upload
    from services.intake.photo_store import MemoryPhotoStore

    store, registry = MemoryPhotoStore(), CollectorRegistry()
    deps = PhotoDeps(repository=lambda: None, store=lambda: store, metrics=PhotoMetrics(registry))  # type: ignore[arg-type,return-value]
    data = b"<svg onload=alert(1)>"
    upload = Upload(data, "image/jpeg", Channel.WEB, Principal(Role.CITIZEN, "web:X", None, "X"))
    with pytest.raises(PhotoRefused):
        await clean_upload(deps, upload, "LPR-7K3M-9QX2T")
    [kept] = store.refused
    assert kept["reason"] == "unsupported_type" and kept["size"] == len(data)
    assert kept["declared_type"] == "image/jpeg" and data not in str(kept).encode()
    [event] = store.announced
    assert isinstance(event, PhotoRefusedEvent) and event.uploaded_by == "citizen"
    refused = registry.get_sample_value(
        "lapor_photos_refused_total", {"channel": "web", "reason": "unsupported_type"}
    )
    assert refused == 1
    assert store.files == {}
