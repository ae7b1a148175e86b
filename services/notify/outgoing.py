"""Notifications to send: a citizen message or an official notice, rendered for each address.

Pure given the renderer and the agency directory: no I/O. A message nobody can
be reached for becomes an undeliverable notification, so that it fails visibly
in the log rather than disappearing.
"""

from collections.abc import Mapping
from datetime import date
from typing import Any, Protocol

from lapor.contracts import EscalationLevel
from lapor.directory import Contacts
from services.notify import domain
from services.notify.catalog import RenderedNotice
from services.notify.channels import OutgoingMessage
from services.notify.delivery import Notification


class Renderer(Protocol):
    def render_sms(self, template: str, values: Mapping[str, Any], region: str | None) -> str: ...

    def render_email(
        self, template: str, values: Mapping[str, Any], region: str | None
    ) -> RenderedNotice: ...

    def render_official(
        self, template: str, values: Mapping[str, Any], region: str | None
    ) -> RenderedNotice: ...


# --- citizens ----------------------------------------------------------------------


def citizen_notes(
    renderer: Renderer, message: domain.CitizenMessage, *, sms: str | None, email: str | None
) -> list[Notification]:
    """The citizen's message by SMS and by e-mail, to whichever addresses they gave.

    Confidential and anonymous complaints included: the reporter is the one
    person who may always hear about their own complaint.
    """
    notes = [citizen_sms(renderer, message, sms)] if sms else []
    if email:
        notes.append(_citizen_email(renderer, message, email))
    return notes


def citizen_sms(renderer: Renderer, message: domain.CitizenMessage, to: str) -> Notification:
    text = renderer.render_sms(message.template, message.values, message.region)
    outgoing = OutgoingMessage(
        notification_id=domain.notification_id(message.cause_event_id, to, message.template),
        kind="sms",
        to=to,
        text=text,
        complaint_id=message.complaint_id,
        template=message.template,
    )
    return Notification(outgoing, "citizen", message.cause_event_id, region=message.region)


def _citizen_email(renderer: Renderer, message: domain.CitizenMessage, to: str) -> Notification:
    rendered = renderer.render_email(message.template, message.values, message.region)
    outgoing = OutgoingMessage(
        notification_id=domain.notification_id(message.cause_event_id, to, message.template),
        kind="email",
        to=to,
        text=rendered.body,
        subject=rendered.subject,
        complaint_id=message.complaint_id,
        template=message.template,
        personal=True,
    )
    return Notification(outgoing, "citizen", message.cause_event_id)


def unreachable_citizen(message: domain.CitizenMessage) -> Notification:
    outgoing = OutgoingMessage(
        notification_id=domain.notification_id(message.cause_event_id, "?", message.template),
        kind="sms",
        to="-",
        text="",
        complaint_id=message.complaint_id,
        template=message.template,
    )
    reason = "reply address unknown: the complaint's received event never reached notify"
    return Notification(outgoing, "citizen", message.cause_event_id, undeliverable=reason)


# --- officials -----------------------------------------------------------------------


def official_notes(
    renderer: Renderer,
    contacts: Contacts,
    notice: domain.OfficialNotice,
    facts: domain.ComplaintFacts,
) -> list[Notification]:
    """The notice to every address of `contacts` at the notice's levels; a level with
    nobody reachable gets an undeliverable notification of its own."""
    rendered = renderer.render_official(notice.template, notice.values, notice.region)
    data = {key: _plain(value) for key, value in notice.values.items()}
    notes = [
        Notification(
            OutgoingMessage(
                notification_id=domain.notification_id(
                    notice.cause_event_id, recipient.key, notice.template
                ),
                kind=recipient.kind,
                to=recipient.address,
                text=rendered.body,
                subject=rendered.subject,
                complaint_id=notice.complaint_id,
                template=notice.template,
                agency=notice.agency,
                recipient_name=recipient.name,
                data={**data, "level": recipient.level, "region": notice.region},
            ),
            "official",
            notice.cause_event_id,
            level=recipient.level,
            withheld=domain.withheld_reason(recipient.level, facts.confidential),
        )
        for recipient in domain.recipients(contacts, notice.levels, notice.agency)
    ]
    for level in domain.unreachable_levels(contacts, notice.levels):
        notes.append(_unreachable_official(notice, level, facts))
    return notes


def _unreachable_official(
    notice: domain.OfficialNotice, level: EscalationLevel, facts: domain.ComplaintFacts
) -> Notification:
    key = f"level:{notice.agency}:{level}"
    outgoing = OutgoingMessage(
        notification_id=domain.notification_id(notice.cause_event_id, key, notice.template),
        kind="email",
        to=f"{level} of {notice.agency}",
        text="",
        complaint_id=notice.complaint_id,
        template=notice.template,
        agency=notice.agency,
    )
    return Notification(
        outgoing,
        "official",
        notice.cause_event_id,
        level=level,
        undeliverable=f"no e-mail or webhook for {level} of {notice.agency} in the directory",
        withheld=domain.withheld_reason(level, facts.confidential),
    )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value
