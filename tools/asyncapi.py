"""Generate (or check) the committed AsyncAPI documents of every service from the code.

python -m tools.asyncapi write   # regenerate docs/asyncapi/<service>.yaml
python -m tools.asyncapi check   # exit 1 if the committed files differ from the code

FastStream writes channels, operations and payload schemas. What else an outside
program needs to publish is added here: the NATS login every connection needs,
and for each inbound subject its de-duplication header and a complete example.
"""

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from pydantic import BaseModel

from lapor.contracts import InboundSms, InboundWeb, subjects
from lapor.runtime.broker import DUPLICATE_WINDOW_S
from lapor.runtime.generated import checking, listing, write_or_check

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "asyncapi"
SERVICES = ("intake", "router", "sla", "notify", "gateway", "hotspots")


LOGIN = "user-password"
_LOGIN_SCHEME = {
    "type": "userPassword",
    "description": (
        "Every connection logs in with a NATS user and password, e.g. "
        "`nats://<user>:<password>@<host>:4222`. The SMS gateway uses the user "
        "`gateway`, the only one that may publish on `lapor.inbound.sms`. Each partner "
        "system has its own user `partner-<name>`, which may publish on "
        "`lapor.inbound.partner.<name>` only. A client that waits for replies "
        "(JetStream publish acknowledgements) must use the inbox prefix "
        "`_INBOX.<user>`; a plain publish needs none. The operator gives out the "
        "password."
    ),
}


@dataclass(frozen=True)
class Submission:
    """What an outside program sends on one inbound subject, beyond the payload schema."""

    subject: str
    model: type[BaseModel]
    msg_id: str  # what the Nats-Msg-Id header carries
    example: dict[str, Any]
    example_msg_id: str
    summary: str

    def headers_schema(self) -> dict[str, Any]:
        window = f"{DUPLICATE_WINDOW_S / 3600:g} hours"
        return {
            "type": "object",
            "properties": {
                "Nats-Msg-Id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 256,
                    "description": (
                        f"De-duplication key: set it to {self.msg_id}. JetStream keeps one "
                        f"message per key within {window}, so a resend is dropped on the "
                        "server; intake de-duplicates by the same fields after that."
                    ),
                }
            },
        }

    def example_message(self) -> dict[str, Any]:
        # An example the contract refuses would fail the document's generation, not its reader.
        self.model.model_validate(self.example)
        return {
            "name": self.model.__name__,
            "summary": self.summary,
            "headers": {"Nats-Msg-Id": self.example_msg_id},
            "payload": self.example,
        }


SUBMISSIONS = (
    Submission(
        subject=subjects.INBOUND_SMS,
        model=InboundSms,
        msg_id="`gateway_id`",
        example={
            "from": "+6281234567890",
            "to": "1708",
            "text": "BANJAR jalan rusak berlubang besar di depan pasar Martapura",
            "gateway_id": "gw-20260302-000123",
            "received_at": "2026-03-02T09:15:00+08:00",
        },
        example_msg_id="gw-20260302-000123",
        summary="A complaint by SMS to 1708; the sender gets a tracking id by SMS.",
    ),
    Submission(
        subject=subjects.INBOUND_PARTNERS,
        model=InboundWeb,
        msg_id="`partner:<name>:<message_id>`",
        example={
            "source": "partner:whatsapp",
            "message_id": "wa-000123",
            "region": "banjar",
            "text": "Sudah empat hari sampah di TPS pasar Martapura tidak diangkut, bau sekali",
            "name": "Siti",
            "phone": "+6281234567890",
            "location": {"lat": -3.41, "lon": 114.85, "address": "Pasar Martapura"},
            "anonymous": False,
            "confidential": False,
            "received_at": "2026-03-02T09:15:00+08:00",
        },
        example_msg_id="partner:whatsapp:wa-000123",
        summary=("A complaint relayed by the WhatsApp bot on `lapor.inbound.partner.whatsapp`."),
    ),
)


def add_contract_details(document: dict[str, Any]) -> None:
    """The login on every server, and headers and examples on the inbound messages."""
    for server in (document.get("servers") or {}).values():
        server["security"] = [{"$ref": f"#/components/securitySchemes/{LOGIN}"}]
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[LOGIN] = _LOGIN_SCHEME
    messages = components.get("messages", {})
    for submission in SUBMISSIONS:
        for channel in document.get("channels", {}).values():
            if channel.get("address") != submission.subject:
                continue
            for ref in channel.get("messages", {}).values():
                name = unquote(ref["$ref"].removeprefix("#/components/messages/"))
                message = messages[name]
                message["headers"] = submission.headers_schema()
                message["examples"] = [submission.example_message()]


def render(service: str) -> str:
    wiring = importlib.import_module(f"services.{service}.wiring")
    app = wiring.asyncapi()
    document = app.schema.to_specification().to_jsonable()
    add_contract_details(document)
    # FastStream's channel order varies between runs; sorted keys keep diffs real.
    return yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=100)


def main(argv: list[str]) -> int:
    return write_or_check(
        {OUT / f"{service}.yaml": render(service) for service in SERVICES},
        checking(argv),
        stale_message=listing("AsyncAPI out of date (run `make asyncapi`)", ROOT),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
