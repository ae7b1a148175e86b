"""Payloads that outside channels publish on `lapor.inbound.*`."""

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class InboundSms(BaseModel):
    """An SMS received by the gateway on the short code (subject `lapor.inbound.sms`)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    sender: str = Field(
        alias="from",
        min_length=3,
        max_length=32,
        description="Sender's phone number, preferably E.164 (+62…).",
        examples=["+6281234567890"],
    )
    to: str = Field(default="1708", max_length=32, description="Short code the SMS was sent to.")
    text: str = Field(max_length=10_000, description="SMS text as received (multi-part joined).")
    gateway_id: str = Field(
        min_length=1,
        max_length=128,
        description="The gateway's own message id; a redelivery carries the same id.",
    )
    received_at: AwareDatetime = Field(
        description="When the gateway received it (ISO 8601 with offset)."
    )
