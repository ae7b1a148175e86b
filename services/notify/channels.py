"""Ways a message leaves Lapor, behind one small interface.

Every channel answers a send with a `DeliveryResult`: sent, a temporary
failure (worth retrying: timeouts, 5xx, full mailboxes) or a permanent one
(retrying cannot help: 4xx, refused recipient, missing configuration). Channels
do not retry and do not log the delivery; `delivery.Deliverer` does both.
Each call carries the notification id, the key a receiver uses to drop a
repeated delivery.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any, Literal, Protocol

import aiosmtplib
import httpx
from pydantic import SecretStr

from lapor.contracts import OutboundSms
from lapor.runtime.broker import EventPublisher
from lapor.runtime.logs import mask_phones
from services.notify import signing

log = logging.getLogger(__name__)

AddressKind = Literal["sms", "email", "webhook"]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    notification_id: str
    kind: AddressKind
    to: str
    text: str
    subject: str | None = None
    complaint_id: str | None = None
    template: str = ""
    agency: str | None = None
    recipient_name: str | None = None
    # Structured content for machine receivers (webhooks).
    data: Mapping[str, Any] = field(default_factory=dict)
    # A citizen's own address: personal data, never logged or kept in clear.
    personal: bool = False


def mask_email(address: str) -> str:
    """'w****@example.org': enough to tell two addresses apart in a log, not to write."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "****"
    return f"{local[:1]}****@{domain}"


def shown_address(message: OutgoingMessage) -> str:
    """How logs and the delivery log name the recipient: never a citizen's address."""
    if message.kind == "sms":
        return mask_phones(message.to)
    if message.personal:
        return mask_email(message.to)
    return message.to


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    permanent: bool = False
    error: str | None = None

    @classmethod
    def sent(cls) -> DeliveryResult:
        return cls(ok=True)

    @classmethod
    def temporary(cls, error: str) -> DeliveryResult:
        return cls(ok=False, permanent=False, error=error[:500])

    @classmethod
    def rejected(cls, error: str) -> DeliveryResult:
        return cls(ok=False, permanent=True, error=error[:500])


class Channel(Protocol):
    name: str  # how the delivery log names this transport

    async def send(self, message: OutgoingMessage) -> DeliveryResult: ...


# --- HTTP (SMS gateway API, webhooks) ----------------------------------------------

# Rate limits and request timeouts are the receiver asking us to come back later.
_RETRYABLE_4XX = frozenset({408, 425, 429})


def classify_http(status: int, body: str = "") -> DeliveryResult:
    if 200 <= status < 300:
        return DeliveryResult.sent()
    detail = f"HTTP {status}" + (f": {body.strip()[:200]}" if body.strip() else "")
    if status >= 500 or status in _RETRYABLE_4XX:
        return DeliveryResult.temporary(detail)
    # 3xx included: we never follow redirects with a signed body or a credential.
    return DeliveryResult.rejected(detail)


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], limit_s: float
) -> DeliveryResult:
    try:
        response = await client.post(url, content=body, headers=headers, timeout=limit_s)
    except httpx.TimeoutException as exc:
        return DeliveryResult.temporary(f"timeout after {limit_s:g}s ({type(exc).__name__})")
    except httpx.TransportError as exc:
        return DeliveryResult.temporary(f"{type(exc).__name__}: {exc}")
    return classify_http(response.status_code, response.text)


class HttpSmsGateway:
    """SMS gateways with a JSON HTTP API: POST {to, text, reference}, 2xx = accepted."""

    name = "http"

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        auth_header: str = "Authorization",
        auth_value: SecretStr | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.client = client
        self.url = url
        self.auth_header = auth_header
        self.auth_value = auth_value
        self.timeout_s = timeout_s

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        payload = {"to": message.to, "text": message.text, "reference": message.notification_id}
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.notification_id,
        }
        if self.auth_value is not None:
            headers[self.auth_header] = self.auth_value.get_secret_value()
        body = json.dumps(payload, ensure_ascii=False).encode()
        return await _post(self.client, self.url, body, headers, self.timeout_s)


