"""Payloads that Lapor publishes for delivery connectors on `lapor.outbound.*`."""

from pydantic import BaseModel, Field


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
