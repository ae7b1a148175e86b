"""SLA's message handlers: every routing decision and state change becomes a fact;
the complaint's timers follow from all its facts, and new deadlines are announced."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from lapor.contracts import ComplaintRouted, ComplaintStateChanged, DeadlinesSet, subjects
from services.sla.engine import Publisher, SlaEngine
from services.sla.plan import (
    REPLY_WINDOW_STATES,
    Fact,
    Plan,
    RegionRules,
    deadline_announcements,
    reopen_announcement,
    routed_fact,
    state_fact,
)

__all__ = ["RegionRules", "SlaDeps", "handle_routed", "handle_state_changed"]


@dataclass(frozen=True)
class SlaDeps:
    engine: SlaEngine
    default_region: str = "banjar"

    @property
    def regions(self) -> Mapping[str, RegionRules]:
        return self.engine.regions

    @property
    def clock(self) -> Callable[[], datetime]:
        """The one injectable clock: handlers, sweep and API all read it."""
        return self.engine.clock

    @property
    def reply_window(self) -> Publisher:
        """Reopen windows go out where intake already hears auto-close from SLA."""
        return self.engine.publishers[subjects.SLA_AUTO_CLOSE]


async def _apply(deps: SlaDeps, complaint_id: str, fact: Fact) -> None:
    def announce(plan: Plan) -> list[DeadlinesSet]:
        occurred_at = deps.regions[plan.region].calendar.local(deps.clock())
        return deadline_announcements(plan, fact, occurred_at)

    # The announcements are stored with the clock summary, then published; a
    # redelivery publishes what is still pending, and the sweep what a crash left.
    await deps.engine.record(complaint_id, fact, announce)
    await deps.engine.announce_pending(complaint_id)


async def handle_routed(event: ComplaintRouted, deps: SlaDeps) -> None:
    await _apply(deps, event.complaint_id, routed_fact(event))


async def handle_state_changed(event: ComplaintStateChanged, deps: SlaDeps) -> None:
    await _apply(deps, event.complaint_id, state_fact(event))
    if event.state not in REPLY_WINDOW_STATES:
        return
    rules = deps.regions.get(event.region)
    if rules is None:
        # Redelivered, then dead-lettered: a region without rules is a data error to see.
        raise LookupError(f"no SLA rules for region {event.region!r}")
    window = reopen_announcement(event, rules, rules.calendar.local(deps.clock()))
    if window is not None:
        await deps.reply_window.publish(window, msg_id=window.event_id)
