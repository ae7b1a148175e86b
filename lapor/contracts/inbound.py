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
        description=(
            "When the gateway received it (ISO 8601 with offset). Kept for information "
            "only: limits, windows and the complaint's time use the time the server "
            "stored the message."
        )
    )


class Location(BaseModel):
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=300)


class InboundWeb(BaseModel):
    """A complaint from any other channel: a partner system on its own subject
    `lapor.inbound.partner.<name>` (a WhatsApp bot, SP4N), the web API, Open311.
    `source` + `message_id` identify it: a resend with the same pair is the same
    complaint. On the bus the subject names the source (`partner:<name>`); the
    payload's `source` is not trusted."""

    model_config = ConfigDict(extra="ignore")

    source: str = Field(
        min_length=1,
        max_length=64,
        examples=["partner:whatsapp"],
        description="On the bus: ignored, the subject names the partner.",
    )
    message_id: str = Field(min_length=1, max_length=128)
    region: str = Field(default="banjar", pattern=r"^[a-z0-9_-]+$")
    text: str = Field(min_length=1, max_length=10_000)
    name: str | None = Field(default=None, max_length=120)
    phone: str | None = Field(default=None, max_length=32, description="For SMS replies.")
    email: str | None = Field(default=None, max_length=254)
    category: str | None = Field(default=None, max_length=64, description="A hint only.")
    location: Location | None = None
    anonymous: bool = False
    confidential: bool = False
    received_at: AwareDatetime = Field(
        description=(
            "When the channel received it. Kept for information only: limits and the "
            "complaint's time use the time the server stored the message."
        )
    )