def webhook_body(message: OutgoingMessage) -> bytes:
    document = {
        "notification_id": message.notification_id,
        "type": message.template,
        "complaint_id": message.complaint_id,
        "agency": message.agency,
        "subject": message.subject,
        "text": message.text,
        "data": dict(message.data),
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode()


class Webhook:
    """POST the notice as JSON, signed with the agency's own secret."""

    name = "webhook"

    def __init__(
        self,
        client: httpx.AsyncClient,
        secrets: Mapping[str, SecretStr],
        *,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.secrets = secrets
        self.timeout_s = timeout_s
        self.clock = clock

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        secret = self.secrets.get(message.agency or "")
        if secret is None:
            return DeliveryResult.rejected(
                f"no webhook secret for agency {message.agency} (NOTIFY_WEBHOOK_SECRETS)"
            )
        body = webhook_body(message)
        headers = signing.signed_headers(
            secret.get_secret_value(), int(self.clock()), body, message.notification_id
        )
        return await _post(self.client, message.to, body, headers, self.timeout_s)


# --- e-mail ------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    user: str | None = None
    password: SecretStr | None = None
    sender: str = "lapor@localhost"
    starttls: bool = True
    timeout_s: float = 6.0


def email_message(message: OutgoingMessage, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = formataddr((message.recipient_name or "", message.to))
    mail["Subject"] = message.subject or "LAPOR!"
    mail["Date"] = formatdate(localtime=False)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "lapor.invalid"
    # Stable per notification: a mail system that sees the same id twice can drop it.
    mail["Message-ID"] = f"<{message.notification_id}@{domain}>"
    mail[signing.NOTIFICATION_HEADER] = message.notification_id
    if message.complaint_id:
        mail["X-Lapor-Complaint-Id"] = message.complaint_id
    mail.set_content(message.text)
    return mail


def classify_smtp_error(exc: Exception) -> DeliveryResult:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if codes and all(code >= 500 for code in codes):
            return DeliveryResult.rejected(f"recipient refused: {detail}")
        return DeliveryResult.temporary(f"recipient deferred: {detail}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        detail = f"SMTP {exc.code} {exc.message}"
        return (
            DeliveryResult.rejected(detail) if exc.code >= 500 else DeliveryResult.temporary(detail)
        )
    if isinstance(exc, (TimeoutError, ConnectionError, OSError)):
        return DeliveryResult.temporary(f"{type(exc).__name__}: {exc}")
    # STARTTLS or AUTH not offered and the like: configuration, not bad luck.
    return DeliveryResult.rejected(f"{type(exc).__name__}: {exc}")


class SmtpEmail:
    name = "smtp"

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        cfg = self.config
        try:
            # aiosmtplib's timeout is per step; the whole conversation gets one bound too.
            async with asyncio.timeout(cfg.timeout_s * 1.5):
                await aiosmtplib.send(
                    email_message(message, cfg.sender),
                    hostname=cfg.host,
                    port=cfg.port,
                    username=cfg.user,
                    password=cfg.password.get_secret_value() if cfg.password else None,
                    start_tls=cfg.starttls,
                    timeout=cfg.timeout_s,
                )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            result = classify_smtp_error(exc)
            if message.personal and result.error:
                # A refusal often quotes the mailbox; the error is logged and stored.
                quoted = re.compile(re.escape(message.to), re.IGNORECASE)
                error = quoted.sub(mask_email(message.to), result.error)
                result = DeliveryResult(result.ok, result.permanent, error)
            return result
        return DeliveryResult.sent()


# --- bus, development sink, missing configuration -------------------------------------


class BusSms:
    """`lapor.outbound.sms` for a gateway connector; JetStream drops a repeated id."""

    name = "bus"

    def __init__(self, outbox: EventPublisher) -> None:
        self.outbox = outbox

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        sms = OutboundSms(
            to=message.to,
            text=message.text,
            complaint_id=message.complaint_id,
            notification_id=message.notification_id,
        )
        await self.outbox.publish(sms, msg_id=message.notification_id)
        return DeliveryResult.sent()


class LogSink:
    """Development: prints what would go out, with phone numbers masked."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        heading = f"{message.kind.upper()} to {shown_address(message)}"
        if message.subject:
            heading += f" | {message.subject}"
        self.logger.info(
            "%s\n%s",
            heading,
            mask_phones(message.text),
            extra={
                "complaint_id": message.complaint_id,
                "notification_id": message.notification_id,
            },
        )
        return DeliveryResult.sent()


class Tee:
    """Send through `primary`; once it accepted, also through `echo`."""

    def __init__(self, primary: Channel, echo: Channel) -> None:
        self.primary = primary
        self.echo = echo
        self.name = primary.name

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        result = await self.primary.send(message)
        if result.ok:
            await self.echo.send(message)
        return result


class Unavailable:
    """A channel that is not configured: every message fails visibly, at once."""

    name = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        return DeliveryResult.rejected(self.reason)


@dataclass(frozen=True)
class ChannelSet:
    sms: Channel
    email: Channel
    webhook: Channel

    def for_kind(self, kind: AddressKind) -> Channel:
        channel: Channel = getattr(self, kind)
        return channel
