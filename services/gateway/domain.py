"""What the connector decides, without I/O: which coding an SMS needs, how a
sendsms call and its delivery-report URL look, how Kannel's callbacks read."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from enum import IntEnum
from urllib.parse import parse_qsl, urlencode

from lapor.gsm import is_gsm7

# What the connector asks Kannel to report: delivered, undelivered, buffered on
# the SMSC, accepted by the SMSC, rejected by the SMSC (Kannel's dlr-mask bits).
DLR_DELIVERED, DLR_UNDELIVERED, DLR_BUFFERED, DLR_SMSC_ACK, DLR_SMSC_NACK = 1, 2, 4, 8, 16
DLR_MASK = DLR_DELIVERED | DLR_UNDELIVERED | DLR_BUFFERED | DLR_SMSC_ACK | DLR_SMSC_NACK


class Coding(IntEnum):
    """Kannel's `coding` of an SMS: 7-bit GSM (160 characters a part) or UCS-2 (70)."""

    GSM7 = 0
    UCS2 = 2


def coding_for(text: str) -> Coding:
    """GSM-7 when every character is in the GSM alphabet, else UCS-2: one character
    outside it (an emoji, a curly quote) would otherwise reach the phone as `?`."""
    return Coding.GSM7 if is_gsm7(text) else Coding.UCS2


def callback_key(notification_id: str) -> str:
    """The notification id as it travels in the delivery-report URL: Kannel reads
    every `%` in that URL as one of its own escapes, so no percent-encoding."""
    return base64.urlsafe_b64encode(notification_id.encode()).decode().rstrip("=")


def notification_of(key: str) -> str:
    """The notification id back from `callback_key`; ValueError for anything else."""
    try:
        raw = base64.b64decode(key + "=" * (-len(key) % 4), altchars=b"-_", validate=True)
        notification_id = raw.decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("not a notification key") from exc
    if not notification_id:
        raise ValueError("not a notification key")
    return notification_id


@dataclass(frozen=True)
class SendSmsLogin:
    """How the connector submits: its sendsms-user, the sender and its callback."""

    username: str
    password: str
    sender: str
    callback_url: str
    callback_token: str


def delivery_report_url(login: SendSmsLogin, notification_id: str) -> str:
    """Kannel fills in %d (report type), %A (the SMSC's answer) and %T (Unix time)."""
    fixed = urlencode({"token": login.callback_token, "id": callback_key(notification_id)})
    return f"{login.callback_url.rstrip('/')}/kannel/dlr?{fixed}&type=%d&reply=%A&at=%T"


def sendsms_query(login: SendSmsLogin, to: str, text: str, notification_id: str) -> dict[str, str]:
    """The query of one sendsms call; Kannel splits a long text into concatenated parts."""
    return {
        "username": login.username,
        "password": login.password,
        "from": login.sender,
        "to": to,
        "text": text,
        "coding": str(int(coding_for(text))),
        "charset": "UTF-8",
        "dlr-mask": str(DLR_MASK),
        "dlr-url": delivery_report_url(login, notification_id),
    }


class InvalidCallback(ValueError):
    """A callback Kannel's configuration cannot have produced."""


@dataclass(frozen=True)
class ReceivedSms:
    """An SMS as Kannel's sms-service hands it over (one whole, reassembled SMS)."""

    kannel_id: str
    sender: str
    receiver: str
    text: str
    sent_at: datetime


def query_bytes(raw_query: bytes) -> dict[str, bytes]:
    """A query string's values as the bytes sent, undecoded."""
    pairs = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return {name: value.encode("latin-1") for name, value in pairs}


def decode_text(data: bytes, coding: int, charset: str) -> str:
    """The SMS text: UCS-2 arrives as UTF-16BE bytes, 7-bit text in Kannel's charset."""
    if coding == Coding.UCS2 or charset.upper().replace("-", "") in ("UTF16BE", "UCS2"):
        return data.decode("utf-16-be", errors="replace")
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return data.decode("latin-1")


def charset_of(content_type: str) -> str:
    """The charset parameter of a Content-Type (Kannel quotes it), or ""."""
    header = Message()
    header["content-type"] = content_type
    return header.get_content_charset("") or ""


# X-Kannel-Time: the SMSC's time stamp of the SMS, UTC.
KANNEL_TIME = "%Y-%m-%d %H:%M:%S"


def parse_received(
    kannel_id: str, headers: Mapping[str, str], body: bytes, now: datetime
) -> ReceivedSms:
    """The sms-service callback (`post-url` of ops/kannel/kannel.conf): the text is
    the body as the SMS carried it, everything else is in X-Kannel-* headers, so
    no phone number is in the URL Kannel logs when a call fails."""
    fields = {name.lower(): value.strip() for name, value in headers.items()}
    sender = fields.get("x-kannel-from", "")
    if not kannel_id.strip() or not sender:
        raise InvalidCallback("a received SMS needs its id and X-Kannel-From")
    try:
        coding = int(fields.get("x-kannel-coding") or "0")
        stamp = fields.get("x-kannel-time", "")
        sent_at = datetime.strptime(stamp, KANNEL_TIME).replace(tzinfo=UTC) if stamp else now
    except ValueError as exc:
        raise InvalidCallback("X-Kannel-Coding is a number, X-Kannel-Time a time") from exc
    # An SMS without the SMSC's time stamp gets the epoch (or just before it).
    if sent_at.timestamp() <= 0:
        sent_at = now
    text = decode_text(body, coding, charset_of(fields.get("content-type", "")))
    return ReceivedSms(kannel_id.strip(), sender, fields.get("x-kannel-to", ""), text, sent_at)


@dataclass(frozen=True)
class Outcome:
    """What a delivery report means for the SMS: delivered or failed, and why."""

    status: str  # "delivered", "failed" or "expired", as SmsDeliveryReceipt has it
    reason: str  # metric label: delivered, undelivered, expired, rejected
    error: str | None = None


def outcome_of(dlr_type: int, smsc_reply: str) -> Outcome | None:
    """A final outcome, or None for a progress report (buffered, accepted by the SMSC).

    An SMSC reports an SMS that outlived its validity as undelivered, with
    `stat:EXPIRED` in its answer: that is an outcome of its own.
    """
    reply = smsc_reply.strip()[:200]
    if dlr_type & DLR_DELIVERED:
        return Outcome("delivered", "delivered")
    if dlr_type & DLR_UNDELIVERED:
        if "EXPIRED" in reply.upper():
            return Outcome("expired", "expired", f"expired: {reply}")
        return Outcome("failed", "undelivered", f"undelivered: {reply or 'no reason given'}")
    if dlr_type & DLR_SMSC_NACK:
        return Outcome("failed", "rejected", f"rejected by the SMSC: {reply or 'no reason given'}")
    return None


@dataclass(frozen=True)
class SmscLink:
    smsc_id: str
    online: bool


def smsc_links(status_xml: str) -> list[SmscLink]:
    """The SMSC connections on bearerbox's status page and whether each is online."""
    import xml.etree.ElementTree as ElementTree

    # The page of our own bearerbox's admin port, not outside input; the expat
    # bundled with Python also refuses entity amplification.
    root = ElementTree.fromstring(status_xml)  # noqa: S314
    links = []
    for smsc in root.iterfind("./smscs/smsc"):
        smsc_id = (smsc.findtext("id") or smsc.findtext("admin-id") or "").strip()
        state = (smsc.findtext("status") or "").strip().lower()
        links.append(SmscLink(smsc_id, state.startswith("online")))
    return links
