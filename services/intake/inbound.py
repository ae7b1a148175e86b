"""The rules of inbound messages, without storage or bus: what makes a reply address,
what binds an idempotency key to a submission, when a submission is refused, and
what a rejection record, a command answer and an SMS command look like."""

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lapor.contracts import (
    Channel,
    CitizenCommandAnswered,
    InboundRejected,
    InboundSms,
    InboundWeb,
    RejectionReason,
)
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Role
from services.intake import domain
from services.intake.phones import sms_reachable
from services.intake.sms import CitizenReply, Rating, Reopen, StatusQuery, Withdraw
from services.intake.text import is_too_short

Document = dict[str, Any]
SmsCommand = StatusQuery | CitizenReply | Rating | Reopen | Withdraw

TOO_MANY_FROM_SENDER = "too many messages from this sender"
TOO_MANY_FOR_NUMBER = "too many messages from this number"


@dataclass(frozen=True)
class Inbound:
    """One inbound message as the use cases judge it: where it came from, who may be
    answered, and what a rejection record keeps of it."""

    channel: Channel
    source_key: str
    phone: str | None  # the number replies go to, normalized
    phone_hash: str | None  # the number's keyed hash: the sender's limit and identity
    payload: Document


@dataclass(frozen=True)
class Refusal:
    reason: RejectionReason
    detail: str


def sms_inbound(
    sms: InboundSms, phone: str | None, sender_hash: str | None, at: datetime
) -> Inbound:
    payload = {
        "text": sms.text[:2000],
        "to": sms.to,
        "received_at": at,
        "gateway_received_at": sms.received_at,
    }
    return Inbound(Channel.SMS, f"sms:{sms.gateway_id}", phone, sender_hash, payload)


def submission_key(submission: InboundWeb, channel: Channel) -> str:
    return f"{channel.value}:{submission.source}:{submission.message_id}"


def submission_refusal(
    submission: InboundWeb,
    text: str,
    phone: str | None,
    *,
    region_ids: frozenset[str],
    countries: frozenset[str],
    min_words: int,
) -> Refusal | None:
    """Why a web, Open311 or partner submission (its cleaned `text`) is not stored, if it is not."""
    if submission.region not in region_ids:
        return Refusal(RejectionReason.UNKNOWN_REGION, f"no region {submission.region!r}")
    if phone is not None and not sms_reachable(phone, countries):
        allowed = ", ".join(sorted(countries))
        detail = f"the phone number must be a mobile number of: {allowed}"
        return Refusal(RejectionReason.PHONE_NOT_ALLOWED, detail)
    if is_too_short(text, min_words):
        return Refusal(RejectionReason.TOO_SHORT, f"at least {min_words} meaningful words needed")
    return None


def submission_details(submission: InboundWeb, binding: str) -> Document:
    """What a complaint keeps of its submission; contact details stay out (notify keeps
    the reply addresses, sealed)."""
    details = submission.model_dump(mode="json", include={"source", "name", "category", "location"})
    details["replies_by_email"] = bool(submission.email)
    details["binding"] = binding
    return details


def kept_submission(submission: InboundWeb) -> Document:
    """What a rejection record keeps of a submission: all but the contact details."""
    return submission.model_dump(mode="json", exclude={"phone", "email"})


# Leaves out only when the channel received it: a retry is stamped anew.
_UNBOUND_FIELDS = {"received_at"}


def submission_binding(submission: InboundWeb, key: bytes) -> str:
    """What binds an idempotency key to a submission: an HMAC, under intake's
    phone-hash key, of the canonical JSON of every field of it (its key, region,
    text, name, phone, e-mail, category, location and flags, as sent).

    Keyed, because the phone number and e-mail address are in it: a plain hash
    stored with the complaint could be tested against every number. The label
    keeps these MACs apart from the other uses of the key (phone hashes are of
    E.164 strings, citizen links of tracking ids).
    """
    fields = submission.model_dump(mode="json", exclude=_UNBOUND_FIELDS)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    mac = hmac.new(key, b"submission-binding:" + canonical.encode(), hashlib.sha256)
    return mac.hexdigest()


def binding_matches(complaint: Document, binding: str) -> bool:
    """A complaint stored before keys were bound has no binding and matches nothing."""
    stored = str((complaint.get("submission") or {}).get("binding") or "")
    return hmac.compare_digest(stored.encode(), binding.encode())


