"""Hotspots: complaints of different citizens about one problem at one place.

The hotspots service groups routed complaints and announces every change of a
group on `lapor.event.hotspot.changed`. A hotspot never changes its members'
complaints: answering all of them is one `answer` command per member on
`lapor.command.complaint.answer`, which intake decides one by one.
"""

from enum import StrEnum

from pydantic import AwareDatetime, Field

from lapor.contracts.events import Event, PlaceArea


class HotspotState(StrEnum):
    SUGGESTED = "suggested"  # grouped automatically, no person looked at it yet
    CONFIRMED = "confirmed"  # an officer or admin agreed it is one problem
    ANSWERED = "answered"  # every member was sent the same answer
    CLOSED = "closed"  # every member's complaint is closed (or archived)
    DISSOLVED = "dissolved"  # merged into another, or split down to one member


# Listed and counted as open.
OPEN_HOTSPOT_STATES = frozenset({HotspotState.SUGGESTED, HotspotState.CONFIRMED})


class HotspotChange(StrEnum):
    FORMED = "formed"
    JOINED = "joined"
    LEFT = "left"  # re-routed to another agency, or split off
    CONFIRMED = "confirmed"
    SPLIT = "split"
    MERGED = "merged"
    ANSWERED = "answered"
    CLOSED = "closed"  # the last open member's complaint was closed
    REOPENED = "reopened"  # a member of a closed hotspot was reopened by its citizen


class HotspotChanged(Event):
    """One change of a hotspot, with the hotspot as it is after the change.

    `event_id` is `hotspot:<hotspot_id>:<version>`: every stored version is
    announced once.
    """

    hotspot_id: str
    version: int = Field(ge=1)
    change: HotspotChange
    region: str
    agency: str
    kecamatan: PlaceArea | None = None
    desa: PlaceArea | None = None
    state: HotspotState
    members: list[str] = Field(description="Tracking ids of the member complaints.")
    affected: list[str] = Field(
        default_factory=list,
        description="Complaints this change is about (joined, left, split off, merged in).",
    )
    related: str | None = Field(
        default=None,
        description="split: the hotspot the split-off members went to, if any; merged: the "
        "hotspot merged into this one (or this one's survivor, when dissolved).",
    )
    actor: str = Field(description="`hotspots` for automatic grouping, else the officer.")
    formed_at: AwareDatetime
    answer_round: int | None = Field(
        default=None, ge=1, description="answered: the answer round the commands carry."
    )
