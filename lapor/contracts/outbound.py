"""Payloads on `lapor.outbound.*` (for and from delivery connectors) and notify's
failure event."""

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from lapor.contracts.events import Event


class OutboundSms(BaseModel):
    """An SMS for the gateway connector to deliver (subject `lapor.outbound.sms`)."""

    to: str = Field(description="Recipient phone number in E.164.")
    text: str
    complaint_id: str | None = Field(
        default=None, description="Tracking id the message is about, if any."
    )
    notification_id: str = Field(
        description="Stable id of this notification; a connector must deliver each id once."
    )


class SmsDeliveryReceipt(BaseModel):
    """What the gateway reports about an SMS it was given (subject `lapor.outbound.sms.status`).

    A connector publishes one receipt per final outcome; repeating a receipt is harmless.
    """

    notification_id: str = Field(
        min_length=1,
        max_length=64,
        description="The `notification_id` of the OutboundSms (or the `reference` the HTTP "
        "gateway adapter sent).",
    )
    status: Literal["delivered", "failed", "expired"] = Field(
        description="`expired`: the SMSC gave up when the SMS outlived its validity period."
    )
    error: str | None = Field(
        default=None,
        max_length=500,
        description="The gateway's reason when status is failed or expired.",
    )
    at: AwareDatetime = Field(description="When the gateway learned the outcome.")


class NotificationFailed(Event):
    """A notification could not be delivered: rejected for good, or retries exhausted.

    Published once per notification (event id `failed:<notification_id>`). Carries no
    message text and no phone number; the delivery log in notify has the details.
    """

    notification_id: str
    complaint_id: str | None = None
    cause_event_id: str
    audience: Literal["citizen", "official"]
    channel: str = Field(description="Address kind: sms, email or webhook.")
    transport: str = Field(description="How it was sent: bus, http, smtp, webhook, log or none.")
    template: str
    agency: str | None = Field(default=None, description="Agency of an official recipient.")
    reason: Literal["rejected", "exhausted", "undeliverable", "receipt", "expired"] = Field(
        description="rejected: permanent error; exhausted: temporary errors until the retry "
        "cap; undeliverable: no usable address or channel; receipt: the gateway reported it; "
        "expired: the SMSC gave up when the SMS outlived its validity period."
    )
    error: str
    attempts: int = Field(ge=0)