_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def reply_email(raw: str | None) -> str | None:
    """A submitted e-mail address usable for replies, domain in lower case; None otherwise.

    Plain `local@domain` only (no display name, no quoted local part, no IP
    literal); the domain needs a dot and an alphabetic (or IDNA) top level.
    """
    if raw is None:
        return None
    address = raw.strip()
    local, at, host = address.rpartition("@")
    if not at or len(address) > 254 or len(local) > 64:
        return None
    if not _EMAIL_LOCAL.fullmatch(local):
        return None
    try:
        host = host.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = host.split(".")
    if len(labels) < 2 or not all(_EMAIL_LABEL.fullmatch(label) for label in labels):
        return None
    top = labels[-1]
    if not (top.isalpha() and len(top) >= 2) and not top.startswith("xn--"):
        return None
    return f"{local}@{host}"


def rejected_event_id(rejection_id: str) -> str:
    return f"rejected:{rejection_id}"


def rejection_record(
    message: Inbound,
    refusal: Refusal,
    *,
    rejection_id: str,
    at: datetime,
    answered: bool,
    complaint: Document | None = None,
) -> Document:
    """The kept record of a rejected message; `complaint`: the one a repeat duplicates."""
    return {
        "_id": rejection_id,
        "source_key": message.source_key,
        "channel": message.channel.value,
        "reason": refusal.reason.value,
        "detail": refusal.detail,
        "reporter": {"phone_hash": message.phone_hash},
        "payload": message.payload,
        "stored_at": at,
        # Whether the sender is answered is decided once; a retry repeats the decision.
        "answered": answered,
        "complaint_id": complaint["_id"] if complaint else None,
        "region": complaint.get("region") if complaint else None,
    }


def rejected_event(record: Document, reply_to_sealed: str | None) -> InboundRejected:
    return InboundRejected(
        event_id=rejected_event_id(record["_id"]),
        occurred_at=record["stored_at"],
        rejection_id=record["_id"],
        channel=Channel(record["channel"]),
        reason=RejectionReason(record["reason"]),
        detail=record["detail"],
        reply_to_sealed=reply_to_sealed,
        complaint_id=record["complaint_id"],
        region=record["region"],
    )


def duplicate_note(source_key: str, at: datetime) -> domain.Transition:
    """The same text sent again: a note on the first complaint, no change of state."""
    return domain.Transition(
        event_id=domain.command_event_id(source_key),
        at=at,
        actor="intake:sms",
        state=None,
        reason="the same text was sent again",
    )


def sms_command(
    command: CitizenReply | Rating | Reopen | Withdraw, source_key: str, sender_hash: str | None
) -> ComplaintCommand:
    """BALAS, NILAI, BUKA and BATAL as lifecycle commands; the gateway message id is the
    command id."""
    text: str | None
    if isinstance(command, CitizenReply):
        action, text, score = Action.REPLY, command.text, None
    elif isinstance(command, Rating):
        action, text, score = Action.RATE, command.comment, command.score
    elif isinstance(command, Withdraw):
        action, text, score = Action.WITHDRAW, command.reason or None, None
    else:
        action, text, score = Action.REOPEN, command.reason, None
    return ComplaintCommand(
        command_id=source_key,
        complaint_id=command.tracking_id,
        action=action,
        actor=Actor(role=Role.CITIZEN, id=f"sms:{(sender_hash or '')[:12]}"),
        text=text,
        score=score,
    )


def answer_event_id(source_key: str) -> str:
    # The gateway message id makes the change and the answer happen once.
    return f"command:{source_key}"


_COMMAND_KINDS: dict[type, str] = {
    StatusQuery: "status",
    CitizenReply: "reply",
    Rating: "rating",
    Reopen: "reopen",
    Withdraw: "withdraw",
}


def command_answer(
    command: SmsCommand,
    complaint: Document | None,
    *,
    event_id: str,
    at: datetime,
    reply_to_sealed: str | None,
    refused: str | None,
) -> CitizenCommandAnswered:
    """The answer to an SMS command; `complaint` None: not found, or not the sender's."""
    doc = complaint or {}
    return CitizenCommandAnswered(
        event_id=event_id,
        occurred_at=at,
        command=_COMMAND_KINDS[type(command)],  # type: ignore[arg-type]
        found=complaint is not None,
        tracking_id=command.tracking_id,
        reply_to_sealed=reply_to_sealed,
        region=doc.get("region"),
        state=doc.get("state"),
        agency=doc.get("agency"),
        answer_due=(doc.get("deadlines") or {}).get("answer"),
        score=command.score if isinstance(command, Rating) else None,
        refused=refused,
        reopen_until=doc.get("reopen_until"),
    )
